"""Causal LMs end to end on a tiny random llama: LoRA trains, checkpoints hold the adapters only,
resume is exact, and every export loads back in its consumer library with the same logits."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import FIXTURES, kill_at_first_checkpoint, run_forge, run_in_process
from forge.eval import isolation


def lm_args(tiny_lm: Path, cache: Path, *extra: str) -> list[str]:
    return [
        "model=hf_causal_lm", f"model.source={tiny_lm}", "peft=lora", "peft.r=4", "peft.alpha=8",
        "data=sft_jsonl", f"data.sources=[{{format: prompt_completion, path: {FIXTURES / 'prompt_completion.jsonl'}}}]",
        "data.seq_len=64", "data.batch_size=2", "data.val_fraction=0.25", "data.test_fraction=0.25",
        "eval=perplexity", "eval.batch_size=4", "optim.lr=1e-2", "optim.warmup_steps=0",
        "trainer.max_steps=8", "trainer.val_every_n_steps=4", "trainer.checkpoint_every_n_steps=2", "trainer.log_every_n_steps=1",
        "logger=csv", f"cache_dir={cache}", *extra,
    ]


def test_lora_trains_evaluates_and_exports(tmp_path: Path, cache: Path, tiny_lm: Path) -> None:
    run = tmp_path / "run"
    he = ["eval=humaneval", "eval.batch_size=4", "eval.humaneval.limit=3", "eval.humaneval.max_new_tokens=8", "eval.humaneval.batch_size=2"]
    boundary = isolation.level().name == isolation.BUBBLEWRAP
    he += [] if boundary else ["eval.sandbox.allow_unisolated=true"]  # a machine without bubblewrap
    run_in_process(*lm_args(tiny_lm, cache, *he, "export=hf", "export.gguf_type=f32"), run_dir=run)
    train = json.loads((run / "train.json").read_text())
    assert train["steps"] == 8 and train["train_tokens"] > 0
    assert 0 < train["trained_parameters"] < train["parameters"] / 4, "only the adapters train"
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["test/loss"] < metrics["base/test/loss"], "fine-tuning lowers the held-out loss"
    assert metrics["test/perplexity"] == pytest.approx(np.exp(metrics["test/loss"]))
    for model, prefix in (("fine-tuned", ""), ("base", "base/")):  # per-row losses, for paired comparisons
        rows = [json.loads(line) for line in (run / "heldout" / f"{model}.test.jsonl").read_text().splitlines()]
        assert [r["item"] for r in rows] == list(range(len(rows))) and sum(r["tokens"] for r in rows) == metrics[f"{prefix}test/tokens"]
        assert sum(r["loss"] * r["tokens"] for r in rows) / metrics[f"{prefix}test/tokens"] == pytest.approx(metrics[f"{prefix}test/loss"])
    for prefix in ("", "base/"):  # a random model solves nothing, but every problem was generated and run
        assert metrics[f"{prefix}humaneval/problems"] == 3 and metrics[f"{prefix}humaneval/pass@1"] == 0.0
        assert metrics[f"{prefix}humaneval/sandbox"] == isolation.level().name
    for model in ("fine-tuned", "base"):
        samples = [json.loads(line) for line in (run / "humaneval" / f"{model}.completion.jsonl").read_text().splitlines()]
        assert [s["task_id"] for s in samples] == ["HumanEval/0", "HumanEval/1", "HumanEval/2"]
        assert not any(s["passed"] for s in samples) and all(s["status"] for s in samples)

    ckpt = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)
    assert ckpt["state_dict"] and all("lora_" in k for k in ckpt["state_dict"]), "checkpoints hold the adapters only"
    assert "<|im_start|>" in ckpt["hyper_parameters"]["chat_template"], "the training chat template travels with it"

    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from forge.run_dir import RunPaths
    from forge.train.causal_lm import load_checkpoint
    from forge.train.checkpoints import best_or_last

    module = load_checkpoint(str(best_or_last(RunPaths(run))))
    probe = torch.randint(0, 300, (2, 16), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected = module.model(input_ids=probe).logits
        adapter = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(str(tiny_lm)), str(run / "model" / "adapter")).eval()
        merged = AutoModelForCausalLM.from_pretrained(str(run / "model" / "merged")).eval()
        gguf = AutoModelForCausalLM.from_pretrained(str(run / "model" / "gguf"), gguf_file="model.gguf").eval()
        torch.testing.assert_close(adapter(input_ids=probe).logits, expected, atol=1e-5, rtol=0)
        torch.testing.assert_close(merged(input_ids=probe).logits, expected, atol=1e-4, rtol=0)
        torch.testing.assert_close(gguf(input_ids=probe).logits, expected, atol=1e-4, rtol=0)
    from forge.errors import ForgeError
    from forge.train.causal_lm import build_causal_lm

    lora = {"_target_": "forge.models.peft.LoRA", "r": 4, "alpha": 8, "dropout": 0.0, "target_modules": "all-linear",
            "init_from": str(run / "model" / "adapter")}
    continued = build_causal_lm({"_target_": "x", "source": str(tiny_lm)}, lora)  # training continues from the exported adapter
    with torch.no_grad():
        torch.testing.assert_close(continued.eval()(input_ids=probe).logits, expected, atol=1e-5, rtol=0)
    assert sum(p.numel() for p in continued.parameters() if p.requires_grad) == train["trained_parameters"]
    with pytest.raises(ForgeError, match=r"^peft.r=8: the adapter in peft.init_from has r=4; set peft.r=4$"):
        build_causal_lm({"_target_": "x", "source": str(tiny_lm)}, {**lora, "r": 8})
    for folder in ("adapter", "merged"):
        assert AutoTokenizer.from_pretrained(str(run / "model" / folder)).chat_template == ckpt["hyper_parameters"]["chat_template"]
    modelfile = (run / "model" / "gguf" / "Modelfile").read_text()
    assert modelfile.startswith("FROM ./model.gguf\n") and 'PARAMETER stop "<|im_end|>"' in modelfile
    assert "<|im_start|>{{ .Role }}" in modelfile and 'SYSTEM """You are a helpful assistant."""' in modelfile


def test_without_held_out_splits_it_trains_and_reports_no_held_out_loss(tmp_path: Path, cache: Path, tiny_lm: Path) -> None:
    """data.val_fraction=0 data.test_fraction=0 (e.g. one session of data): the last checkpoint is
    used, and evaluation reports 0 tokens, never a loss of 0 or a perplexity of 1."""
    run_in_process(*lm_args(tiny_lm, cache, "data.val_fraction=0", "data.test_fraction=0", "export=none"), run_dir=tmp_path / "run")
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["checkpoint"] == "last.ckpt" and metrics["test/tokens"] == metrics["base/test/tokens"] == 0
    assert not any(k.endswith(("/loss", "/perplexity")) for k in metrics)


def test_lora_resume_after_sigkill_is_exact(tmp_path: Path, cache: Path, tiny_lm: Path) -> None:
    args = lm_args(tiny_lm, cache, "trainer.max_steps=40", "trainer.val_every_n_steps=20", "trainer.deterministic=true",
                   "export=none")
    straight, broken = tmp_path / "straight", tmp_path / "broken"
    for run in (straight, broken):
        run_in_process(*args, "stage=prepare", run_dir=run)
    run_forge(*args, "stage=train", f"hydra.run.dir={straight}", cwd=tmp_path)
    assert 0 < kill_at_first_checkpoint(*args, "stage=train", run_dir=broken, cwd=tmp_path) < 40
    run_forge(*args, "stage=train", f"hydra.run.dir={broken}", f"resume={broken}", cwd=tmp_path)
    want = torch.load(straight / "checkpoints" / "last.ckpt", weights_only=True)
    got = torch.load(broken / "checkpoints" / "last.ckpt", weights_only=True)
    assert want["global_step"] == got["global_step"] == 40 and want["tokens_seen"] == got["tokens_seen"]
    for name, tensor in want["state_dict"].items():
        assert torch.equal(tensor, got["state_dict"][name]), name


def test_gguf_permutation_is_llama_cpp_layout() -> None:
    from forge.export.gguf import permute

    w = np.arange(2 * 8 * 3, dtype=np.float32).reshape(16, 3)  # 2 heads of dimension 8
    p = permute(w, 2)
    assert not np.array_equal(p, w)
    # llama.cpp pairs dimension i with i + half; Hugging Face interleaves them: rows 0,4,1,5,...
    assert p[:8, 0].tolist() == w[[0, 4, 1, 5, 2, 6, 3, 7], 0].tolist()
    inverse = p.reshape(2, 4, 2, 3).swapaxes(1, 2).reshape(16, 3)  # transformers' ReversePermute
    assert np.array_equal(inverse, w)


def test_offline_hub_id_and_missing_package_say_what_to_do(monkeypatch: pytest.MonkeyPatch) -> None:
    from forge.errors import ForgeError
    from forge.models.hf import HFCausalLM

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ForgeError, match=r"model.source=someone/never-downloaded-model: .*--local-dir DIR.*model.source=DIR"):
        HFCausalLM("someone/never-downloaded-model").folder()
    with pytest.raises(ForgeError, match="package 'no_such_pkg' is not installed"):
        HFCausalLM("pkg://no_such_pkg/model.gguf").folder()


def test_qlora_without_cuda_is_refused_with_the_reason() -> None:
    from forge.errors import ForgeError
    from forge.models.peft import LoRA

    if torch.cuda.is_available():
        pytest.skip("this machine can run QLoRA")
    with pytest.raises(ForgeError, match="QLoRA.*bitsandbytes.*CUDA"):
        LoRA(r=4, alpha=8, dropout=0.0, target_modules="all-linear", quantize_base=True).quantization_config()


def test_lora_and_dora_wrap_all_linear_layers(tiny_lm: Path) -> None:
    from forge.train.causal_lm import build_causal_lm

    for dora in (False, True):
        model = build_causal_lm({"source": str(tiny_lm)}, {"_target_": "forge.models.peft.LoRA", "r": 4, "alpha": 8, "dropout": 0.0,
                                                           "target_modules": "all-linear", "dora": dora, "quantize_base": False})
        trained = [n for n, p in model.named_parameters() if p.requires_grad]
        assert len([n for n in trained if "lora_A" in n]) == 2 * 7, "q, k, v, o, gate, up, down in both layers"
        assert any("lora_magnitude" in n for n in trained) == dora
        assert not any("lm_head" in n or "embed" in n for n in trained)


def test_gguf_export_runs_in_llama_cpp(tmp_path: Path, tiny_lm: Path) -> None:
    """The llama.cpp runtime itself (what Ollama uses) gives the same logits as transformers;
    runs where llama-cpp-python is installed (it builds from source, minutes on a small CPU)."""
    llama_cpp = pytest.importorskip("llama_cpp")
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from forge.export.gguf import write_gguf

    model, tok = AutoModelForCausalLM.from_pretrained(str(tiny_lm)).eval(), AutoTokenizer.from_pretrained(str(tiny_lm))
    write_gguf(model, tok, tmp_path / "model.gguf", "f32")
    llm = llama_cpp.Llama(str(tmp_path / "model.gguf"), logits_all=True, n_ctx=64, verbose=False)
    ids = tok("def total(xs):\n    return sum(xs)")["input_ids"]
    assert llm.tokenize(tok.decode(ids).encode(), add_bos=False, special=True) == ids
    llm.eval(ids)
    got = np.array(llm.scores[: len(ids)])
    with torch.no_grad():
        want = model(input_ids=torch.tensor([ids])).logits[0].numpy()
    np.testing.assert_allclose(got, want, atol=1e-3)
