"""Deploy and rollback serve the stage's version from a real `transformers serve` on loopback,
checked with real chat requests; a SIGKILL midway through a move leaves the registry before or
after it, and the next `forge models serve` puts the stage's own version back in service."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from forge import registry, serving
from forge.cli.models import main
from forge.errors import ForgeError
from test_models_registry import make_run, repo  # noqa: F401  (the Git+DVC project fixture)

WORDS = ("in", "None")  # one token each in the tiny tokenizer


def parrot(tiny_lm: Path, word: str, folder: Path) -> None:
    """The tiny llama rewired to say `word` after anything: every layer's output zeroed, every
    token embedded alike, and an untied head that scores only `word`."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    tok = AutoTokenizer.from_pretrained(str(tiny_lm))
    [word_id] = tok(word, add_special_tokens=False)["input_ids"]
    config = LlamaConfig.from_pretrained(str(tiny_lm))
    config.tie_word_embeddings = False
    model = LlamaForCausalLM(config)
    with torch.no_grad():
        for layer in model.model.layers:
            layer.self_attn.o_proj.weight.zero_()
            layer.mlp.down_proj.weight.zero_()
        model.model.embed_tokens.weight.fill_(1.0)
        model.lm_head.weight.zero_()
        model.lm_head.weight[word_id] = 1.0
    model.save_pretrained(str(folder))
    tok.save_pretrained(str(folder))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def two_versions(repo: Path, tiny_lm: Path) -> Path:  # noqa: F811
    for i, word in enumerate(WORDS):
        run = make_run(repo, f"run-{word}", 0.5 - i / 10, model=False)
        parrot(tiny_lm, word, run / "model" / "merged")
        registry.register(run, "coder")
    yield repo
    for stage in ("prod", "staging"):
        serving.shutdown("coder", stage)


def test_deploy_serves_the_version_and_rollback_brings_back_the_previous(two_versions: Path, capsys: pytest.CaptureFixture[str]) -> None:
    port = free_port()
    main(["deploy", "coder@v0.0.1", "--stage", "prod", "--port", str(port)])
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "coder v0.0.1 -> prod"
    assert out[1] == "its training data is marked used: 1 file(s), 10 examples (forge models versions coder --json lists them under used_data)"
    assert out[2].startswith(f"serving v0.0.1 at http://127.0.0.1:{port}/v1 as model 'coder-prod' (pid ")
    assert out[2].endswith("it answered a chat request: 'inininininininin'")
    url = f"http://127.0.0.1:{port}/v1"
    ask = [{"role": "user", "content": "What is 2 + 2?"}]
    assert serving.chat(url, ask, 3) == "ininin"

    main(["deploy", "coder@v0.0.2", "--stage", "prod"])  # the same port: the stage's address
    assert serving.chat(url, ask, 3) == "NoneNoneNone"
    main(["rollback", "coder", "--stage", "prod"])
    out = capsys.readouterr().out.splitlines()
    assert out[-2] == "coder prod: v0.0.2 -> v0.0.1"
    assert serving.chat(url, ask, 3) == "ininin"
    assert [m["version"] for m in registry.history(registry.Repo(), "coder")] == ["v0.0.1", "v0.0.2", "v0.0.1"]

    main(["ls", "--json"])
    [server] = json.loads(capsys.readouterr().out)[0]["servers"]
    assert (server["stage"], server["version"], server["url"], server["model"], server["alive"]) == ("prod", "v0.0.1", url, "coder-prod", True)
    assert subprocess.run(["git", "status", "--porcelain"], cwd=two_versions, capture_output=True, text=True).stdout == ""

    main(["serve", "coder", "--stage", "prod", "--stop"])
    assert capsys.readouterr().out.startswith(f"stopped the server of coder prod (v0.0.1, {url})")
    with pytest.raises(OSError):
        serving.chat(url, ask, 1, timeout=5)


KILL = """
import os, signal, sys
from forge import serving
def killed(*args, **kwargs):
    os.kill(os.getpid(), signal.SIGKILL)
serving.registry.deploy = killed
serving.deploy("coder@v0.0.2", "prod", port=int(sys.argv[1]), timeout=120)
"""


def test_a_deploy_killed_before_its_tag_leaves_the_stage_where_it_was(two_versions: Path) -> None:
    """Killed after the new server answered but before the stage moved: the stage still has
    v0.0.1, and `forge models serve` replaces the stray server with the stage's own version."""
    port = free_port()
    serving.deploy("coder@v0.0.1", "prod", port=port, timeout=120)
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    done = subprocess.run([sys.executable, "-c", KILL, str(port)], cwd=two_versions, env=env, capture_output=True, text=True)
    assert done.returncode == -signal.SIGKILL, done.stderr
    r = registry.Repo()
    assert registry.current(r, "coder", "prod") == "v0.0.1"
    url = f"http://127.0.0.1:{port}/v1"
    assert serving.chat(url, serving.PROBE, 1) == "None"  # the stray server of the move that never happened
    record = serving.serve("coder", "prod")
    assert (record["version"], record["port"], record["reply"]) == ("v0.0.1", port, "inininininininin")


def test_a_version_that_cannot_be_served_is_not_deployed(two_versions: Path) -> None:
    """A broken model fails its health check: the stage stays on the version in service, which
    is started again and keeps answering."""
    port = free_port()
    serving.deploy("coder@v0.0.1", "prod", port=port, timeout=120)
    broken = make_run(two_versions, "broken", 0.1, model=False)
    shutil.copytree(two_versions / "outputs" / "run-in" / "model", broken / "model")
    (broken / "model" / "merged" / "model.safetensors").write_bytes(b"not weights")
    registry.register(broken, "coder")
    with pytest.raises(ForgeError, match=r"^models: the server for coder-prod exited \(code 1\) before answering: "):
        serving.deploy("coder@v0.0.3", "prod", port=port, timeout=120)
    assert registry.current(registry.Repo(), "coder", "prod") == "v0.0.1"
    assert serving.chat(f"http://127.0.0.1:{port}/v1", serving.PROBE, 1) == "in"


def test_serving_needs_a_merged_model(repo: Path) -> None:  # noqa: F811
    registry.register(make_run(repo, "adapter-only", 0.5), "coder")
    with pytest.raises(ForgeError, match=r"^models deploy: coder@v0.0.1 has no merged model to serve \(it holds adapter\); export with "
                                         r"export.outputs=\[adapter,merged\] before registering, or deploy with --no-serve"):
        main(["deploy", "coder@v0.0.1", "--stage", "prod"])
    assert registry.current(registry.Repo(), "coder", "prod") is None
    with pytest.raises(ForgeError, match=r"^models serve: coder has no version in 'prod'; deploy one first"):
        main(["serve", "coder"])
