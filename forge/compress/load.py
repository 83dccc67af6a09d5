"""Rebuild a runnable model from a packed file: the layers its compressor needs, the weights
dequantized. Every reader of a packed file (evaluate, export, the exported folder's own loader,
the benchmarks) goes through `load_packed`."""

from __future__ import annotations

from pathlib import Path

from torch import nn

from forge.compress import format as cformat
from forge.compress.base import Compressor


def load_packed(compressor: Compressor, model: nn.Module, path: Path) -> nn.Module:
    """`model` (any weights, the right architecture) with the layers `compressor` needs and the
    weights of the packed file at `path`, dequantized."""
    model = compressor.prepare(model)
    model.load_state_dict({k: v.float() for k, v in cformat.state_dict(path).items()})
    return compressor.loaded(model).eval()
