"""Parquet files and saved Hugging Face datasets: the same records prepare to the same rows as in
JSON Lines, a row that cannot be trained on is quarantined by its row number, and a dataset
folder is cached by its data files."""

from __future__ import annotations

import io
import itertools
import json
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from conftest import tiny_tokenizer
from forge.data.sft.records import Quarantine, data_files, read_jsonl
from forge.data.sft.task import SFT
from forge.data.task import SPLITS
from forge.errors import ForgeError

datasets = pytest.importorskip("datasets")
datasets.disable_progress_bars()

TOK = tiny_tokenizer()
WEATHER = {"type": "function", "function": {"name": "get_weather", "description": "Current weather of a city", "parameters": {
    "type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}
CALL = {"id": "c1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Oslo"}'}}
RECORDS = {
    "messages": [
        {"messages": [{"role": "system", "content": "Answer briefly."}, {"role": "user", "content": "Weather in Oslo?"},
                      {"role": "assistant", "content": None, "tool_calls": [CALL]},
                      {"role": "tool", "tool_call_id": "c1", "content": "-3 C, snow"},
                      {"role": "assistant", "content": "-3 C and snow."}], "tools": [WEATHER]},
        {"messages": [{"role": "user", "content": "2+2?"}, {"role": "assistant", "content": "5", "weight": 0},
                      {"role": "user", "content": "Are you sure?"}, {"role": "assistant", "content": "4", "weight": 1}]},
        {"messages": [{"role": "user", "content": "Hi, I am Alice.", "name": "alice"}, {"role": "assistant", "content": "Hello Alice."}]},
        {"messages": [{"role": "user", "content": "Nobody answers this."}]},
        {"messages": [{"role": "user", "content": "Ping"}, {"role": "assistant", "content": "Pong"}]},
    ],
    "sharegpt": [
        {"conversations": [{"from": "human", "value": "Convert 100 USD to EUR."},
                           {"from": "function_call", "value": '{"name": "convert", "arguments": {"amount": 100}}'},
                           {"from": "observation", "value": '{"result": 92.5}'}, {"from": "gpt", "value": "92.50 EUR."}],
         "system": "You convert currencies.", "tools": '[{"name": "convert", "parameters": {"type": "object"}}]'},
        {"conversations": [{"from": "human", "value": "Say hi"}, {"from": "gpt", "value": "hi"}]},
        {"conversations": [{"from": "narrator", "value": "Once upon a time"}, {"from": "gpt", "value": "..."}]},
        {"conversations": [{"from": "human", "value": "Again"}, {"from": "gpt", "value": "hi again"}], "system": "Be kind."},
    ],
    "alpaca": [
        {"instruction": "Add 2 and 3.", "output": "5"},
        {"instruction": "Translate to French.", "input": "cat", "output": "chat"},
        {"instruction": "Say nothing.", "input": "", "output": ""},
        {"instruction": "Name a prime.", "input": "", "output": "7"},
    ],
}
BAD_ROW = {"messages": (4, "no assistant message to train on"), "sharegpt": (3, "conversations[0] needs 'from'"),
           "alpaca": (3, "field 'output' must be a non-empty string")}


def write_jsonl(path: Path, records: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def columns(records: list[dict]) -> dict[str, list]:
    """A column for every key of any record (pyarrow's and datasets' from_list take the first record's keys)."""
    return {k: [r.get(k) for r in records] for k in dict.fromkeys(k for r in records for k in r)}


def write_parquet(path: Path, records: list[dict]) -> Path:
    pq.write_table(pa.table(columns(records)), path, row_group_size=2)  # rows are numbered across row groups
    return path


def save_dataset(path: Path, records: list[dict]) -> Path:
    datasets.Dataset.from_dict(columns(records)).save_to_disk(str(path))
    return path


def save_dataset_dict(path: Path, records: list[dict]) -> Path:
    """Two splits, train first: read in the order dataset_dict.json lists them."""
    ds = datasets.Dataset.from_dict(columns(records))
    datasets.DatasetDict({"train": ds.select(range(2)), "test": ds.select(range(2, len(ds)))}).save_to_disk(str(path))
    return path


def prepare(source: Path, fmt: str, folder: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[dict, dict, list]:
    """meta.json, the bytes of each split's rows, and the quarantine as (file name, line, error).
    Examples are dealt to the splits in turn: the split does not depend on the file's name."""
    deal = itertools.cycle(SPLITS)
    monkeypatch.setattr(SFT, "_split", lambda self, group: next(deal))
    folder.mkdir()
    meta = SFT([{"format": fmt, "path": str(source)}], 256, True, 0.0, 0.0, 0, TOK).write(folder)
    quarantine = [json.loads(x) for x in (folder / "quarantine.jsonl").read_text().splitlines()]
    rows = {s: (folder / f"{s}.safetensors").read_bytes() for s in SPLITS}
    return meta, rows, [(Path(q["file"]).relative_to(source) if source.is_dir() else Path(q["file"]).name, q["line"], q["error"]) for q in quarantine]


@pytest.mark.parametrize("fmt", list(RECORDS))
def test_tables_prepare_to_the_rows_of_the_same_jsonl(fmt: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    records = RECORDS[fmt]
    want_meta, want_rows, want_q = prepare(write_jsonl(tmp_path / "r.jsonl", records), fmt, tmp_path / "jsonl", monkeypatch)
    assert sum(want_meta["splits"][s]["examples"] for s in SPLITS) == len(records) - 1 and want_meta["quarantined"] == 1
    line, error = BAD_ROW[fmt]
    assert [(q[1], q[2][: len(error)]) for q in want_q] == [(line, error)]
    for name, write in (("parquet", write_parquet), ("dataset", save_dataset), ("dataset_dict", save_dataset_dict)):
        source = write(tmp_path / (f"r.{name}" if name == "parquet" else name), records)
        meta, rows, quarantine = prepare(source, fmt, tmp_path / f"out_{name}", monkeypatch)
        assert rows == want_rows, f"{name}: the prepared rows differ from those of the JSON Lines file"
        files = 2 if name == "dataset_dict" else 1  # a DatasetDict is read split by split, one Arrow file each
        assert meta["counts"]["read.files"] == files and meta["formats"] == {"sources.0": {fmt: files}}
        differ = ("quarantined_by_file", "counts", "formats", "inputs")  # which files were read, and how many
        same = {k: v for k, v in meta.items() if k not in differ}
        assert same == {k: v for k, v in want_meta.items() if k not in differ}
        assert {**meta["counts"], "read.files": 1} == want_meta["counts"]
        if name == "dataset_dict":
            assert quarantine == [(Path("test/data-00000-of-00001.arrow"), line - 2, want_q[0][2])], "the row of its split's file"
        elif name == "dataset":
            assert quarantine == [(Path("data-00000-of-00001.arrow"), line, want_q[0][2])]
        else:
            assert quarantine == [("r.parquet", line, want_q[0][2])]


def test_nulls_arrow_fills_in_are_dropped_and_json_columns_keep_theirs(tmp_path: Path) -> None:
    """A message without tool_calls reads without tool_calls (not `tool_calls: None`, which Arrow
    writes for it); a Json column holds the record's own JSON, nulls and all."""
    path = write_parquet(tmp_path / "m.parquet", RECORDS["messages"][:3])
    q = Quarantine(io.StringIO())
    rows = list(read_jsonl(path, q))
    assert [n for n, _ in rows] == [1, 2, 3] and q.total == 0
    assert rows[1][1] == RECORDS["messages"][1] and rows[2][1] == RECORDS["messages"][2]
    assert rows[0][1]["messages"][2] == {"role": "assistant", "tool_calls": [CALL]}, "the JSON null content reads as absent"
    ds = datasets.Dataset.from_dict({"a": [[{"b": 0}, {"c": None}], [{"d": "x"}]]}, on_mixed_types="use_json")
    ds.to_parquet(str(tmp_path / "j.parquet"))
    ds.save_to_disk(str(tmp_path / "j"))
    want = [(1, {"a": [{"b": 0}, {"c": None}]}), (2, {"a": [{"d": "x"}]})]
    assert list(read_jsonl(tmp_path / "j.parquet", q)) == want
    assert [row for f in data_files(tmp_path / "j") for row in read_jsonl(f, q)] == want


def test_unreadable_rows_and_files_are_quarantined_by_row(tmp_path: Path) -> None:
    table = pa.table({"prompt": ["a", "b", "c"], "completion": [b"1", b"\xff\xfe", b"3"]})
    pq.write_table(table, tmp_path / "b.parquet")
    (tmp_path / "cut.parquet").write_bytes((tmp_path / "b.parquet").read_bytes()[:100])
    out = tmp_path / "q.jsonl"
    with open(out, "w") as f:
        q = Quarantine(f)
        assert list(read_jsonl(tmp_path / "b.parquet", q)) == [(1, {"prompt": "a", "completion": "1"}), (3, {"prompt": "c", "completion": "3"})]
        assert list(read_jsonl(tmp_path / "cut.parquet", q)) == []
    entries = [json.loads(x) for x in out.read_text().splitlines()]
    assert [(Path(e["file"]).name, e["line"]) for e in entries] == [("b.parquet", 2), ("cut.parquet", 1)]
    assert entries[0]["error"] == "column 'completion': binary data that is not UTF-8 text (byte 1 of 2)"
    assert entries[1]["error"].startswith("unreadable parquet file (") and entries[1]["error"].endswith("; the rest of the file was not read")


def test_a_folder_reads_tables_and_a_dataset_folder_is_cached_by_its_data(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    write_jsonl(src / "a.jsonl", RECORDS["alpaca"][:1])
    write_parquet(src / "b.parquet", RECORDS["alpaca"][1:2])
    save_dataset_dict(src / "c", RECORDS["alpaca"])
    (src / "notes.txt").write_text("not data")
    names = [str(f.relative_to(src)) for f in data_files(src)]
    assert names == ["a.jsonl", "b.parquet", "c/train/data-00000-of-00001.arrow", "c/test/data-00000-of-00001.arrow"], \
        "a saved dataset's JSON metadata is not read as records"
    key = SFT([{"format": "alpaca", "path": str(src / "c")}], 256, True, 0.0, 0.0, 0, TOK).content_key()
    save_dataset_dict(src / "c", [RECORDS["alpaca"][0], *RECORDS["alpaca"][2:], RECORDS["alpaca"][1]])
    assert SFT([{"format": "alpaca", "path": str(src / "c")}], 256, True, 0.0, 0.0, 0, TOK).content_key() != key


def test_without_the_datasets_library_the_error_says_what_to_install(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write_parquet(tmp_path / "a.parquet", RECORDS["alpaca"])
    monkeypatch.setitem(sys.modules, "pyarrow", None)
    with pytest.raises(ForgeError) as e:
        list(read_jsonl(path, Quarantine(io.StringIO())))
    assert str(e.value) == "data.sources: reading a.parquet needs the datasets library (and its pyarrow): pip install 'forge[datasets]'"
