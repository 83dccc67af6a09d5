"""SFT sources as users have them: on-disk Claude Code transcripts, logs recorded without the
prompt, folders of mixed formats read with `format: auto`, and prepares that fail say why."""

from __future__ import annotations

import io
import json
import shutil
from collections import Counter
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from conftest import FIXTURES, tiny_tokenizer
from forge.data.prepare import prepare
from forge.data.sft.records import Quarantine
from forge.data.sft.task import SFT
from forge.data.sft.tokenize import encode
from forge.errors import ForgeError

TOK = tiny_tokenizer()
REALWORLD = Path(__file__).resolve().parents[2] / "shared" / "realworld"


def examples(*sources: dict) -> tuple[list[tuple[list[tuple[str, str]], str]], Counter, Quarantine]:
    """Each example as (context messages, scored text), the scored text checked token by token."""
    quarantine, counts = Quarantine(io.StringIO()), Counter()
    sft = SFT(list(sources), seq_len=4096, packing=False, val_fraction=0.0, test_fraction=0.0, seed=0, tokenizer=TOK)
    out = []
    for example, _ in sft._examples(quarantine, counts):
        ids, mask = encode(TOK, example)
        messages = [(m["role"], m["content"]) for m in example.messages]
        scored = [messages[i][1] for i in sorted(example.scored)]
        assert TOK.decode([i for i, m in zip(ids, mask) if m]) == "".join(f"{s}<|im_end|>\n" for s in scored)
        out.append((messages[: max(example.scored)], scored[-1]))
    return out, counts, quarantine


def source(name: str, **options) -> dict:
    return {"format": "claude_code", "path": str(FIXTURES / name), "kinds": None, "successful_only": True, **options}


def test_an_on_disk_transcript_is_read_without_init_or_result_and_follows_a_rewind() -> None:
    _, counts, _ = examples(source("claude_code_transcript.jsonl"))
    assert counts["filtered.unjudged_sessions"] == 1 and counts["answer"] == 0, "no result line: no verdict, not trained by default"
    got, counts, quarantine = examples(source("claude_code_transcript.jsonl", successful_only=False, kinds=["answer", "error_recovery"]))
    system = ("system", "You are a coding agent.")  # a transcript does not list its tools
    first = [system, ("user", "Make the test in test_dates.py pass."),
             ("assistant", 'I will run it first.\n<tool_call>\n{"name": "Bash", "arguments": {"command": "pytest test_dates.py"}}\n</tool_call>'),
             ("user", "<tool_response error>\nFAILED test_dates.py::test_leap - assert 28 == 29\n</tool_response>"),
             ("user", "Also check 2100.")]  # typed while the agent worked: a queued_command attachment
    recovery = ('The leap-year rule is wrong; I will look at the chart the test prints.\n'
                '<tool_call>\n{"name": "Read", "arguments": {"file_path": "chart.png"}}\n</tool_call>')
    answered = [*first, ("assistant", recovery), ("user", "<tool_response>\n[image]\n</tool_response>")]
    fixed = "February has 29 days in leap years; I changed days_in_february."
    assert got == [
        (first, recovery),
        (answered, fixed),
        ([*answered, ("assistant", fixed), ("user", "Also add a test for the year 2000.")], "Added test_2000: 2000 is a leap year."),
    ], "the abandoned prompt (1900) and its answer are not context; subagent, meta, repeated and metadata lines add no turn"
    assert counts["error_recovery"] == 1, "the answer to a failed call recovers from it, with the queued message in between"
    assert quarantine.total == 0 and {k: n for k, n in counts.items() if k.startswith(("skipped", "placeholders"))} == {
        "skipped.summary": 1, "skipped.file-history-snapshot": 1, "skipped.meta_messages": 1, "skipped.subagent_lines": 2,
        "skipped.rewound_turns": 2, "placeholders.image": 1, "skipped.repeated_blocks": 1, "skipped.queue-operation": 1,
        "skipped.attachment.todo": 1, "skipped.blocks.redacted_thinking": 1, "skipped.custom-title": 1,
    }


