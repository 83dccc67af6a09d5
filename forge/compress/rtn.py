"""Round-to-nearest, per group of `group` consecutive input weights: the control every other
compressor is compared with. Asymmetric: w ≈ code * scale + min with a float16 scale and min per
group, so int-b at group g costs b + 32/g bits per weight (int4 g64: 4.5)."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Optional

import torch
from torch import nn

from forge.compress import format as cformat
from forge.compress.pack import pack_bits, unpack_bits
from forge.compress.packed import Packed, dequantizer
from forge.compress.base import Compressor
from forge.errors import ForgeError

log = logging.getLogger(__name__)
BUDGET_BITS = (8, 4, 3, 2)


@dataclass
class RTN(Compressor):
    bits: int = 4
    group: int = 64
    # A size budget in MB (10^6 bytes) for the whole file: the widest of 8/4/3/2 bits whose file
    # fits is used instead of `bits`.
    target_size_mb: Optional[float] = None

    def quantize(self, weight: torch.Tensor, name: str) -> Packed:
        return quantize(weight, self.bits, self.group, name)

    def compress(self, model: nn.Module) -> tuple[dict[str, Packed], dict[str, torch.Tensor], dict[str, str]]:
        if self.target_size_mb is None:
            return super().compress(model)
        budget = self.target_size_mb * 1e6
        for bits in BUDGET_BITS:  # sized by writing the file in memory: exact, and RTN is fast
            self.bits = bits
            packed, floats, tied = super().compress(model)
            size = len(cformat.to_bytes(packed, floats, tied))
            if size <= budget:
                log.info("rtn: int%d is the widest that fits target_size_mb=%g (%.2f MB)", bits, self.target_size_mb, size / 1e6)
                self.notes["bits"] = bits
                return packed, floats, tied
        raise ForgeError(f"compressor.target_size_mb={self.target_size_mb}: even int{bits} at group {self.group} makes a "
                         f"{size / 1e6:.2f} MB file; raise the budget, use a larger compressor.group, or compress more layers "
                         f"(compressor.skip={self.skip}; float tensors are stored as compressor.float_dtype={self.float_dtype})")


def group_view(w: torch.Tensor, group: int, where: str = "") -> torch.Tensor:
    """(rows, groups, group) view of a 2-D weight; the input width must divide into groups."""
    if w.dim() != 2 or w.shape[1] % group:
        raise ValueError(f"{where or 'weight'} {tuple(w.shape)}: input width {w.shape[-1]} is not a multiple of group={group}; "
                         f"choose a group size that divides it (SmolLM2's 576 and 1536 divide by 64, not 128)")
    return w.reshape(w.shape[0], w.shape[1] // group, group)


def quantize(w: torch.Tensor, bits: int, group: int, where: str = "") -> Packed:
    g = group_view(w.detach().float(), group, where)
    lo, hi = g.amin(-1, keepdim=True), g.amax(-1, keepdim=True)
    levels = (1 << bits) - 1
    # Codes are chosen against the float16 scale and min that the file stores, so dequantizing
    # the file reproduces exactly what was measured before saving.
    scale = ((hi - lo) / levels).clamp_min(1e-8).half()
    mins = lo.half()
    codes = torch.round((g - mins.float()) / scale.float()).clamp_(0, levels)
    return Packed("rtn", tuple(w.shape), {"codes": pack_bits(codes, bits), "scales": scale.squeeze(-1), "mins": mins.squeeze(-1)},
                  {"bits": bits, "group": group})


@dequantizer("rtn")
def dequantize(p: Packed) -> torch.Tensor:
    bits, group = p.meta["bits"], p.meta["group"]
    codes = unpack_bits(p.tensors["codes"], bits, p.numel).reshape(p.shape[0], -1, group).float()
    w = codes * p.tensors["scales"].float()[..., None] + p.tensors["mins"].float()[..., None]
    return w.reshape(p.shape)
