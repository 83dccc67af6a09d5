"""Compressors (rtn, bitnet, vptq) as algorithms on modules, their packed format on disk, the
loader that rebuilds a model from it, and the figures (bits per weight, quality against the float
model) that describe them. The compress stage itself is in forge.stages."""
