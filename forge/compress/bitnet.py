"""BitNet b1.58 (Ma et al. 2024): linear layers with ternary weights {-1, 0, +1} times one
absmean scale per matrix, inputs RMS-normalised and quantized per token to int8 (absmax), trained
through the straight-through estimator. It must be trained in (`qat: true`: the train stage
builds the model with BitLinear layers, from scratch or from pretrained weights); `qat: false`
ternarizes a float-trained model afterwards, a control that shows why it must be trained in.

Packed as five trits per byte (1.6 bits/weight) or two bits per weight, plus one float32 scale
per matrix.
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from forge.compress.pack import pack_bits, pack_trits, unpack_bits, unpack_trits
from forge.compress.packed import Packed, dequantizer
from forge.compress.base import Compressor

EPS = 1e-5


def ternarize(w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(codes in {-1, 0, 1}, scale): scale = mean |w|, codes = round(w / scale) clipped."""
    scale = w.abs().mean().clamp(min=EPS)
    return (w / scale).round().clamp(-1, 1), scale


def quantize_activations(x: torch.Tensor) -> torch.Tensor:
    """Per-token absmax int8, returned dequantized (the matmul runs in float here)."""
    scale = 127.0 / x.abs().amax(-1, keepdim=True).clamp(min=EPS)
    return (x * scale).round().clamp(-128, 127) / scale


class BitLinear(nn.Linear):
    """nn.Linear with BitNet b1.58's forward; the float weight is the latent one the optimizer
    updates. After loading an already ternary weight (a compressed file), `prequantized` skips
    re-quantizing it, so the reloaded model computes exactly what the packed weights say."""

    prequantized = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-6)  # RMSNorm, no parameters
        x = x + (quantize_activations(x) - x).detach()
        w = self.weight
        if not self.prequantized:
            codes, scale = ternarize(w)
            w = w + (codes * scale - w).detach()
        return F.linear(x, w, self.bias)


def to_bitlinear(model: nn.Module, skip: list[str]) -> nn.Module:
    """Swap every nn.Linear not matched by `skip` for a BitLinear with the same parameters."""
    for name, module in list(model.named_modules()):
        for child_name, child in list(module.named_children()):
            full = f"{name}.{child_name}" if name else child_name
            if type(child) is nn.Linear and not any(fnmatch.fnmatchcase(full, p) for p in skip):
                bit = BitLinear(child.in_features, child.out_features, bias=child.bias is not None,
                                device=child.weight.device, dtype=child.weight.dtype)
                bit.load_state_dict(child.state_dict())
                setattr(module, child_name, bit)
    return model


@dataclass
class BitNet(Compressor):
    qat: bool = True
    packing: str = "trits"  # trits: 1.6 bits/weight; 2bit: 2 bits/weight

    def quantize(self, weight: torch.Tensor, name: str) -> Packed:
        codes, scale = ternarize(weight)
        trits = (codes + 1).to(torch.uint8)
        payload = pack_trits(trits) if self.packing == "trits" else pack_bits(trits, 2)
        return Packed("bitnet", tuple(weight.shape), {"codes": payload, "scale": scale.reshape(1).float()}, {"packing": self.packing})

    def training_wrapper(self, model: nn.Module) -> nn.Module:
        """With `qat`, the model trains with BitLinear layers from its first step."""
        return to_bitlinear(model, self.skip) if self.qat else model

    def prepare(self, model: nn.Module) -> nn.Module:
        """BitLinear layers where the packed weights go: already there after QAT; swapped in now
        for the post-training control or when a model is rebuilt from its config."""
        return to_bitlinear(model, self.skip)

    def loaded(self, model: nn.Module) -> nn.Module:
        for m in model.modules():
            if isinstance(m, BitLinear):
                m.prequantized = True
        return model


@dequantizer("bitnet")
def dequantize(p: Packed) -> torch.Tensor:
    unpack = unpack_trits(p.tensors["codes"], p.numel) if p.meta["packing"] == "trits" else unpack_bits(p.tensors["codes"], 2, p.numel)
    return ((unpack.float() - 1) * p.tensors["scale"].float()).reshape(p.shape)
