"""Parquet files and saved Hugging Face dataset folders, read as records one batch at a time.

A saved dataset is what `Dataset.save_to_disk` writes (`dataset_info.json`, `state.json` and
Arrow stream files listed in the state) or `DatasetDict.save_to_disk` (`dataset_dict.json` and
one such folder per split: every split is read, in the order the file lists them). Rows are
numbered from 1 within each Parquet or Arrow file; that number is the quarantine's line. Batches
are read and converted as they come, so memory does not grow with the file.

Arrow gives every row every column and every struct every field of its type, filling what a row
lacks with null: a table cannot tell `"tool_calls": null` from no `tool_calls`. So a key whose
value is null is dropped, at every depth (a list keeps its null items), and a message without
`tool_calls` or `weight` reads as it was written. Values of a JSON column (the `datasets` `Json`
feature) are the record's own JSON and are parsed as written, nulls kept. Binary values are read
as UTF-8 text (a row holding other bytes is quarantined); dates and times become ISO strings.
One column holds one type, so a number column holding both 1 and 1.5 reads back 1.0 for 1.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable, Iterator, Optional

from forge.errors import ForgeError

SUFFIXES = (".parquet", ".arrow")
FOLDER_SUFFIXES = (".parquet",)  # Arrow files are read where a saved dataset's state lists them
BATCH_ROWS = 512

Convert = Optional[Callable[[Any], Any]]  # None: the Python value is already plain JSON


def is_dataset(folder: Path) -> bool:
    """Whether a folder is a saved Dataset or DatasetDict."""
    return (folder / "dataset_dict.json").is_file() or ((folder / "state.json").is_file() and (folder / "dataset_info.json").is_file())


def dataset_files(folder: Path) -> list[Path]:
    """The Arrow files of a saved dataset in row order (of every split, for a DatasetDict)."""
    if (folder / "dataset_dict.json").is_file():
        splits = json.loads((folder / "dataset_dict.json").read_text(encoding="utf-8"))["splits"]
        return [f for split in splits for f in dataset_files(folder / split)]
    state = json.loads((folder / "state.json").read_text(encoding="utf-8"))
    return [folder / d["filename"] for d in state["_data_files"]]


def read_rows(path: Path, bad: Callable[[int, str, str], None]) -> Iterator[tuple[int, dict]]:
    """(row number, record) for each row of a Parquet or Arrow stream file; `bad(row, error,
    text)` gets a row that cannot be a record, or the row where an unreadable file stops."""
    pa = _pyarrow(path)
    number = 0
    try:
        if path.suffix == ".parquet":
            batches: Iterator[Any] = pa.parquet.ParquetFile(path).iter_batches(batch_size=BATCH_ROWS)
        else:
            batches = iter(pa.ipc.open_stream(pa.OSFile(str(path))))
        for batch in batches:
            columns = [(name, _converter(pa, batch.schema.field(name).type), batch.column(name).to_pylist())
                       for name in batch.schema.names]
            for i in range(batch.num_rows):
                number += 1
                record = _record(columns, i, number, bad)
                if record is not None:
                    yield number, record
    except (pa.ArrowException, OSError) as e:
        bad(number + 1, f"unreadable {path.suffix[1:]} file ({str(e).rstrip('.')}); the rest of the file was not read", "")


def _record(columns: list[tuple[str, Convert, list]], i: int, number: int, bad: Callable[[int, str, str], None]) -> Optional[dict]:
    record = {}
    for name, convert, values in columns:
        value = values[i]
        if value is None:
            continue
        try:
            record[name] = convert(value) if convert else value
        except ValueError as e:
            bad(number, f"column {name!r}: {e}", "")
            return None
    return record


def _pyarrow(path: Path) -> Any:
    try:
        import pyarrow
        import pyarrow.parquet  # makes pyarrow.parquet an attribute of pyarrow
    except ImportError:
        raise ForgeError(f"data.sources: reading {path.name} needs the datasets library (and its pyarrow): "
                         "pip install 'forge[datasets]'") from None
    return pyarrow


def _converter(pa: Any, t: Any) -> Convert:
    """How a value of Arrow type `t`, as pyarrow gives it, becomes plain JSON (see the module)."""
    types = pa.types
    if isinstance(t, pa.JsonType):
        return json.loads
    if isinstance(t, pa.ExtensionType):
        return _converter(pa, t.storage_type)
    if types.is_struct(t):
        fields = [(t.field(i).name, _converter(pa, t.field(i).type)) for i in range(t.num_fields)]
        return lambda v: {k: c(x) if c else x for k, c in fields if (x := v[k]) is not None}
    if types.is_map(t):
        key, item = _converter(pa, t.key_type), _converter(pa, t.item_type)
        return lambda v: {str(key(k) if key else k): None if x is None else item(x) if item else x for k, x in v}
    if types.is_list(t) or types.is_large_list(t) or types.is_fixed_size_list(t) or types.is_list_view(t) or types.is_large_list_view(t):
        item = _converter(pa, t.value_type)
        return None if item is None else lambda v: [None if x is None else item(x) for x in v]
    if types.is_dictionary(t):
        return _converter(pa, t.value_type)
    if types.is_binary(t) or types.is_large_binary(t) or types.is_fixed_size_binary(t) or types.is_binary_view(t):
        return _text
    if types.is_timestamp(t) or types.is_date(t) or types.is_time(t):
        return lambda v: v.isoformat()
    if types.is_decimal(t):
        return float
    return None


def _text(value: bytes) -> str:
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ValueError(f"binary data that is not UTF-8 text (byte {e.start + 1} of {len(value)})") from None
