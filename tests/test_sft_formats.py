"""Chat file formats and containers: each shape users really have becomes exactly the turns it
holds, scored where its author asked, and a line that cannot be read is quarantined by number."""

from __future__ import annotations

import io
import json
from collections import Counter
from pathlib import Path

import pytest

from conftest import FIXTURES, tiny_tokenizer
from forge.data.sft.examples import Chat
from forge.data.sft.records import Quarantine, read_jsonl
from forge.data.sft.task import SFT
from forge.data.sft.tokenize import encode
from test_sft_data import parse, quarantined_lines

TOK = tiny_tokenizer()
DEFAULT_SYSTEM = "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
WEATHER = ('Tools:\n{"name": "get_weather", "description": "Current weather of a city", "parameters": {"type": "object", '
           '"properties": {"city": {"type": "string"}}, "required": ["city"]}}')


def runs(chat: Chat) -> list[tuple[str, str]]:
    """The encoded chat as (context|scored, text) runs, in order."""
    ids, mask = encode(TOK, chat)
    out: list[tuple[bool, list[int]]] = []
    for i, m in zip(ids, mask):
        if out and out[-1][0] == m:
            out[-1][1].append(i)
        else:
            out.append((m, [i]))
    return [("scored" if m else "context", TOK.decode(x)) for m, x in out]


def test_openai_tool_calls_developer_role_and_text_parts() -> None:
    chats, _, _ = parse("messages", FIXTURES / "openai_chat.jsonl")
    assert runs(chats[0]) == [
        ("context", f"<|im_start|>system\nAnswer briefly.\n\n{WEATHER}<|im_end|>\n"
                    "<|im_start|>user\nWeather in Oslo\nand in Rome?<|im_end|>\n<|im_start|>assistant\n"),
        ("scored", '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Oslo"}}\n</tool_call>\n'
                   '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Rome"}}\n</tool_call><|im_end|>\n'),
        ("context", "<|im_start|>user\n<tool_response>\n-3 C, snow\n</tool_response>\n"
                    "<tool_response>\n14 C, sun\n</tool_response><|im_end|>\n<|im_start|>assistant\n"),
        ("scored", "Oslo: -3 C and snow. Rome: 14 C and sun.<|im_end|>\n"),
    ], "parallel calls are one turn and their results come back together"


def test_openai_weight_zero_turn_is_context_only() -> None:
    chats, q, _ = parse("messages", FIXTURES / "openai_chat.jsonl")
    assert runs(chats[1]) == [
        ("context", "<|im_start|>system\nYou are terse.<|im_end|>\n<|im_start|>user\n2+2?<|im_end|>\n"
                    "<|im_start|>assistant\n5<|im_end|>\n<|im_start|>user\nAre you sure?<|im_end|>\n<|im_start|>assistant\n"),
        ("scored", "4<|im_end|>\n"),
    ]
    errors = {json.loads(x)["line"]: json.loads(x)["error"] for x in q.out.getvalue().splitlines()}
    assert errors[6] == "every assistant message has weight 0: nothing to train on"
    assert errors[7].startswith("messages[1].weight=0.5: forge takes the loss on a turn or not")


def test_openai_name_is_kept_or_the_record_refused() -> None:
    chats, q, _ = parse("messages", FIXTURES / "openai_chat.jsonl")
    assert runs(chats[2]) == [
        ("context", DEFAULT_SYSTEM + "<|im_start|>user\nalice: Hi, I am Alice.<|im_end|>\n<|im_start|>assistant\n"),
        ("scored", "Hello Alice.<|im_end|>\n"),
    ]
    assert quarantined_lines(q) == [5, 6, 7]
    assert "messages[1].name='bot_b' on an assistant turn" in q.out.getvalue().splitlines()[0]


def test_openai_legacy_function_call_renders_like_tool_calls() -> None:
    chats, _, _ = parse("messages", FIXTURES / "openai_chat.jsonl")
    assert len(chats) == 4
    assert runs(chats[3]) == [
        ("context", f"<|im_start|>system\n{WEATHER}<|im_end|>\n<|im_start|>user\nWeather in Paris?<|im_end|>\n<|im_start|>assistant\n"),
        ("scored", '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call><|im_end|>\n'),
        ("context", "<|im_start|>user\n<tool_response>\n9 C, rain\n</tool_response><|im_end|>\n<|im_start|>assistant\n"),
        ("scored", "9 C and rain.<|im_end|>\n"),
    ]