def test_a_log_recorded_without_its_prompt_is_used_with_the_prompt_the_source_gives(tmp_path: Path) -> None:
    got, counts, quarantine = examples(source("claude_code_no_prompt.ndjson"))
    assert got == [] and counts["skipped.sessions_without_prompt"] == 1 and quarantine.total == 0
    got, counts, _ = examples(source("claude_code_no_prompt.ndjson", prompt="What is 2 + 2?"))
    assert got == [([("system", "You are a coding agent. Tools: Bash, Read."), ("user", "What is 2 + 2?")], "4")]
    assert counts["skipped.lines_without_prompt"] == 1, "the second turn's prompt is not in the log: its answer is left out"
    (tmp_path / "prompt.txt").write_text("What is 2 + 2?\n")
    assert examples(source("claude_code_no_prompt.ndjson", prompt_file=str(tmp_path / "prompt.txt")))[0] == got


@pytest.mark.skipif(not REALWORLD.exists(), reason="the shared real-world samples are not beside the project")
def test_real_world_claude_code_logs() -> None:
    got, _, q = examples(source(str(REALWORLD / "cc03_gleam_2.1.7_minimal_no_prompt.ndjson"), prompt="What is 2 + 2? Answer with the number."))
    assert [g[1] for g in got] == ["4"] and q.total == 0
    got, counts, q = examples(source(str(REALWORLD / "cc06_agentstreamfmt_2025_prompt_no_result.jsonl"), successful_only=False, kinds=["reasoning_action"]))
    assert got[0][0][1] == ("user", "Create a hello world function") and q.total == 0 and counts["reasoning_action"] == 1


def mixed_folder(tmp_path: Path) -> Path:
    folder = tmp_path / "mixed"
    (folder / "logs").mkdir(parents=True)
    for name in ("messages.jsonl", "sharegpt_tools.json", "alpaca_array.json", "dolly.jsonl", "prompt_completion.jsonl"):
        shutil.copy(FIXTURES / name, folder / name)
    for name in ("claude_code_multiturn.jsonl", "claude_code_events.jsonl", "claude_code_no_prompt.ndjson"):
        shutil.copy(FIXTURES / name, folder / "logs" / name)
    return folder


