"""`forge runs start`'s estimate and `forge runs status`: tokens counted exactly on prepared data,
duration and peak memory from this machine's earlier runs (or said to be unknown), and tokens per
second and peak memory in the status of a finished run."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from omegaconf import OmegaConf

from conftest import FIXTURES, run_forge, run_in_process
from forge.runs.tokens import trained_tokens


def cfg_of(*overrides: str):
    from forge.config.compose import compose
    from forge.config.validate import validate

    cfg, origin = compose(list(overrides))
    return validate(cfg, origin.where)


def fake_run(root: Path, name: str, cfg, train: dict, started: str = "2026-11-29T10:00:00+00:00",
             ended: str = "2026-11-29T10:00:40+00:00") -> Path:
    run = root / name
    run.mkdir(parents=True)
    (run / "run.json").write_text(json.dumps({"status": "finished", "stages_done": ["prepare", "train"], "stage": None,
                                              "started": started, "ended": ended, "pid": 1, "host": "h", "error": None}))
    (run / "command.txt").write_text("forge +recipe=quickstart seed=0\n")
    (run / "config.yaml").write_text(OmegaConf.to_yaml(cfg))
    (run / "train.json").write_text(json.dumps(train))
    return run


def test_whole_epochs_count_every_row_once_and_the_loader_drops_the_last_partial_batch() -> None:
    rows = np.array([3, 5, 7, 11])  # non-padding tokens of each train row
    assert trained_tokens(rows, batch_size=2, steps=4, accumulate=1, world=1) == (2 * 26, True)  # 2 batches an epoch
    assert trained_tokens(rows, batch_size=2, steps=2, accumulate=3, world=1) == (2 * 26, True), "a step at each epoch's end"
    assert trained_tokens(rows, batch_size=2, steps=1, accumulate=1, world=2) == (26, True), "two processes read a batch each"
    assert trained_tokens(rows, batch_size=8, steps=1, accumulate=1, world=1) is None, "less than one batch"
    assert trained_tokens(rows, batch_size=2, steps=5, accumulate=1, world=1) == (2 * 26 + 13, False), "half an epoch at the mean"
    odd = np.array([1, 10, 100, 1000, 10000])  # 2 batches of 2 an epoch: the shuffle leaves one row out
    assert trained_tokens(odd, batch_size=2, steps=2, accumulate=1, world=1) == (round(4 * 11111 / 5), False)


def test_tokens_are_counted_on_the_prepared_data_as_the_run_reads_them(tmp_path: Path, cache: Path, tiny_lm: Path) -> None:
    from forge.runs.estimate import estimate, text

    args = ["model=hf_causal_lm", f"model.source={tiny_lm}", "peft=lora", "peft.r=4", "peft.alpha=8", "data=sft_jsonl",
            f"data.sources=[{{format: prompt_completion, path: {FIXTURES / 'prompt_completion.jsonl'}}}]", "data.seq_len=64",
            "data.batch_size=3", "data.val_fraction=0.25", "data.test_fraction=0.25", "eval=perplexity", "eval.batch_size=4",
            "trainer.max_steps=7", "trainer.val_every_n_steps=4", "trainer.log_every_n_steps=1", "export=none", "logger=csv",
            f"cache_dir={cache}"]
    before = estimate(cfg_of(*args), [tmp_path / "outputs"], None)
    assert (before["tokens"], before["tokens_from"]) == (7 * 3 * 64, "bound")
    assert "at most 1,344 training tokens (a bound from the data config" in text(before)
    run = tmp_path / "outputs" / "run"
    run_in_process(*args, "stage=prepare", run_dir=run)
    found = estimate(cfg_of(*args), [tmp_path / "outputs"], None)
    rows = (json.loads((run / "data" / "meta.json").read_text())["sizes"]["train"])
    assert found["tokens_from"] == "expected" and 7 * 3 > rows, "the run goes over its train rows more than once"
    assert f"about {found['tokens']:,} training tokens (counted on the prepared data with the model's tokenizer; " in text(found)
    run_in_process(*args, "stage=train", run_dir=run)
    actual = json.loads((run / "train.json").read_text())["train_tokens"]
    assert abs(found["tokens"] - actual) <= 0.05 * actual, (found["tokens"], actual)

    status = json.loads(run_forge("runs", "status", str(run), "--json", cwd=tmp_path).stdout)
    train = json.loads((run / "train.json").read_text())
    assert status["status"] == "finished" and status["peak_rss_mb"] == train["peak_rss_mb"] > 50
    assert status["tokens_per_second"] == train["train_tokens_per_second"] > 0
    assert status["tokens_per_second_from"] == "train.json: tokens trained over the training time"
    assert status["last"]["train/tokens_per_second"] > 0, "logged while it trains"


def test_duration_and_peak_memory_come_from_earlier_runs_of_the_same_shape(tmp_path: Path, cache: Path) -> None:
    from forge.runs.estimate import estimate, text

    root = tmp_path / "outputs"
    config = cfg_of("+recipe=quickstart", f"cache_dir={cache}")
    nothing = estimate(config, [root], "quickstart")
    assert nothing["seconds"] is None and "peak_rss_mb" not in nothing
    assert text(nothing) == (
        "estimate: 1,500 steps of 128 examples; training tokens unknown until the data is prepared (stage=prepare); duration unknown: "
        "no finished run of quickstart with this model and batch on cpu x1 here yet; peak memory unknown: no earlier run of this "
        "shape recorded its peak memory here")
    for name, pace, peak in (("a", 40.0, 300.0), ("b", 50.0, 350.0), ("c", 60.0, 320.0)):
        # 1,500 steps at `pace` in a run of 40 s: 40 - 1500 / pace seconds outside the training loop
        fake_run(root, name, config, {"steps": 1500, "steps_per_second": pace, "peak_rss_mb": peak})
    fake_run(root, "d", cfg_of("+recipe=quickstart", "data.batch_size=32"), {"steps": 1500, "steps_per_second": 500.0, "peak_rss_mb": 9e3})
    found = estimate(config, [root], "quickstart", price_per_hour=3.6)
    assert (found["train_seconds"], found["outside_seconds"], found["seconds"], found["cost"]) == (30, 10, 40, 0.04)
    assert found["peak_rss_mb"] == 350.0
    assert text(found) == (
        "estimate: 1,500 steps of 128 examples; training tokens unknown until the data is prepared (stage=prepare); duration about "
        "40s (training 30s + 10s outside training; median pace of 3 earlier run(s) of quickstart on cpu x1 here); peak memory 350 "
        "MiB resident (the highest of 3 earlier run(s) of quickstart on cpu x1 here); cost 0.04")
    assert estimate(cfg_of("+recipe=quickstart", "model.d_model=64"), [root], "quickstart")["seconds"] is None, "another model"
    capped = estimate(cfg_of("+recipe=quickstart", "trainer.max_minutes=0.25"), [root], "quickstart")
    assert (capped["steps"], capped["train_seconds"]) == (750, 15) and "(trainer.max_minutes ends it before 1,500)" in text(capped)

    run_in_process("+recipe=quickstart", "stage=prepare", f"cache_dir={cache}", run_dir=tmp_path / "prep")
    positions = estimate(config, [root], "quickstart")
    assert positions["tokens_from"] == "positions" and positions["tokens"] == 1500 * 128 * 12, "3+3 digits, '+', '=' and the sum"

    refused = run_forge("runs", "start", "+recipe=quickstart", "trainer.max_steps=1000000", f"cache_dir={cache}", "--max-hours", "1",
                        cwd=tmp_path, check=False)
    assert refused.returncode == 1 and refused.stdout.startswith("estimate: 1,000,000 steps of 128 examples; 1,536,000,000 training")
    assert "duration about 5h33m (training 5h33m + 10s outside training;" in refused.stdout
    assert refused.stderr.strip() == "forge: error: runs start: the estimate is over --max-hours 1; add --yes to start it anyway"
    assert not (root / "runs").exists(), "nothing started"
