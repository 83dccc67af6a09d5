"""Claude Code stream-json logs become the conversations the model really had: multi-turn
sessions keep their earlier turns, parallel calls stay one turn, subagent and synthetic lines,
compacted-away turns and non-message events never reach a training row (and are counted)."""

from __future__ import annotations

import io
import json
import shutil
from collections import Counter
from pathlib import Path

from conftest import FIXTURES, tiny_tokenizer
from forge.data.sft.records import Quarantine
from forge.data.sft.task import SFT
from forge.data.sft.tokenize import encode

TOK = tiny_tokenizer()
SYSTEM = ("system", "You are a coding agent. Tools: Bash, Read, Edit, Grep, Task.")


def build(name: str, **options) -> tuple[list[tuple[list[tuple[str, str]], str]], Counter, list[int]]:
    """Each example as (context messages, scored text), through the SFT task's own reader, with the
    scored text checked token by token: exactly the last assistant turn and its end marker."""
    quarantine, counts = Quarantine(io.StringIO()), Counter()
    source = {"format": "claude_code", "path": str(FIXTURES / name), "kinds": None, "successful_only": True, **options}
    sft = SFT([source], seq_len=4096, packing=False, val_fraction=0.0, test_fraction=0.0, seed=0, tokenizer=TOK)
    out = []
    for example, _ in sft._examples(quarantine, counts):
        ids, mask = encode(TOK, example)
        messages = [(m["role"], m["content"]) for m in example.messages]
        assert TOK.decode(ids) == TOK.apply_chat_template(example.messages, tokenize=False)
        assert messages[-1][0] == "assistant"
        assert TOK.decode([i for i, m in zip(ids, mask) if m]) == messages[-1][1] + "<|im_end|>\n"
        out.append((messages[:-1], messages[-1][1]))
    lines = [json.loads(x)["line"] for x in quarantine.out.getvalue().splitlines()]
    return out, Counter({k: n for k, n in counts.items() if not k.startswith("read.")}), lines


def answers(examples: list) -> list:
    return [e for e in examples if not e[0][1][1].startswith("Task: ")]


def test_multi_turn_session_keeps_its_earlier_turns_and_is_judged_on_its_last_result() -> None:
    examples, counts, quarantined = build("claude_code_multiturn.jsonl")
    assert examples == [
        ([SYSTEM, ("user", "Remember the number 41.")], "OK, I will remember 41."),
        ([SYSTEM, ("user", "Remember the number 41."), ("assistant", "OK, I will remember 41."),
          ("user", "What number did I ask you to remember?")], "41"),
    ]
    assert counts == Counter({"answer": 2, "filtered.unsuccessful_sessions": 1}) and quarantined == []


def test_parallel_calls_of_one_message_are_one_turn_and_their_results_come_back_together() -> None:
    examples, counts, _ = build("claude_code_parallel.jsonl")
    calls = ('<think>\nI can search and read at the same time.\n</think>\n'
             '<tool_call>\n{"name": "Grep", "arguments": {"pattern": "def parse"}}\n</tool_call>\n'
             '<tool_call>\n{"name": "Read", "arguments": {"file_path": "README.md"}}\n</tool_call>')
    prompt = ("user", "Where is parse defined, and what is the README's title?")
    results = ("user", "<tool_response>\nsrc/parse.py:3:def parse(text):\n</tool_response>\n<tool_response>\n# Parser\n</tool_response>")
    assert answers(examples)[:2] == [
        ([SYSTEM, prompt], calls),
        ([SYSTEM, prompt, ("assistant", calls), results], "parse is defined in src/parse.py; the README is titled Parser."),
    ]
    selection = [e for e in examples if e not in answers(examples)]
    assert [s for _, s in selection] == ["Grep", "Write"], "one selection per assistant turn, not per line"
    assert selection[1][0] == [SYSTEM, ("user", "Task: Create hello.js.\n\nTool calls so far:\n- (none yet)\n\nWhich tool should be called next?")]
    write = '<tool_call>\n{"name": "Write", "arguments": {"file_path": "hello.js", "content": "console.log(\'hi\')"}}\n</tool_call>'
    assert answers(examples)[2:] == [  # a reused id: text written after the results is a turn of its own
        ([SYSTEM, ("user", "Create hello.js.")], "I'll create it.\n" + write),
        ([SYSTEM, ("user", "Create hello.js."), ("assistant", "I'll create it.\n" + write),
          ("user", "<tool_response>\nFile created successfully at: hello.js\n</tool_response>")], "Created hello.js."),
    ]
    assert counts == Counter(reasoning_action=2, tool_selection=2, answer=2)


def test_subagent_lines_are_left_out_of_the_parent_turns() -> None:
    examples, counts, _ = build("claude_code_subagent.jsonl", kinds=["reasoning_action", "answer"])
    task = '<tool_call>\n{"name": "Task", "arguments": {"description": "find TODOs", "prompt": "List every TODO comment."}}\n</tool_call>'
    prompt = ("user", "Find the TODO comments in the repo.")
    assert examples == [
        ([SYSTEM, prompt], task),
        ([SYSTEM, prompt, ("assistant", task), ("user", "<tool_response>\nOne TODO, in a.py.\n</tool_response>")],
         "There is one TODO comment, in a.py line 1."),
    ]
    assert counts == Counter({"reasoning_action": 1, "answer": 1, "skipped.subagent_lines": 5})


