"""Perplexity and bits per byte of a causal LM on a plain text, in non-overlapping windows of a
fixed tokenizer: ppl = exp(sum NLL / scored tokens), bits/byte = sum NLL / (ln 2 * UTF-8 bytes of
the text those tokens cover), which compares models across tokenizers. The first token of each
window has no context and is not scored. With a reference model, also the KL divergence from it
and top-1 agreement with it on the same positions."""

from __future__ import annotations

import math
import time
from typing import Any, Optional

import torch
import torch.nn.functional as F


def windows(tokenizer: Any, text: str, length: int, limit: Optional[int] = None) -> tuple[torch.Tensor, int]:
    """(non-overlapping windows [n, length] of the text's tokens, UTF-8 bytes of the text that
    their scored tokens cover: from the end of each window's first token to the end of its last);
    the last partial window is dropped, `limit` keeps the first n."""
    ids = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    tokens, ends = ids["input_ids"], [end for _, end in ids["offset_mapping"]]
    n = len(tokens) // length if limit is None else min(limit, len(tokens) // length)
    if n == 0:
        raise ValueError(f"the text has {len(tokens)} tokens, fewer than one window of {length}")
    scored_bytes = sum(len(text[ends[w * length] : ends[(w + 1) * length - 1]].encode("utf-8")) for w in range(n))
    return torch.tensor(tokens[: n * length]).reshape(n, length), scored_bytes


@torch.no_grad()
def log_probs(model: torch.nn.Module, rows: torch.Tensor, batch_size: int = 4) -> list[torch.Tensor]:
    """Float32 next-token log-probabilities per batch of windows, to compare other models with."""
    return [F.log_softmax(model(input_ids=batch).logits[:, :-1].float(), -1) for batch in rows.split(batch_size)]


@torch.no_grad()
def perplexity(model: torch.nn.Module, rows: torch.Tensor, scored_bytes: int, batch_size: int = 4,
               reference: Optional[list[torch.Tensor]] = None) -> dict[str, float]:
    """`reference`: `log_probs` of the model to compare with, on the same rows and batch size."""
    nll, n, kl, same = 0.0, 0, 0.0, 0
    for i, batch in enumerate(rows.split(batch_size)):
        logp = F.log_softmax(model(input_ids=batch).logits[:, :-1].float(), -1)
        targets = batch[:, 1:]
        nll -= float(logp.gather(-1, targets[..., None]).sum())
        n += targets.numel()
        if reference is not None:
            kl += float(F.kl_div(logp, reference[i], log_target=True, reduction="sum"))
            same += int((reference[i].argmax(-1) == logp.argmax(-1)).sum())
    out = {"perplexity": math.exp(nll / n), "bits_per_byte": nll / (math.log(2) * scored_bytes), "tokens": n}
    if reference is not None:
        out.update({"kl": kl / n, "top1_agreement": same / n})
    return out


@torch.no_grad()
def latency(model: torch.nn.Module, prompt_tokens: int = 128, new_tokens: int = 32, repeats: int = 3, vocab: int = 1000) -> dict[str, float]:
    """Median prefill time of a prompt and median time per greedily decoded token (KV cache),
    batch 1, at the thread count torch is set to."""
    prompt = torch.randint(0, vocab, (1, prompt_tokens), generator=torch.Generator().manual_seed(0))
    prefill, decode = [], []
    for _ in range(repeats):
        start = time.perf_counter()
        out = model(input_ids=prompt, use_cache=True)
        prefill.append(time.perf_counter() - start)
        past, token = out.past_key_values, out.logits[:, -1:].argmax(-1)
        start = time.perf_counter()
        for _ in range(new_tokens):
            out = model(input_ids=token, past_key_values=past, use_cache=True)
            past, token = out.past_key_values, out.logits[:, -1:].argmax(-1)
        decode.append((time.perf_counter() - start) / new_tokens)
    return {"prefill_ms": 1000 * sorted(prefill)[len(prefill) // 2], "decode_ms_per_token": 1000 * sorted(decode)[len(decode) // 2],
            "threads": torch.get_num_threads(), "prompt_tokens": prompt_tokens}