def test_llamafactory_loss_weight_and_typed_parts() -> None:
    chats, q, _ = parse("messages", FIXTURES / "llamafactory_loss_weight.jsonl")
    assert runs(chats[0])[-1] == ("scored", "Hello! How can I help?<|im_end|>\n")
    assert runs(chats[1]) == [
        ("context", DEFAULT_SYSTEM + "<|im_start|>user\nCapital of France?<|im_end|>\n<|im_start|>assistant\nLyon.<|im_end|>\n"
                    "<|im_start|>user\nNo, try again.<|im_end|>\n<|im_start|>assistant\n"),
        ("scored", "<think>\nThe capital is Paris.\n</think>\nParis.<|im_end|>\n"),
    ], "the loss_weight 0 answer is context, the reasoning part is thinking"
    assert quarantined_lines(q) == [3] and "part type 'image_url' is not supported" in q.out.getvalue()
    assert runs(chats[2]) == [
        ("context", '<|im_start|>system\nTools:\n{"name": "movie", "description": "Movie details", "parameters": {"type": "object", '
                    '"properties": {"title": {"type": "string"}}}}<|im_end|>\n'
                    "<|im_start|>user\nWho directed Alien and Heat?<|im_end|>\n<|im_start|>assistant\n"),
        ("scored", '<think>\nLook both up.\n</think>\n<tool_call>\n{"name": "movie", "arguments": {"title": "Alien"}}\n</tool_call>\n'
                   '<tool_call>\n{"name": "movie", "arguments": {"title": "Heat"}}\n</tool_call><|im_end|>\n'),
        ("context", '<|im_start|>user\n<tool_response>\n{"director": "Ridley Scott"}\n</tool_response>\n'
                    '<tool_response>\n{"director": "Michael Mann"}\n</tool_response><|im_end|>\n<|im_start|>assistant\n'),
        ("scored", "Ridley Scott and Michael Mann.<|im_end|>\n"),
    ], "typed tool_call parts and tool turns render like OpenAI's tool_calls"


def test_media_fields_are_refused_not_dropped() -> None:
    from forge.data.sft import formats

    record = {"messages": [{"role": "user", "content": "<image>Who?"}, {"role": "assistant", "content": "Kane."}], "images": ["1.jpg"]}
    with pytest.raises(formats.BadRecord, match="field 'images'"):
        formats.messages(record, "g")


def test_sharegpt_function_call_and_observation_from_a_json_array() -> None:
    chats, q, _ = parse("sharegpt", FIXTURES / "sharegpt_tools.json")
    assert runs(chats[0]) == [
        ("context", '<|im_start|>system\nYou convert currencies.\n\nTools:\n{"name": "convert", "description": "Convert money", '
                    '"parameters": {"type": "object", "properties": {"amount": {"type": "number"}}}}<|im_end|>\n'
                    "<|im_start|>user\nConvert 100 USD to EUR.<|im_end|>\n<|im_start|>assistant\n"),
        ("scored", '<tool_call>\n{"name": "convert", "arguments": {"amount": 100, "from": "USD", "to": "EUR"}}\n</tool_call><|im_end|>\n'),
        ("context", '<|im_start|>user\n<tool_response>\n{"result": 92.5}\n</tool_response><|im_end|>\n<|im_start|>assistant\n'),
        ("scored", "100 USD is 92.50 EUR.<|im_end|>\n"),
    ]
    assert runs(chats[1]) == [
        ("context", DEFAULT_SYSTEM + "<|im_start|>user\nSay hi<|im_end|>\n<|im_start|>assistant\n"), ("scored", "hi<|im_end|>\n"),
        ("context", "<|im_start|>user\nAgain<|im_end|>\n<|im_start|>assistant\n"), ("scored", "hi again<|im_end|>\n"),
    ]
    assert quarantined_lines(q) == [44], "the record with an unknown speaker, by the line it starts on"


