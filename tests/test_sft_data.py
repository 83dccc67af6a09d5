"""SFT data: every format parses real examples, bad lines are quarantined with their line numbers,
chat masking scores assistant tokens only, and packing keeps examples apart."""

from __future__ import annotations

import io
import hashlib
import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from conftest import FIXTURES, tiny_tokenizer
from forge.data.sft import agent_traces, formats
from forge.data.sft.examples import Chat, Completion
from forge.data.sft.pack import Packer
from forge.data.sft.python_code import code_examples
from forge.data.sft.records import Quarantine, read_jsonl
from forge.data.sft.tokenize import encode
from forge.data.task import IGNORE


def parse(fmt: str, path: Path, **options) -> tuple[list, Quarantine, Counter]:
    quarantine, counts, out = Quarantine(io.StringIO()), Counter(), []
    parser = formats.PARSERS.get(fmt) or formats.agent_run(options.get("reward_weights", {}), options.get("min_reward"))
    for number, record in read_jsonl(path, quarantine):
        try:
            out += parser(record, f"{path}:{number}")
        except formats.BelowThreshold:
            counts["below"] += 1
        except formats.BadRecord as e:
            quarantine.add(path, number, str(e), json.dumps(record))
    return out, quarantine, counts


def quarantined_lines(q: Quarantine) -> list[int]:
    return [json.loads(line)["line"] for line in q.out.getvalue().splitlines()]


def test_prompt_completion_with_bad_lines_set_aside() -> None:
    examples, q, _ = parse("prompt_completion", FIXTURES / "prompt_completion.jsonl")
    assert len(examples) == 24 and all(isinstance(e, Completion) for e in examples)
    assert examples[0].prompt.startswith("def add_0(a, b):") and examples[0].completion == "    return a + b + 0\n"
    assert quarantined_lines(q) == [6, 10]  # the truncated JSON line and the non-string completion
    assert "invalid JSON" in q.out.getvalue() and "'completion' must be a non-empty string" in q.out.getvalue()


def test_messages_and_alpaca() -> None:
    chats, q, _ = parse("messages", FIXTURES / "messages.jsonl")
    assert [len(c.messages) for c in chats] == [2, 5]
    assert quarantined_lines(q) == [3, 4]  # no assistant turn; unknown role
    alpaca, q, _ = parse("alpaca", FIXTURES / "alpaca.jsonl")
    assert alpaca[0].messages == [{"role": "user", "content": "Convert the temperature to Fahrenheit.\n\n25 C"},
                                  {"role": "assistant", "content": "77 F"}]
    assert alpaca[1].messages[0]["content"] == "Name the Python keyword that defines a function."
    assert quarantined_lines(q) == [3]


def test_agent_runs_filtered_by_reward() -> None:
    weights = {"compiled": 1.0, "tests_passed": 2.0, "errors": -0.5, "human_rating": 0.25}
    assert formats.run_reward({"compiled": True, "tests_passed": 10, "tests_total": 10, "errors": 0, "human_rating": 5}, weights) == 4.25
    kept, q, counts = parse("agent_runs", FIXTURES / "agent_runs.jsonl", reward_weights=weights, min_reward=2.0)
    assert [c.messages[0]["content"] for c in kept] == ["Implement fizzbuzz(n)."]
    assert counts["below"] == 2  # is_even (1.5) and the run that did not compile (-1.0)
    assert quarantined_lines(q) == [4]  # signals is not an object


def test_claude_code_session_becomes_examples_of_each_kind() -> None:
    q, counts = Quarantine(io.StringIO()), Counter()
    sessions = list(agent_traces.read_sessions(FIXTURES / "claude_code_session.jsonl", q))
    assert quarantined_lines(q) == [10]  # the line cut off mid-object
    (session,) = sessions
    assert agent_traces.succeeded(session) and session.tools[:2] == ["Task", "Bash"]
    assert session.prompt.startswith("The test tests/test_cart.py::test_total_with_discount fails")
    examples = agent_traces.session_examples(session, agent_traces.KINDS, counts)
    assert counts == Counter(tool_selection=4, reasoning_action=3, error_recovery=1, answer=1)
    first = examples[1]  # reasoning -> action: thinking, then the Bash call
    assert first.scored == (len(first.messages) - 1,)
    reply = first.messages[-1]["content"]
    assert reply.startswith("<think>\nI should run the failing test first") and '"name": "Bash"' in reply
    recovery = next(e for e in examples if "(2.5 = 10% of 25)" in e.messages[-1]["content"])
    assert "<tool_response error>" in recovery.messages[-2]["content"] and "assert 2.5 == 22.5" in recovery.messages[-2]["content"]
    selection = [e.messages[-1]["content"] for e in examples if e.messages[1]["content"].endswith("Which tool should be called next?")]
    assert selection == ["Bash", "Read", "Edit", "Bash"]
    assert "- Bash (failed)" in examples[2].messages[1]["content"]  # the history shows the failed call
    answer = examples[-1].messages[-1]["content"]
    assert answer.startswith("Fixed: `Cart.total`") and "<tool_call>" not in answer


