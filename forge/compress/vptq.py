"""VPTQ (Liu et al. 2024, arXiv 2409.17066), on CPU: each input column of a weight matrix is cut
into vectors of `vector_length` consecutive output weights; every vector is replaced by the index
of its nearest entry in a codebook learned by k-means weighted by the Hessian diagonal (how much
that input matters on calibration data); columns are quantized in order with GPTQ's error
feedback (the rounding error of a column is pushed onto the columns not yet quantized, through
the inverse Hessian). Optional: a residual codebook that quantizes what the first one missed, and
a separate codebook for the most important (outlier) columns. The layer-wise fine-tuning of
centroids in the paper is not done here.

Hessians come from the float model's activations on calibration batches (all layers in one pass,
not re-collected after each quantized layer). The microsoft/VPTQ quantizer needs CUDA and cuML,
which is why this one exists.

Size: index bits per weight = ceil(log2 k) / vector_length per codebook, plus one float16 scale
per output row (rows are normalised to unit RMS before quantization); every codebook is stored
in float16 and counted, which is why small matrices want small codebooks.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from typing import Callable, Iterable, Optional, Sequence

import torch
from torch import nn

from forge.compress.pack import pack_bits, unpack_bits
from forge.compress.packed import Packed, dequantizer
from forge.compress.base import Compressor, Forward

log = logging.getLogger(__name__)


def nearest(x: torch.Tensor, codebook: torch.Tensor, chunk: int = 65536) -> torch.Tensor:
    """Index of the nearest codebook row (Euclidean) for each row of x."""
    c2 = codebook.pow(2).sum(1)
    return torch.cat([(c2 - 2 * part @ codebook.T).argmin(1) for part in x.split(chunk)]) if len(x) else torch.zeros(0, dtype=torch.long)


def weighted_kmeans(x: torch.Tensor, weight: torch.Tensor, k: int, iters: int, seed: int = 0, sample: int = 32768) -> torch.Tensor:
    """k centroids of the rows of x minimising sum(weight * |x - centroid|^2); initial centroids
    are drawn with probability proportional to weight, empty clusters are re-seeded at the
    worst-served point. Fitted on a uniform sample of at most `sample` rows: Lloyd's iterations
    over every vector of a large matrix were 80% of the quantization time, for the same centroids
    within noise."""
    gen = torch.Generator().manual_seed(seed)
    if len(x) > sample:
        keep = torch.randperm(len(x), generator=gen)[:sample]
        x, weight = x[keep], weight[keep]
    k = min(k, len(x))
    centroids = x[torch.multinomial(weight / weight.sum(), k, replacement=False, generator=gen)].clone()
    for _ in range(iters):
        assign = nearest(x, centroids)
        total = torch.zeros_like(centroids).index_add_(0, assign, x * weight[:, None])
        mass = torch.zeros(k).index_add_(0, assign, weight)
        empty = mass == 0
        centroids = torch.where(empty[:, None], centroids, total / mass.clamp(min=1e-12)[:, None])
        if empty.any():
            err = weight * (x - centroids[assign]).pow(2).sum(1)
            centroids[empty] = x[err.topk(int(empty.sum())).indices]
    return centroids


def inverse_hessian_factor(h: torch.Tensor, damp: float) -> torch.Tensor:
    """Upper Cholesky factor of H^-1 after damping (GPTQ's form of the error feedback)."""
    h = h.clone()
    h += damp * h.diagonal().mean() * torch.eye(len(h), dtype=h.dtype)
    return torch.linalg.cholesky(torch.cholesky_inverse(torch.linalg.cholesky(h)), upper=True)


def quantize(w: torch.Tensor, h: torch.Tensor, v: int, k: int, residual_k: int = 0, outlier_fraction: float = 0.0,
             outlier_k: int = 0, iters: int = 16, damp: float = 0.01, block: int = 128, where: str = "") -> Packed:
    """Vector-quantize w [out, in] with Hessian h [in, in] (see the module docstring)."""
    out, n_in = w.shape
    if out % v:
        raise ValueError(f"{where or 'weight'} {tuple(w.shape)}: output width {out} is not a multiple of vector_length={v}")
    # One float16 scale per output row (its RMS): one codebook serves rows of very different
    # magnitudes only after they are brought to the same scale (measured on SmolLM2: without
    # it, 2-bit VPTQ was worse than 3.5-bit RTN, whose per-group scales do this implicitly).
    row_scale = w.detach().double().pow(2).mean(1).sqrt().clamp(min=1e-8).half().double()
    W = w.detach().double() / row_scale[:, None]
    h = h.double().clone()
    dead = h.diagonal() == 0
    h[dead, dead] = 1.0
    W[:, dead] = 0.0
    importance = h.diagonal().clone()
    hinv = inverse_hessian_factor(h, damp)

    n_out = int(round(outlier_fraction * n_in)) if outlier_k else 0
    outliers = torch.zeros(n_in, dtype=torch.bool)
    if n_out:
        outliers[(importance * W.pow(2).sum(0)).topk(n_out).indices] = True

    row_weight = row_scale.pow(2).reshape(-1, v).mean(1)  # a vector's error counts at its rows' scale

    def vectors(cols: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        vec = W[:, cols].T.reshape(-1, v).float()
        return vec, (importance[cols][:, None] * row_weight[None, :]).reshape(-1).float()

    main = weighted_kmeans(*vectors(~outliers), k, iters).half().double()
    outlier_cb = weighted_kmeans(*vectors(outliers), outlier_k, iters).half().double() if n_out else None
    residual_cb = None
    if residual_k:  # trained on what the first codebooks leave of the (not yet error-fed) weights
        vec, weight = vectors(torch.ones(n_in, dtype=torch.bool))
        vec = vec.double()
        first = main[nearest(vec, main)]
        if n_out:
            in_outlier = outliers.repeat_interleave(out // v)
            first[in_outlier] = outlier_cb[nearest(vec[in_outlier], outlier_cb)]
        residual_cb = weighted_kmeans((vec - first).float(), weight, residual_k, iters).half().double()

    first_idx = torch.zeros(n_in, out // v, dtype=torch.long)
    second_idx = torch.zeros(n_in, out // v, dtype=torch.long)
    for i1 in range(0, n_in, block):
        i2 = min(i1 + block, n_in)
        W1, err1, hinv1 = W[:, i1:i2].clone(), torch.zeros(out, i2 - i1, dtype=W.dtype), hinv[i1:i2, i1:i2]
        for i in range(i2 - i1):
            col = W1[:, i]
            vec = col.reshape(-1, v)
            cb = outlier_cb if outliers[i1 + i] else main
            a = nearest(vec, cb)
            q = cb[a]
            first_idx[i1 + i] = a
            if residual_cb is not None:
                b = nearest(vec - q, residual_cb)
                q = q + residual_cb[b]
                second_idx[i1 + i] = b
            err = (col - q.reshape(-1)) / hinv1[i, i]
            W1[:, i:] -= err[:, None] * hinv1[i, i:][None, :]
            err1[:, i] = err
        W[:, i2:] -= err1 @ hinv[i1:i2, i2:]

    bits = max(1, math.ceil(math.log2(k)))
    tensors = {"index": pack_bits(first_idx[~outliers], bits), "codebook": main.half(), "row_scale": row_scale.half()}
    meta = {"vector_length": v, "index_bits": bits, "residual_bits": 0, "outlier_bits": 0, "outliers": n_out}
    if n_out:
        meta["outlier_bits"] = max(1, math.ceil(math.log2(outlier_k)))
        tensors["outlier_columns"] = pack_bits(outliers.nonzero().squeeze(1), max(1, math.ceil(math.log2(n_in))))
        tensors["outlier_index"] = pack_bits(first_idx[outliers], meta["outlier_bits"])
        tensors["outlier_codebook"] = outlier_cb.half()
    if residual_cb is not None:
        meta["residual_bits"] = max(1, math.ceil(math.log2(residual_k)))
        tensors["residual_index"] = pack_bits(second_idx, meta["residual_bits"])
        tensors["residual_codebook"] = residual_cb.half()
    return Packed("vptq", (out, n_in), tensors, meta)


@dequantizer("vptq")
def dequantize(p: Packed) -> torch.Tensor:
    out, n_in = p.shape
    v, per_col, m = p.meta["vector_length"], p.shape[0] // p.meta["vector_length"], p.meta
    outliers = torch.zeros(n_in, dtype=torch.bool)
    if m["outliers"]:
        outliers[unpack_bits(p.tensors["outlier_columns"], max(1, math.ceil(math.log2(n_in))), m["outliers"])] = True
    cols = torch.zeros(n_in, per_col, v)
    normal = int((~outliers).sum())
    cols[~outliers] = p.tensors["codebook"].float()[unpack_bits(p.tensors["index"], m["index_bits"], normal * per_col)].reshape(normal, per_col, v)
    if m["outliers"]:
        idx = unpack_bits(p.tensors["outlier_index"], m["outlier_bits"], m["outliers"] * per_col)
        cols[outliers] = p.tensors["outlier_codebook"].float()[idx].reshape(m["outliers"], per_col, v)
    if m["residual_bits"]:
        idx = unpack_bits(p.tensors["residual_index"], m["residual_bits"], n_in * per_col)
        cols += p.tensors["residual_codebook"].float()[idx].reshape(n_in, per_col, v)
    return (cols.reshape(n_in, out).T * p.tensors["row_scale"].float()[:, None]).contiguous()


class HessianCollector:
    """Accumulates H = 2/n * sum x x^T of the inputs of each named linear layer while the model
    runs forward passes (forward pre-hooks)."""

    def __init__(self, model: nn.Module, names: Iterable[str]) -> None:
        modules = dict(model.named_modules())
        self.h: dict[str, torch.Tensor] = {}
        self.n: dict[str, int] = {}
        self.handles = [modules[name].register_forward_pre_hook(self._hook(name)) for name in names]

    def _hook(self, name: str) -> Callable[[nn.Module, tuple[torch.Tensor, ...]], None]:
        def hook(module: nn.Module, args: tuple[torch.Tensor, ...]) -> None:
            x = args[0].detach().reshape(-1, args[0].shape[-1]).double()
            self.h[name] = self.h.get(name, 0) + 2 * x.T @ x
            self.n[name] = self.n.get(name, 0) + len(x)

        return hook

    def done(self) -> dict[str, torch.Tensor]:
        for handle in self.handles:
            handle.remove()
        return {name: h / self.n[name] for name, h in self.h.items()}


@dataclass
class VPTQ(Compressor):
    vector_length: int = 4
    codebook_size: int = 256
    residual_codebook_size: int = 0
    outlier_fraction: float = 0.0
    outlier_codebook_size: int = 0
    kmeans_iters: int = 16
    damp: float = 0.01
    hessians: Optional[dict[str, torch.Tensor]] = field(default=None, init=False, repr=False)
    needs_calibration = True

    def calibrate(self, model: nn.Module, batches: Sequence[dict[str, torch.Tensor]], forward: Forward) -> None:
        """Hessians of every compressed layer from `forward(model, batch)` over the batches."""
        collector = HessianCollector(model, [n.removesuffix(".weight") for n in self.targets(model)])
        with torch.no_grad():
            for batch in batches:
                forward(model, batch)
        self.hessians = collector.done()

    def quantize(self, weight: torch.Tensor, name: str) -> Packed:
        if self.hessians is None:
            raise RuntimeError("VPTQ.quantize before calibrate: the Hessians come from calibration batches")
        packed = quantize(weight, self.hessians[name.removesuffix(".weight")], self.vector_length, self.codebook_size,
                          self.residual_codebook_size, self.outlier_fraction, self.outlier_codebook_size, self.kmeans_iters,
                          self.damp, where=name)
        log.info("vptq: %s %s at %.3f bits/weight", name, tuple(weight.shape), packed.bits_per_weight)
        return packed