def test_json_array_file_reads_with_line_numbers() -> None:
    chats, q, _ = parse("alpaca", FIXTURES / "alpaca_array.json")
    assert [c.messages for c in chats] == [
        [{"role": "user", "content": "Add 2 and 3."}, {"role": "assistant", "content": "5"}],
        [{"role": "user", "content": "Translate to French.\n\ncat"}, {"role": "assistant", "content": "chat"}],
    ]
    assert quarantined_lines(q) == [12] and "'output' must be a non-empty string" in q.out.getvalue()


def test_dolly_context_follows_the_instruction() -> None:
    chats, q, _ = parse("dolly", FIXTURES / "dolly.jsonl")
    assert runs(chats[0]) == [
        ("context", DEFAULT_SYSTEM + "<|im_start|>user\nWhen was the tower finished?\n\nThe Eiffel Tower was finished in 1889."
                    "<|im_end|>\n<|im_start|>assistant\n"),
        ("scored", "In 1889.<|im_end|>\n"),
    ]
    assert chats[1].messages[0]["content"] == "Name a prime number."
    assert quarantined_lines(q) == [3] and "'response' must be a non-empty string" in q.out.getvalue()


def test_byte_order_mark_is_skipped() -> None:
    chats, q, _ = parse("messages", FIXTURES / "bom_messages.jsonl")
    assert q.total == 0 and [c.messages[0]["content"] for c in chats] == ["Ping", "Café?"]


def test_invalid_utf8_line_is_quarantined_and_the_rest_read() -> None:
    pairs, q, _ = parse("prompt_completion", FIXTURES / "bad_utf8.jsonl")
    assert [(p.prompt, p.completion) for p in pairs] == [("one", "1"), ("three", "3")]
    (entry,) = [json.loads(x) for x in q.out.getvalue().splitlines()]
    assert entry["line"] == 2 and entry["error"] == "invalid UTF-8 at byte 17 of the line"
    assert entry["text"] == '{"prompt": "two \\xff\\xfe", "completion": "2"}\n', "the bad bytes are shown, not replaced"


def test_broken_json_array_is_quarantined_where_it_breaks(tmp_path: Path) -> None:
    path = tmp_path / "a.json"
    path.write_text('[\n {"prompt": "a", "completion": "b"},\n {"prompt": "c", \n]\n')
    q = Quarantine(io.StringIO())
    assert [n for n, _ in read_jsonl(path, q)] == [2]
    assert quarantined_lines(q) == [4]
    path.write_bytes(b"\xef\xbb\xbf [ ]\n")
    empty = Quarantine(io.StringIO())
    assert list(read_jsonl(path, empty)) == [] and empty.total == 0


def test_a_json_file_of_one_pretty_printed_object(tmp_path: Path) -> None:
    path = tmp_path / "one.json"
    path.write_text(json.dumps({"prompt": "a", "completion": "b"}, indent=2))
    q = Quarantine(io.StringIO())
    assert list(read_jsonl(path, q)) == [(1, {"prompt": "a", "completion": "b"})] and q.total == 0


def test_a_folder_of_mixed_files_goes_through_the_task(tmp_path: Path) -> None:
    """The SFT task reads .jsonl, .ndjson and .json files of a folder; other files are left alone."""
    for name in ("bom_messages.jsonl", "openai_chat.jsonl"):
        (tmp_path / name).write_bytes((FIXTURES / name).read_bytes())
    (tmp_path / "more.ndjson").write_text(json.dumps({"messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}]}) + "\n")
    (tmp_path / "notes.txt").write_text("not data")
    task = SFT([{"format": "messages", "path": str(tmp_path)}], 256, True, 0.0, 0.0, 0, TOK)
    q, counts = Quarantine(io.StringIO()), Counter()
    where = [(Path(f).name, line) for _, (f, line) in task._examples(q, counts)]
    assert where == [("bom_messages.jsonl", 1), ("bom_messages.jsonl", 2), ("more.ndjson", 1),
                     ("openai_chat.jsonl", 1), ("openai_chat.jsonl", 2), ("openai_chat.jsonl", 3), ("openai_chat.jsonl", 4)]
    assert quarantined_lines(q) == [5, 6, 7]
