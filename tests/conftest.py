"""Shared helpers: run the real `forge` command in a subprocess, on a shrunken quickstart."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def tiny(cache: Path) -> list[str]:
    """The quickstart recipe shrunk to a couple of seconds of training."""
    return [
        "+recipe=quickstart",
        "data.n_train=512",
        "data.n_val=64",
        "data.n_test=64",
        "data.batch_size=32",
        "model.d_model=32",
        "model.d_ff=64",
        "model.n_layers=1",
        "trainer.max_steps=20",
        "trainer.val_every_n_steps=10",
        "trainer.checkpoint_every_n_steps=10",
        "trainer.log_every_n_steps=5",
        "eval.batch_size=64",
        f"cache_dir={cache}",
    ]


def run_in_process(*overrides: str, run_dir: Path) -> "RunResult":  # noqa: F821
    """What `forge OVERRIDES hydra.run.dir=RUN_DIR` runs, in this process (lightning-hydra-
    template's `train(cfg)`): for tests that need a run directory, not the command line."""
    import torch

    from forge.config.compose import compose
    from forge.config.validate import validate
    from forge.runner import run

    cfg, origin = compose(list(overrides))
    # trainer.deterministic=true switches torch to deterministic algorithms for the process:
    # leave the process as the run found it.
    deterministic, warn_only = torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled()
    try:
        return run(validate(cfg, origin.where), run_dir)
    finally:
        torch.use_deterministic_algorithms(deterministic, warn_only=warn_only)


def forge_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env.pop("HYDRA_FULL_ERROR", None)
    return env


def run_forge(*args: str, cwd: Path, check: bool = True, timeout: float = 300) -> subprocess.CompletedProcess:
    proc = subprocess.run(
        [sys.executable, "-m", "forge", *args],
        cwd=cwd,
        env=forge_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"forge {' '.join(args)} exited {proc.returncode}\n{proc.stdout}\n{proc.stderr}")
    return proc


@pytest.fixture
def cache(tmp_path: Path) -> Path:
    return tmp_path / "cache"


CHATML = (
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n' }}{% endif %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


def tiny_tokenizer() -> "PreTrainedTokenizerFast":  # noqa: F821
    """A byte-level BPE with ChatML special tokens and template, trained on a little Python (a
    fixed corpus, so token counts in tests never move with the code)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    text = (REPO / "tests" / "fixtures" / "tiny_tokenizer_corpus.txt").read_text().splitlines()
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=400, special_tokens=["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train_from_iterator(text, trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<|im_start|>", eos_token="<|im_end|>", unk_token="<|endoftext|>", pad_token="<|im_end|>"
    )
    fast.chat_template = CHATML
    return fast


@pytest.fixture(scope="session")
def tiny_lm(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A randomly initialised 2-layer llama (GQA, tied embeddings) and its tokenizer, saved the
    way a Hugging Face checkpoint folder is."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    folder = tmp_path_factory.mktemp("tiny_llama")
    tok = tiny_tokenizer()
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, max_position_embeddings=256, tie_word_embeddings=True, rope_theta=10000.0,
        bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id,
    )
    LlamaForCausalLM(config).save_pretrained(str(folder))
    tok.save_pretrained(str(folder))
    return folder


FIXTURES = REPO / "tests" / "fixtures" / "sft"


def kill_at_first_checkpoint(*args: str, run_dir: Path, cwd: Path) -> int:
    """Start `forge ARGS` in `run_dir`, SIGKILL it as soon as its first checkpoint is on disk
    (checkpoints are written atomically, so that one is whole) and return the checkpoint's step."""
    import time

    import torch

    proc = subprocess.Popen([sys.executable, "-m", "forge", *args, f"hydra.run.dir={run_dir}"], cwd=cwd, env=forge_env(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    ckpt = run_dir / "checkpoints" / "last.ckpt"
    deadline = time.time() + 120
    while proc.poll() is None and time.time() < deadline and not ckpt.exists():
        time.sleep(0.01)
    proc.kill()
    proc.wait()
    if proc.returncode != -9:
        pytest.fail("the run finished before it could be killed; make it longer")
    return torch.load(ckpt, weights_only=True)["global_step"]
