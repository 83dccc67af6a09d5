"""Write a split's rows to a safetensors file as they come, in constant memory.

The safetensors format is an 8-byte header length, a JSON header (dtype, shape and byte range of
each tensor) and the raw bytes. `safetensors.numpy.save_file` needs every array in memory, so
rows are appended to one raw file per column and the header is written once the row count is
known, followed by the raw files copied in.

Besides the per-token columns, a split of agent runs has `reward`: one float32 per row, the
mean reward of the row's examples. It is written only when every row has one.
"""

from __future__ import annotations

import json
import shutil
import struct
from pathlib import Path
from typing import Optional

import numpy as np

COLUMNS = ("inputs", "labels", "segments")  # per token: int32 [rows, seq_len]
REWARD = "reward"  # per row: float32 [rows]
ROWS_VERSION = 2  # what the written columns are; part of the prepared data's cache key (2: the reward column)


class RowWriter:
    def __init__(self, folder: Path, split: str, seq_len: int) -> None:
        self.folder, self.split, self.seq_len, self.rows, self.rewarded = folder, split, seq_len, 0, 0
        self.files = {c: open(self._raw(c), "wb") for c in (*COLUMNS, REWARD)}

    def append(self, inputs: np.ndarray, labels: np.ndarray, segments: np.ndarray, reward: Optional[float] = None) -> None:
        for column, row in zip(COLUMNS, (inputs, labels, segments)):
            self.files[column].write(row.astype("<i4", copy=False).tobytes())
        self.files[REWARD].write(np.float32(np.nan if reward is None else reward).astype("<f4").tobytes())
        self.rows += 1
        self.rewarded += reward is not None

    def close(self, with_reward: bool = False) -> Path:
        """`with_reward`: write the reward column too (the caller checks every row has one)."""
        for f in self.files.values():
            f.close()
        shapes = {c: ("I32", [self.rows, self.seq_len], 4 * self.seq_len) for c in COLUMNS}
        if with_reward:
            shapes[REWARD] = ("F32", [self.rows], 4)
        header: dict[str, dict] = {}
        offset = 0
        for column, (dtype, shape, row_bytes) in shapes.items():
            size = self.rows * row_bytes
            header[column] = {"dtype": dtype, "shape": shape, "data_offsets": [offset, offset + size]}
            offset += size
        blob = json.dumps(header, separators=(",", ":")).encode()
        blob += b" " * (-len(blob) % 8)
        out = self.folder / f"{self.split}.safetensors"
        with open(out, "wb") as dst:
            dst.write(struct.pack("<Q", len(blob)) + blob)
            for column in shapes:
                with open(self._raw(column), "rb") as src:
                    shutil.copyfileobj(src, dst, 1 << 22)
        for column in self.files:
            self._raw(column).unlink()
        return out

    def _raw(self, column: str) -> Path:
        return self.folder / f".{self.split}.{column}.raw"