def test_only_the_init_line_declares_tools_and_other_system_lines_are_counted() -> None:
    examples, counts, quarantined = build("claude_code_system_lines.jsonl", kinds=["answer"])
    assert examples == [([("system", "You are a coding agent. Tools: Bash, Read."), ("user", "How many Python files are there?"),
                          ("assistant", '<tool_call>\n{"name": "Bash", "arguments": {"command": "ls *.py | wc -l"}}\n</tool_call>'),
                          ("user", "<tool_response>\n3\n</tool_response>")], "There are 3 Python files.")]
    assert counts == Counter({"answer": 1, "skipped.system.hook_response": 1, "skipped.system.status": 1})
    assert quarantined == []


def test_synthetic_messages_are_left_out_and_counted() -> None:
    examples, counts, _ = build("claude_code_synthetic.jsonl")
    assert examples == [([SYSTEM, ("user", "Fix the typo in README.md."), ("user", "Try again, please.")], "Fixed: 'teh' is now 'the'.")]
    assert counts == Counter({"answer": 1, "skipped.synthetic_messages": 1})


def test_turns_before_a_compaction_are_not_context_after_it() -> None:
    examples, counts, _ = build("claude_code_compaction.jsonl", kinds=["reasoning_action", "answer"])
    summary = ("user", "This session is being continued from a previous conversation. Summary: foo was renamed to bar in a.py.")
    edit = '<tool_call>\n{"name": "Edit", "arguments": {"file_path": "b.py", "old_string": "foo", "new_string": "bar"}}\n</tool_call>'
    after = [(context, scored) for context, scored in examples if "b.py" in scored]
    assert after == [
        ([SYSTEM, summary, ("user", "Now do the same in b.py.")], edit),
        ([SYSTEM, summary, ("user", "Now do the same in b.py."), ("assistant", edit),
          ("user", "<tool_response>\nThe file b.py has been updated.\n</tool_response>")], "Renamed foo to bar in b.py."),
    ]
    assert examples[-2:] == [  # no summary in the log: the context restarts at the next prompt
        ([SYSTEM, ("user", "Count the lines of a.py.")], "a.py has 12 lines."),
        ([SYSTEM, ("user", "And its words?")], "a.py has 30 words."),
    ]
    assert len(examples) == 6 and counts == Counter({"reasoning_action": 2, "answer": 4, "compactions": 2, "skipped.uncompacted_lines": 1})


def test_known_events_are_skipped_and_counted_not_quarantined() -> None:
    examples, counts, quarantined = build("claude_code_events.jsonl")
    assert examples == [([SYSTEM, ("user", "What day is it?")], "Monday.")]
    assert quarantined == [11], "only the line of an unknown type that carries a message"
    assert counts == Counter({"answer": 1, "skipped.control_request": 1, "skipped.control_response": 1,
                              "skipped.stream_event": 2, "skipped.rate_limit_event": 1, "skipped.summary": 1,
                              "skipped.file-history-snapshot": 1})


def test_prepared_meta_counts_every_skip_by_reason(tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    logs.mkdir()
    for f in FIXTURES.glob("claude_code_*.jsonl"):
        if f.name not in ("claude_code_session.jsonl", "claude_code_transcript.jsonl"):
            shutil.copy(f, logs / f.name)
    source = {"format": "claude_code", "path": str(logs), "kinds": None, "successful_only": True}
    sft = SFT([source], seq_len=512, packing=True, val_fraction=0.25, test_fraction=0.25, seed=0, tokenizer=TOK)
    (tmp_path / "data").mkdir()
    meta = sft.write(tmp_path / "data")
    assert meta["quarantined"] == 1 and meta["counts"] == {
        "read.files": 7, "read.records": 93, "read.sessions": 10, "filtered.unsuccessful_sessions": 1,
        "answer": 12, "reasoning_action": 6, "tool_selection": 6,
        "skipped.subagent_lines": 5, "skipped.synthetic_messages": 1, "compactions": 2, "skipped.uncompacted_lines": 1,
        "skipped.system.hook_response": 1, "skipped.system.status": 1, "skipped.stream_event": 2, "skipped.rate_limit_event": 1,
        "skipped.control_request": 1, "skipped.control_response": 1, "skipped.summary": 1, "skipped.file-history-snapshot": 1,
    }
    assert sum(meta["splits"][s]["examples"] for s in ("train", "val", "test")) == 12 + 6 + 6


def test_a_session_encoded_once_gives_the_ids_of_each_example_encoded_alone() -> None:
    """The prepare's encoder remembers each turn of a session; every example must come out exactly
    as if it were encoded on its own (ids and mask)."""
    from forge.data.sft.tokenize import Encoder

    shared, n = Encoder(TOK), 0
    for name in ("claude_code_parallel.jsonl", "claude_code_multiturn.jsonl", "claude_code_compaction.jsonl", "claude_code_transcript.jsonl"):
        sft = SFT([{"format": "claude_code", "path": str(FIXTURES / name), "successful_only": False}], seq_len=4096, packing=False,
                  val_fraction=0.0, test_fraction=0.0, seed=0, tokenizer=TOK)
        for example, _ in sft._examples(Quarantine(io.StringIO()), Counter()):
            assert shared(example) == encode(TOK, example)
            n += 1
    assert n == 25 and len(shared.memo) > 0
