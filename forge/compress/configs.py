"""Schemas of the `compressor` options, light enough for `forge validate` (no torch).

The fields mirror the compressor dataclasses: `CompressorConfig` is what every method shares,
`QuantizerConfig` adds calibration and the KL fine-tuning after quantization.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from omegaconf import MISSING

from forge.config.registry import register
from forge.config.rules import at_least, between, fraction, one_of, positive

FLOAT_DTYPES = ("float32", "float16", "bfloat16")  # what stays float in a compressed file
PACKINGS = ("trits", "2bit")  # BitNet: five trits per byte (1.6 bits/weight) or 2 bits/weight


@dataclass
class CompressorConfig:
    skip: list[str] = MISSING
    float_dtype: str = one_of(FLOAT_DTYPES)


@dataclass
class QuantizerConfig(CompressorConfig):
    calibration_batches: int = at_least(1)
    tune_steps: int = at_least(0)
    tune_lr: float = positive()


@register("compressor", "forge.compress.rtn.RTN")
@dataclass
class RTNConfig(QuantizerConfig):
    bits: int = between(1, 8)
    group: int = at_least(1)
    target_size_mb: Optional[float] = positive()


@register("compressor", "forge.compress.vptq.VPTQ")
@dataclass
class VPTQConfig(QuantizerConfig):
    vector_length: int = at_least(1)
    codebook_size: int = at_least(1)
    residual_codebook_size: int = at_least(0)
    outlier_fraction: float = fraction()
    outlier_codebook_size: int = at_least(0)
    kmeans_iters: int = at_least(1)
    damp: float = at_least(0)


@register("compressor", "forge.compress.bitnet.BitNet")
@dataclass
class BitNetConfig(CompressorConfig):
    """BitNet needs no calibration; after quantization it can still be tuned like the others
    (the defaults: no tuning)."""

    qat: bool = MISSING
    packing: str = one_of(PACKINGS)
    calibration_batches: int = at_least(1, default=16)
    tune_steps: int = at_least(0, default=0)
    tune_lr: float = positive(default=1.0e-4)
