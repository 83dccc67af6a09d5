"""Compressors (rtn, bitnet, vptq): packed formats on disk, the compress stage that writes them,
and the figures (bits per weight, quality against the float model) that describe them."""
