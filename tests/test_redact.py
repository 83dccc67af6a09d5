"""A run's API keys, from the environment or the config, never reach a file of its run directory,
its log, its export or its console output; config.yaml stays valid YAML, and resuming still works."""

from __future__ import annotations

import json
import logging
import random
import string
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from conftest import run_forge, run_in_process, tiny
from forge import redact

_RNG = random.Random(14)


def _random(chars: str, n: int) -> str:
    return "".join(_RNG.choice(chars) for _ in range(n))


ALNUM = string.ascii_letters + string.digits
# Made at run time: no credential-shaped literal sits in the repository.
OPENAI_KEY = "sk-proj-" + _random(ALNUM, 20) + "T3BlbkFJ" + _random(ALNUM, 20)
HF_TOKEN = "hf_" + _random(string.ascii_letters, 34)
PASSWORD = "pw-" + _random(ALNUM, 12)


def test_a_planted_key_is_in_no_file_of_the_run(
    tmp_path: Path, cache: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", OPENAI_KEY)
    monkeypatch.setenv("HF_TOKEN", HF_TOKEN)
    run = tmp_path / "run"
    # export.ollama takes any key (Modelfile parameters): the config holds the key through an
    # interpolation, the token inside a longer value, and a password given on the command line.
    args = [*tiny(cache), "trainer.max_steps=5", "+export.ollama.api_key=${oc.env:OPENAI_API_KEY}",
            "+export.ollama.note=pulled-with-${oc.env:HF_TOKEN}", f"+export.ollama.db_password={PASSWORD}"]
    first = run_forge(*args, f"hydra.run.dir={run}", cwd=tmp_path)
    command = (run / "command.txt").read_text()
    # Resuming compares the config with config.yaml, which holds it masked: still the same run.
    run_in_process(*args, f"resume={run}", "stage=prepare", run_dir=run)
    again = capsys.readouterr()
    files = [f for f in run.rglob("*") if f.is_file()]
    assert {"config.yaml", "command.txt", "run.json", "forge.log", "overrides.yaml", "model.safetensors"} <= {f.name for f in files}
    for secret in (OPENAI_KEY, HF_TOKEN, PASSWORD):
        for f in files:
            assert secret.encode() not in f.read_bytes(), f"the key is in {f.relative_to(run)}"
        for out in (first.stdout, first.stderr, again.out, again.err, caplog.text):
            assert secret not in out
    saved = OmegaConf.load(run / "config.yaml").export.ollama
    assert dict(saved) == {"api_key": "***", "note": "pulled-with-***", "db_password": "***"}
    assert "+export.ollama.db_password=***" in command


def test_the_secrets_of_a_run() -> None:
    environ = {"OPENAI_API_KEY": OPENAI_KEY, "HF_TOKEN": HF_TOKEN, "TOKENIZERS_PARALLELISM": "false", "SSH_AUTH_SOCK": "/tmp/agent.sock",
               "PWD": "/home/user/project", "API_KEY": "short", "DATABASE_URL": f"postgres://app:{PASSWORD}@db/prod"}
    cfg = {"model": {"pad_token": "<|im_end|>", "name": "org/model-name"}, "data": {"secrets": "quarantine"},
           "logger": {"wandb_api_key": "k" * 10, "tracking_uri": f"https://ci:{PASSWORD}@mlflow.internal"}}
    r = redact.Redactor.of_run(cfg, environ)
    assert set(r.forms) == {OPENAI_KEY, HF_TOKEN, "k" * 10, PASSWORD}
    assert r.text(f"key={OPENAI_KEY}, a{HF_TOKEN}") == "key=***, a***"
    assert r.tree({"x": [f"url https://ci:{PASSWORD}@mlflow.internal", 3]}) == {"x": ["url https://ci:***@mlflow.internal", 3]}
    quoted = 'pa"ss\\' + PASSWORD
    assert redact.Redactor([quoted]).text(json.dumps({"error": f"login {quoted} refused"})) == '{"error": "login *** refused"}'


def test_log_records_and_written_text_are_masked_while_a_run_is_active(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    from forge import atomic

    log = logging.getLogger("forge")
    with caplog.at_level(logging.INFO):
        with redact.active(redact.Redactor([OPENAI_KEY])):
            log.info("calling the API with %s", OPENAI_KEY)
            try:
                raise ValueError(f"bad key {OPENAI_KEY}")
            except ValueError:
                log.exception("failed")
            atomic.write_json(tmp_path / "a.json", {"key": OPENAI_KEY})
        log.info("after the run: %s", OPENAI_KEY[:5])
    assert OPENAI_KEY not in caplog.text and "calling the API with ***" in caplog.text and "ValueError: bad key ***" in caplog.text
    assert f"after the run: {OPENAI_KEY[:5]}" in caplog.text, "outside a run nothing is masked"
    assert (tmp_path / "a.json").read_text() == '{\n  "key": "***"\n}\n'


def test_checkpoint_hyperparameters_are_masked(tmp_path: Path) -> None:
    """A module saves its config in every checkpoint: a key in it is masked there too."""
    import torch

    from forge.train.checkpoint_io import AtomicCheckpointIO

    checkpoint = {"state_dict": {"w": torch.zeros(2)}, "hyper_parameters": {"model_cfg": {"source": f"https://u:{PASSWORD}@hub/m"}}}
    with redact.active(redact.Redactor([PASSWORD])):
        AtomicCheckpointIO().save_checkpoint(checkpoint, tmp_path / "last.ckpt")
    assert PASSWORD.encode() not in (tmp_path / "last.ckpt").read_bytes()
    saved = torch.load(tmp_path / "last.ckpt", weights_only=True)
    assert saved["hyper_parameters"] == {"model_cfg": {"source": "https://u:***@hub/m"}} and PASSWORD in checkpoint["hyper_parameters"]["model_cfg"]["source"]