def test_chat_loss_only_on_assistant_tokens() -> None:
    tok = tiny_tokenizer()
    chat = Chat([{"role": "system", "content": "Code only."}, {"role": "user", "content": "Sum xs."},
                 {"role": "assistant", "content": "sum(xs)"}, {"role": "user", "content": "Mean?"},
                 {"role": "assistant", "content": "sum(xs) / len(xs)"}], group="g")
    ids, mask = encode(tok, chat)
    assert tok.decode(ids) == tok.apply_chat_template(chat.messages, tokenize=False)
    scored = [tok.decode([i for i, m in zip(ids, mask) if m])]
    assert scored == ["sum(xs)<|im_end|>\nsum(xs) / len(xs)<|im_end|>\n"]
    only_last = Chat(chat.messages, "g", scored=(4,))
    ids, mask = encode(tok, only_last)
    assert tok.decode([i for i, m in zip(ids, mask) if m]) == "sum(xs) / len(xs)<|im_end|>\n"


def test_completion_scores_completion_and_eos() -> None:
    tok = tiny_tokenizer()
    ids, mask = encode(tok, Completion("def f():\n", "    return 1\n", "g"))
    assert tok.decode([i for i, m in zip(ids, mask) if m]) == "    return 1\n<|im_end|>"
    assert not any(mask[: len(tok("def f():\n")["input_ids"])])


def test_long_examples_keep_their_scored_end() -> None:
    from forge.data.sft.task import fit

    ids, mask = list(range(20)), [False] * 16 + [True] * 4
    assert fit(ids, mask, 8) == ([0, 1, 14, 15, 16, 17, 18, 19], [False] * 4 + [True] * 4)
    assert fit(ids, [False, True] + [True] * 18, 8) == (ids[:8], [False] + [True] * 7)


def test_packer_rows_and_boundaries() -> None:
    packer = Packer(seq_len=10, pad_id=0, packing=True, open_rows=2)
    rows = []
    for n in (6, 3, 4, 5, 2):
        rows += list(packer.add(list(range(1, n + 1)), [True] * n))
    rows += list(packer.flush())
    segments = [r[2] for r in rows]
    assert sum(int((s > 0).sum()) for s in segments) == 20, "every token is placed once"
    for inputs, labels, seg, _ in rows:
        for k in set(seg.tolist()) - {0}:
            start = int(np.argmax(seg == k))
            assert labels[start] == IGNORE, "no example is predicted from the one before it"
        assert (labels[seg == 0] == IGNORE).all(), "padding is never trained on"
    unpacked = list(Packer(seq_len=10, pad_id=0, packing=False).add([1, 2, 3], [True] * 3))
    assert unpacked == [] and len(list(Packer(10, 0, False).flush())) == 0


DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


@pytest.mark.parametrize("device", DEVICES)
def test_packed_examples_never_attend_to_each_other(tiny_lm: Path, device: str) -> None:
    """On CPU the mask is additive float, on a GPU boolean: both must give each example alone."""
    from transformers import AutoModelForCausalLM

    from forge.train.causal_lm import attention_inputs

    model = AutoModelForCausalLM.from_pretrained(str(tiny_lm)).eval().to(device)
    a, b = torch.randint(0, 300, (1, 7), device=device), torch.randint(0, 300, (1, 5), device=device)
    row = torch.cat([a, b, torch.zeros(1, 4, dtype=torch.long, device=device)], 1)
    segments = torch.tensor([[1] * 7 + [2] * 5 + [0] * 4], device=device)
    mask, positions = attention_inputs(segments)
    assert mask.dtype == (torch.float32 if device == "cpu" else torch.bool)
    assert positions.tolist() == [list(range(7)) + list(range(5)) + list(range(4))]
    with torch.no_grad():
        packed = model(input_ids=row, attention_mask=mask, position_ids=positions).logits
        alone_a, alone_b = model(input_ids=a).logits, model(input_ids=b).logits
    torch.testing.assert_close(packed[:, :7], alone_a, atol=1e-4, rtol=0)
    torch.testing.assert_close(packed[:, 7:12], alone_b, atol=1e-4, rtol=0)


