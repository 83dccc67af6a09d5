"""Training-loop overhead: forge's steps/s against a hand-written PyTorch loop, same job.

Both train the quickstart transformer on the same prepared batches (same order, same
initialization, same AdamW + warmup/cosine schedule, same gradient clipping) for the same number
of steps, alternating repeats in one run. forge runs through its real command
(`forge +recipe=quickstart stage=train`), timed by its own train.json: `train_seconds` is the
whole `trainer.fit` call (setup, logging, checkpoints), `steps_per_second` the loop from its
first batch to its end. The plain loop is timed from its first step to its last. Validation is
switched off for both. Equal final losses show both ran the same computation. Writes benchmarks/results/train_loop_overhead.json.

    python benchmarks/train_loop_overhead.py [--steps 600] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent


def forge_run(steps: int, workdir: Path) -> tuple[float, float, float]:
    run = workdir / f"forge-{time.monotonic_ns()}"
    common = ["+recipe=quickstart", f"trainer.max_steps={steps}", f"trainer.val_every_n_steps={10 * steps}",
              f"cache_dir={workdir / 'cache'}", f"hydra.run.dir={run}"]
    for stage in ("prepare", "train"):
        subprocess.run([sys.executable, "-m", "forge", *common, f"stage={stage}"], check=True,
                       capture_output=True, cwd=workdir)
    info = json.loads((run / "train.json").read_text())
    return steps / info["train_seconds"], info["steps_per_second"], info["final_train_loss"]


def plain_run(steps: int, data_dir: Path, cfg) -> tuple[float, float]:
    """What a careful engineer writes by hand: the same model, data order and optimizer."""
    import random

    import numpy as np

    from forge.data.loader import ResumableBatchSampler, SplitDataset
    from forge.models.sequence import sequence_loss
    from forge.models.transformer import Transformer
    from forge.train.module import _lr_lambda

    torch.set_num_threads(len(os.sched_getaffinity(0)))
    random.seed(cfg.seed), np.random.seed(cfg.seed), torch.manual_seed(cfg.seed)
    meta = json.loads((data_dir / "meta.json").read_text())
    m = cfg.model
    model = Transformer(len(meta["vocab"]), meta["seq_len"], m.d_model, m.n_layers, m.n_heads, m.d_ff, m.dropout, m.causal)
    o = cfg.optim
    decay = [p for p in model.parameters() if p.ndim >= 2]
    no_decay = [p for p in model.parameters() if p.ndim < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": o.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
                            lr=o.lr, betas=tuple(o.betas), eps=o.eps)
    params = [p for group in opt.param_groups for p in group["params"]]  # Lightning clips in this order
    sched = torch.optim.lr_scheduler.LambdaLR(opt, _lr_lambda(steps, o.warmup_steps, o.schedule, o.min_lr_ratio))
    data = SplitDataset(data_dir, "train")
    sampler = ResumableBatchSampler(len(data), cfg.data.batch_size, cfg.seed)
    step, epoch = 0, 0
    start = time.perf_counter()
    while step < steps:
        sampler.set_epoch(epoch)
        for rows in sampler:
            batch = data[rows]
            loss = sequence_loss(model(batch["inputs"]), batch["labels"], True)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, cfg.trainer.gradient_clip_val)
            opt.step()
            sched.step()
            step += 1
            if step == steps:
                break
        epoch += 1
    return steps / (time.perf_counter() - start), loss.item()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=600)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()

    from forge.config.compose import compose
    from forge.config.validate import validate
    from forge.data.prepare import prepare

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        cfg, origin = compose(["+recipe=quickstart"])
        cfg = validate(cfg, origin.where)
        data_dir = prepare(cfg.data, str(work / "cache"), work / "plain-data")
        forge_rates, loop_rates, plain_rates, losses = [], [], [], {}
        for _ in range(args.repeats):
            rate, losses["plain"] = plain_run(args.steps, data_dir, cfg)
            plain_rates.append(rate)
            rate, loop_rate, losses["forge"] = forge_run(args.steps, work)
            forge_rates.append(rate)
            loop_rates.append(loop_rate)
    result = {
        "benchmark": "training-loop overhead, quickstart transformer (0.4M params), batch 128, fp32",
        "date": date.today().isoformat(),
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}",
        "steps": args.steps,
        "repeats": args.repeats,
        "plain_steps_per_s": plain_rates,
        "forge_steps_per_s": forge_rates,
        "forge_loop_steps_per_s": loop_rates,
        "median_plain": statistics.median(plain_rates),
        "median_forge": statistics.median(forge_rates),
        "median_forge_loop": statistics.median(loop_rates),
        "ratio_forge_over_plain": statistics.median(forge_rates) / statistics.median(plain_rates),
        "ratio_forge_loop_over_plain": statistics.median(loop_rates) / statistics.median(plain_rates),
        "final_loss": losses,
    }
    out = HERE / "results" / "train_loop_overhead.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
