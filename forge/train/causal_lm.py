"""The LightningModule that fine-tunes a Hugging Face causal LM on packed SFT rows.

A row holds several examples (`segments` numbers them, 0 is padding). The attention mask is
block-diagonal and causal, and positions restart at each example, so packing changes nothing
about what each example sees. Batches are cut at their longest row, and the output head runs
only where a token is scored: at 49,152 vocabulary entries the head is a fifth of the model's
compute, and its full logits would be 0.8 GB per 4,096 tokens.

Checkpoints hold only the trained parameters (the adapters under LoRA) plus the optimizer, RNG
and data position; the frozen base is rebuilt from `model.source`, which the checkpoint records
with the PEFT config and the chat template used in training.
"""

from __future__ import annotations

import time
from typing import Any, Optional, Union

import lightning as L
import torch
import torch.nn.functional as F

from forge.data.task import IGNORE
from forge.errors import NonFiniteLossError
from forge.train.module import build_optimizer, restore_rng, save_rng, weighted_loss, with_training_hook


def build_causal_lm(model_cfg: dict, peft_cfg: dict, cache_dir: Optional[str] = None,
                    compressor_cfg: Optional[dict] = None) -> torch.nn.Module:
    """The base model from `model_cfg` as the compressor of `compressor_cfg` trains it (e.g.
    BitLinear layers for a BitNet QAT fine-tune), wrapped with the adapters of `peft_cfg` (if any)."""
    from forge.models.hf import HFCausalLM
    from forge.models.peft import LoRA

    spec = HFCausalLM.from_config(model_cfg, cache_dir)
    adapters = LoRA(**{k: v for k, v in peft_cfg.items() if k != "_target_"}) if peft_cfg.get("_target_") else None
    model = spec.model(quantization_config=adapters.quantization_config() if adapters else None)
    model = with_training_hook(model, compressor_cfg)
    if adapters is None:
        return model
    return adapters.apply(model)


def attention_inputs(segments: torch.Tensor, dtype: torch.dtype = torch.float32) -> tuple[torch.Tensor, torch.Tensor]:
    """(4-D mask, position ids) that keep packed examples apart; padding attends to padding.
    On CPU the mask is additive in `dtype` (0 where a token may attend, -inf elsewhere: CPU
    attention with a boolean mask measured slower); on a GPU it is boolean, which holds under
    bf16 autocast too."""
    length = segments.shape[1]
    idx = torch.arange(length, device=segments.device)
    same = segments[:, :, None] == segments[:, None, :]
    allowed = (same & torch.ones(length, length, dtype=torch.bool, device=segments.device).tril())[:, None]
    if segments.device.type != "cpu":
        mask = allowed
    else:
        mask = torch.zeros(allowed.shape, dtype=dtype, device=segments.device).masked_fill(~allowed, float("-inf"))
    starts = torch.ones_like(segments, dtype=torch.bool)
    starts[:, 1:] = segments[:, 1:] != segments[:, :-1]
    first = torch.where(starts, idx, torch.zeros_like(idx)).cummax(dim=1).values
    return mask, idx - first


