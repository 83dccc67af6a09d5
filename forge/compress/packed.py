"""`Packed`: one compressed weight matrix as the tensors that go into the file (integer payloads,
scales, codebooks) plus the few numbers needed to rebuild it. Each method module (rtn, bitnet,
vptq) makes them and registers how to turn them back into a float matrix."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import torch

DEQUANTIZERS: dict[str, Callable[["Packed"], torch.Tensor]] = {}


def dequantizer(method: str) -> Callable[[Callable[["Packed"], torch.Tensor]], Callable[["Packed"], torch.Tensor]]:
    def register(fn: Callable[["Packed"], torch.Tensor]) -> Callable[["Packed"], torch.Tensor]:
        DEQUANTIZERS[method] = fn
        return fn

    return register


@dataclass
class Packed:
    method: str
    shape: tuple[int, ...]
    tensors: dict[str, torch.Tensor]
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def nbytes(self) -> int:
        """Bytes of every stored piece: payload and side information alike."""
        return sum(t.numel() * t.element_size() for t in self.tensors.values())

    @property
    def numel(self) -> int:
        return int(torch.Size(self.shape).numel())

    @property
    def bits_per_weight(self) -> float:
        return 8 * self.nbytes / self.numel

    def dequantize(self) -> torch.Tensor:
        if self.method not in DEQUANTIZERS:
            import_method(self.method)
        return DEQUANTIZERS[self.method](self)


def import_method(method: str) -> None:
    """Method modules register their dequantizer on import; loading a file needs only this."""
    import importlib

    importlib.import_module(f"forge.compress.{method}")