def test_a_folder_of_mixed_files_prepares_with_format_auto_and_exact_counts(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    sft = SFT([{"format": "auto", "path": str(mixed_folder(tmp_path))}], seq_len=512, packing=True, val_fraction=0.0,
              test_fraction=0.0, seed=0, tokenizer=TOK)
    (tmp_path / "data").mkdir()
    with caplog.at_level("INFO"):
        meta = sft.write(tmp_path / "data")
    assert meta["formats"] == {"sources.0": {"alpaca": 1, "claude_code": 3, "dolly": 1, "messages": 1, "prompt_completion": 1, "sharegpt": 1}}
    assert "data.sources.0 (format auto): 1 file(s) alpaca, 3 file(s) claude_code" in caplog.text
    assert meta["counts"] == {
        "read.files": 8, "read.records": 72, "read.sessions": 4,
        "answer": 3, "filtered.unsuccessful_sessions": 1,
        "skipped.control_request": 1, "skipped.control_response": 1, "skipped.rate_limit_event": 1, "skipped.stream_event": 2,
        "skipped.summary": 1, "skipped.file-history-snapshot": 1, "skipped.lines_without_prompt": 1, "skipped.sessions_without_prompt": 1,
    }
    quarantined = [(Path(x["file"]).name, x["line"]) for x in map(json.loads, (tmp_path / "data" / "quarantine.jsonl").read_text().splitlines())]
    assert sorted(quarantined) == [("alpaca_array.json", 12), ("claude_code_events.jsonl", 11), ("dolly.jsonl", 3), ("messages.jsonl", 3),
                                   ("messages.jsonl", 4), ("prompt_completion.jsonl", 6), ("prompt_completion.jsonl", 10),
                                   ("sharegpt_tools.json", 44)], "each fixture's planted bad records, and only those"
    assert meta["quarantined"] == 8
    assert meta["splits"]["train"]["examples"] == 2 + 2 + 2 + 2 + 24 + 3 and meta["sizes"]["val"] == meta["sizes"]["test"] == 0


def test_a_file_of_the_wrong_format_fails_once_naming_the_one_it_looks_like(tmp_path: Path) -> None:
    wrong = SFT([{"format": "messages", "path": str(FIXTURES / "sharegpt_tools.json")}], seq_len=512, packing=True,
                val_fraction=0.0, test_fraction=0.0, seed=0, tokenizer=TOK)
    with pytest.raises(ForgeError, match=r"^data.sources.0.format=messages: .*sharegpt_tools.json looks like sharegpt, not messages "
                                         r"\(its first records have conversations, system, tools\); set data.sources.0.format=sharegpt or format=auto$"):
        wrong.write(tmp_path)
    (tmp_path / "notes.jsonl").write_text('{"title": "a", "body": "b"}\n')
    unknown = SFT([{"format": "auto", "path": str(tmp_path / "notes.jsonl")}], seq_len=512, packing=True,
                  val_fraction=0.0, test_fraction=0.0, seed=0, tokenizer=TOK)
    with pytest.raises(ForgeError, match=r"format=auto: cannot tell the format of .*notes.jsonl from its first records \(keys: body, title\)"):
        unknown.write(tmp_path)


def data_cfg(path: Path, **over) -> OmegaConf:
    return OmegaConf.create({"_target_": "forge.data.sft.SFT", "seq_len": 256, "packing": True, "val_fraction": 0.0,
                             "test_fraction": 0.0, "seed": 0, "batch_size": 2,
                             "sources": [{"format": "claude_code", "path": str(path), "successful_only": True}], **over})


def test_one_session_prepares_when_the_held_out_fractions_are_zero(tmp_path: Path) -> None:
    out = prepare(data_cfg(FIXTURES / "claude_code_multiturn.jsonl"), str(tmp_path / "cache"), tmp_path / "run" / "data", TOK)
    meta = json.loads((out / "meta.json").read_text())
    assert meta["sizes"] == {"train": 1, "val": 0, "test": 0} and meta["splits"]["train"]["examples"] == 2


def test_a_failed_prepare_says_what_happened_to_every_line_and_keeps_the_quarantine(tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    logs.mkdir()
    shutil.copy(FIXTURES / "claude_code_multiturn.jsonl", logs)
    shutil.copy(FIXTURES / "claude_code_no_prompt.ndjson", logs)
    (logs / "broken.jsonl").write_text('{"type": "assistant"\n{"kind": "note"}\n')
    out = tmp_path / "run" / "data"
    with pytest.raises(ForgeError) as e:
        prepare(data_cfg(logs, val_fraction=0.2), str(tmp_path / "cache"), out, TOK)
    assert str(e.value) == (
        "data: the val split came out empty: 2 examples from 1 session(s)/file(s) went to train 2, val 0, test 0 (a session "
        "or file stays whole in one split; data.val_fraction=0.2); read 3 files, 23 records, 3 sessions; skipped 2 "
        "(lines_without_prompt 1, sessions_without_prompt 1); filtered 1 (unsuccessful_sessions 1); quarantined 2 (first: "
        "broken.jsonl:1: invalid JSON: Expecting ',' delimiter at column 1; broken.jsonl:2: not a Claude Code event: needs "
        "type system|assistant|user|result|attachment, a known event (stream_event, rate_limit_event, control_request, "
        "control_response, tool_progress, auth_status, summary, file-history-snapshot) or a metadata line with a session id). To do: logs without their prompt need data.sources.N.prompt (or prompt_file), or "
        "recording with --input-format stream-json --replay-user-messages; set data.val_fraction=0 or add data. "
        f"Kept for reading: {out / 'quarantine.jsonl'}."
    )
    assert [json.loads(x)["line"] for x in (out / "quarantine.jsonl").read_text().splitlines()] == [1, 2]
    assert sorted(p.name for p in out.iterdir()) == ["quarantine.jsonl"], "nothing half-written beside it"


def test_a_wrong_format_through_the_cli_is_one_line_and_keeps_no_empty_quarantine(tmp_path: Path, tiny_lm: Path) -> None:
    from conftest import run_forge

    proc = run_forge("model=hf_causal_lm", f"model.source={tiny_lm}", "peft=lora", "data=sft_jsonl", "eval=perplexity", "export=none",
                     f"data.sources=[{{format: messages, path: {FIXTURES / 'sharegpt_tools.json'}}}]", f"cache_dir={tmp_path / 'cache'}",
                     "stage=prepare", f"hydra.run.dir={tmp_path / 'run'}", cwd=tmp_path, check=False)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines()[-1].endswith("looks like sharegpt, not messages (its first records have conversations, "
                                                         "system, tools); set data.sources.0.format=sharegpt or format=auto")
    assert not (tmp_path / "run" / "data").exists(), "nothing written: the quarantine was empty"