def test_python_code_set_dedups_and_leaves_humaneval_out(tmp_path: Path) -> None:
    body = '    """{doc}"""\n    total = 0\n    for x in xs:\n        total += x\n    return total\n'
    (tmp_path / "a.py").write_text("def total(xs):\n" + body.format(doc="Add up xs.") + "\n\ndef undocumented(x):\n    return x\n")
    (tmp_path / "b.py").write_text("def again(xs):\n" + body.format(doc="Same body, other name.") + "\n\ndef below_zero(ops):\n"
                                   '    """Detect when the balance falls below zero."""\n    b = 0\n    for o in ops:\n        b += o\n    return b < 0\n')
    (tmp_path / "c.py").write_text("def broken(:\n")
    q, counts = Quarantine(io.StringIO()), Counter()
    from forge.data.sft.python_code import humaneval_keys

    examples = [ex for ex, _ in code_examples(str(tmp_path), q, counts, exclude=humaneval_keys())]
    assert [e.prompt.splitlines()[0] for e in examples] == ["def total(xs):"]
    assert examples[0].completion.startswith("    total = 0\n") and examples[0].completion.endswith("return total\n")
    assert counts == Counter({"read.files": 3, "filtered.duplicates": 1, "filtered.decontaminated": 1})
    assert quarantined_lines(q) == [1]


def test_prepare_streams_quarantines_and_reuses_the_cache(tmp_path: Path, tiny_lm: Path, caplog: pytest.LogCaptureFixture) -> None:
    from transformers import AutoTokenizer

    from forge.data.prepare import prepare

    cfg = OmegaConf.create({
        "_target_": "forge.data.sft.SFT", "seq_len": 512, "packing": True, "val_fraction": 0.25, "test_fraction": 0.25,
        "seed": 0, "batch_size": 2,
        "sources": [{"format": "prompt_completion", "path": str(FIXTURES / "prompt_completion.jsonl")},
                    {"format": "claude_code", "path": str(FIXTURES / "claude_code_session.jsonl"), "kinds": None, "successful_only": True}],
    })
    tok = AutoTokenizer.from_pretrained(str(tiny_lm))
    out = prepare(cfg, str(tmp_path / "cache"), tmp_path / "run" / "data", tok)
    meta = json.loads((out / "meta.json").read_text())
    assert meta["quarantined"] == 3 and meta["counts"]["read.sessions"] == 1
    lines = [json.loads(x) for x in (out / "quarantine.jsonl").read_text().splitlines()]
    assert {(Path(x["file"]).name, x["line"]) for x in lines} == {("prompt_completion.jsonl", 6), ("prompt_completion.jsonl", 10),
                                                                  ("claude_code_session.jsonl", 10)}
    total = sum(meta["splits"][s]["examples"] for s in ("train", "val", "test"))
    assert total == 24 + 9, "every good record became an example"
    read = [FIXTURES / "prompt_completion.jsonl", FIXTURES / "claude_code_session.jsonl"]
    assert meta["inputs"] == [{"path": str(f), "sha256": hashlib.sha256(f.read_bytes()).hexdigest()} for f in read]
    from safetensors.numpy import load_file

    rows = load_file(str(out / "train.safetensors"))
    assert rows["inputs"].shape == (meta["sizes"]["train"], 512) and rows["segments"].max() > 1, "rows are packed"
    assert meta["counts"]["truncated"] > 0, "long agent turns are cut to seq_len, not dropped"
    caplog.clear()
    with caplog.at_level("INFO"):
        prepare(cfg, str(tmp_path / "cache"), tmp_path / "run2" / "data", tok)
    assert "reusing cached" in caplog.text and "generating" not in caplog.text, "a second run does not re-tokenize"