def scored_logits(lm: torch.nn.Module, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """(logits, target tokens) at the scored positions of a batch of packed rows; the output
    head runs on those positions only."""
    segments = batch["segments"]
    length = int((segments > 0).sum(1).max())
    inputs, labels, segments = batch["inputs"][:, :length], batch["labels"][:, :length], segments[:, :length]
    mask, positions = attention_inputs(segments, lm.dtype)
    hidden = lm.get_decoder()(input_ids=inputs, attention_mask=mask, position_ids=positions).last_hidden_state
    targets = labels[:, 1:]
    scored = targets != IGNORE
    return lm.get_output_embeddings()(hidden[:, :-1][scored]).float(), targets[scored]


def packed_loss(lm: torch.nn.Module, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Summed cross-entropy over the scored tokens of a batch of packed rows, and their count."""
    logits, targets = scored_logits(lm, batch)
    return F.cross_entropy(logits, targets, reduction="sum"), torch.tensor(targets.numel(), device=logits.device)


def row_losses(lm: torch.nn.Module, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Summed cross-entropy and scored-token count of each packed row of a batch."""
    segments = batch["segments"]
    length = int((segments > 0).sum(1).max())
    scored = batch["labels"][:, 1:length] != IGNORE
    logits, targets = scored_logits(lm, batch)
    row = torch.arange(scored.shape[0], device=scored.device).unsqueeze(1).expand_as(scored)[scored]
    losses = F.cross_entropy(logits, targets, reduction="none")
    sums = torch.zeros(scored.shape[0], device=losses.device).index_add_(0, row, losses)
    return sums, scored.sum(1)


class CausalLMModule(L.LightningModule):
    causal = True

    def __init__(
        self, model_cfg: dict, peft_cfg: dict, optim_cfg: dict, max_steps: int, chat_template: Optional[str] = None,
        cache_dir: Optional[str] = None, compressor_cfg: Optional[dict] = None,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.model = build_causal_lm(model_cfg, peft_cfg, cache_dir, compressor_cfg).train()  # from_pretrained returns eval mode
        self.strict_loading = False  # checkpoints hold the trained parameters only
        self.tokens_seen = 0  # non-padding training tokens, saved in checkpoints
        self.tokens_this_run = 0  # the same, since this process started (for tokens per second)
        self.train_started: Optional[float] = None

    @property
    def lm(self) -> torch.nn.Module:
        """The transformers model (inside the PEFT wrapper, if any)."""
        return self.model.get_base_model() if hasattr(self.model, "get_base_model") else self.model

    def loss_terms(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        return packed_loss(self.lm, batch)

    def loss(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """The mean loss over a batch's scored tokens, without logging: what the continual-learning
        callbacks (forge.train.continual) take on an earlier task's rows."""
        total, count = self.loss_terms(batch)
        return total / count.clamp(min=1)

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> Union[torch.Tensor, dict[str, torch.Tensor]]:
        # A replayed batch (data.sampler=prioritized) weights each packed row's loss, and the
        # rows' own losses go back to the sampler as their new priorities.
        per_row = None
        if "weights" in batch:
            loss, per_row = weighted_loss(*row_losses(self.lm, batch), batch["weights"])
        else:
            loss = self.loss(batch)
        if not torch.isfinite(loss):
            raise NonFiniteLossError(f"training loss is {loss.item()} at step {self.global_step}")
        tokens = int((batch["segments"] > 0).sum())
        self.tokens_seen += tokens
        self.tokens_this_run += tokens
        self.log("train/loss", loss, prog_bar=True)
        self.log("train/tokens", float(self.tokens_seen))
        return loss if per_row is None else {"loss": loss, "row_losses": per_row}

    def on_train_start(self) -> None:
        self.train_started = time.perf_counter()

    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        """Tokens per second of the training loop so far (its validation included), after the
        step's backward pass: what `forge runs status` shows while the run trains."""
        elapsed = time.perf_counter() - (self.train_started or time.perf_counter())
        if elapsed > 0:
            self.log("train/tokens_per_second", self.tokens_this_run / elapsed)

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        total, count = self.loss_terms(batch)
        n = int(count)
        loss = total / max(1, n)
        self.log("val/loss", loss, batch_size=n, sync_dist=True)
        self.log("val/perplexity", loss.exp(), batch_size=n, sync_dist=True)
        self.log("val/selection", -loss, batch_size=n, sync_dist=True)  # best.ckpt: lowest held-out loss

    def configure_optimizers(self) -> dict[str, Any]:
        trained = [p for p in self.model.parameters() if p.requires_grad]
        return build_optimizer(trained, self.hparams.optim_cfg, self.hparams.max_steps)

    def summary(self, best_selection: Optional[float], seconds: float) -> dict[str, Any]:
        """What train.json adds for this module: val/selection is minus the held-out loss."""
        return {"best_val_loss": None if best_selection is None else -best_selection, "train_tokens": self.tokens_seen,
                "train_tokens_per_second": round(self.tokens_this_run / seconds, 1)}

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        trained = {name for name, p in self.named_parameters() if p.requires_grad}
        checkpoint["state_dict"] = {k: v for k, v in checkpoint["state_dict"].items() if k in trained}
        checkpoint["tokens_seen"] = self.tokens_seen
        save_rng(checkpoint)

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        self.tokens_seen = int(checkpoint.get("tokens_seen", 0))
        restore_rng(checkpoint)


def load_checkpoint(path: str, cache_dir: Optional[str] = None) -> CausalLMModule:
    """Rebuild a fine-tuned model from a checkpoint: the base from its source, then the trained
    parameters; anything else missing or unexpected is an error, not a silent partial load."""
    state = torch.load(path, map_location="cpu", weights_only=True)
    module = CausalLMModule(**{**state["hyper_parameters"], "cache_dir": cache_dir})
    missing, unexpected = module.load_state_dict(state["state_dict"], strict=False)
    trained = {name for name, p in module.named_parameters() if p.requires_grad}
    if unexpected or trained & set(missing):
        raise RuntimeError(f"{path}: checkpoint does not fit the model (unexpected {unexpected[:3]}, missing {sorted(trained & set(missing))[:3]})")
    return module.eval()
