"""Fine-tuning of what a compressed model keeps in float, after its integer codes are fixed: the
codebooks and scales of every packed matrix and the model's 1-D float tensors (norms, biases)
are trained so that the compressed model's next-token distribution matches the float model's
(KL divergence) on calibration batches. This is the centroid fine-tuning of VPTQ (Liu et al.
2024) and the codebook tuning of AQLM, done end to end; the file keeps its exact size because
only the values of tensors it already stores change. Embeddings stay frozen: 28M values fitted
on a few thousand calibration tokens would overfit them."""

from __future__ import annotations

import copy
import logging
from typing import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import parametrize

from forge.compress.packed import Packed

log = logging.getLogger(__name__)


class Dequantized(nn.Module):
    """A parametrization that makes a linear weight the dequantized form of a `Packed` whose
    float tensors are trainable (the integer payloads are buffers)."""

    def __init__(self, packed: Packed) -> None:
        super().__init__()
        self.method, self.shape, self.meta = packed.method, packed.shape, packed.meta
        self.floats = nn.ParameterDict({k: nn.Parameter(t.float()) for k, t in packed.tensors.items() if t.is_floating_point()})
        for key, t in packed.tensors.items():
            if not t.is_floating_point():
                self.register_buffer(key, t)
        self.integer_keys = [k for k, t in packed.tensors.items() if not t.is_floating_point()]
        self.dtypes = {k: t.dtype for k, t in packed.tensors.items()}

    def packed(self, stored: bool = False) -> Packed:
        """The Packed this weight is: trainable floats, or (stored) detached in the file's dtypes."""
        floats = {k: (p.detach().to(self.dtypes[k]) if stored else p) for k, p in self.floats.items()}
        return Packed(self.method, self.shape, {**floats, **{k: getattr(self, k) for k in self.integer_keys}}, self.meta)

    def forward(self, _original: torch.Tensor) -> torch.Tensor:
        return self.packed().dequantize()


def tune(
    model: nn.Module, packed: dict[str, Packed], floats: dict[str, torch.Tensor], batches: Sequence[dict],
    forward: Callable[[nn.Module, dict], torch.Tensor], steps: int, lr: float,
) -> tuple[dict[str, Packed], dict[str, torch.Tensor], list[float]]:
    """(packed, floats) with their float values tuned for `steps` Adam steps over `batches`
    (cycled), and the KL of each step. `model` is the float model the codes were made from; it
    is the teacher and is not changed. `forward(model, batch)` returns logits."""
    student = copy.deepcopy(model).train()
    student.requires_grad_(False)
    for name, p in packed.items():
        parametrize.register_parametrization(student.get_submodule(name.removesuffix(".weight")), "weight", Dequantized(p))
    params = dict(student.named_parameters())
    vectors = {name: params[name] for name, t in floats.items() if name in params and t.is_floating_point() and t.dim() == 1}
    trainable = [p for m in student.modules() if isinstance(m, Dequantized) for p in m.floats.values()] + list(vectors.values())
    for p in trainable:
        p.requires_grad_(True)
    optimizer = torch.optim.Adam(trainable, lr=lr)
    model.eval()
    losses = []
    for step in range(steps):
        batch = batches[step % len(batches)]
        with torch.no_grad():
            target = F.log_softmax(forward(model, batch).float(), -1)
        logits = forward(student, batch).float()
        loss = F.kl_div(F.log_softmax(logits.reshape(-1, logits.shape[-1]), -1), target.reshape(-1, target.shape[-1]),
                        log_target=True, reduction="batchmean")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
        log.info("tune: step %d/%d KL %.4f", step + 1, steps, losses[-1])
    tuned = {name: student.get_submodule(name.removesuffix(".weight")).parametrizations.weight[0].packed(stored=True)
             for name, p in packed.items()}
    out_floats = {name: (vectors[name].detach().to(t.dtype) if name in vectors else t) for name, t in floats.items()}
    return tuned, out_floats, losses
