"""Write a split's rows to a safetensors file as they come, in constant memory.

The safetensors format is an 8-byte header length, a JSON header (dtype, shape and byte range of
each tensor) and the raw bytes. `safetensors.numpy.save_file` needs every array in memory, so
rows are appended to one raw file per column and the header is written once the row count is
known, followed by the raw files copied in.
"""

from __future__ import annotations

import json
import shutil
import struct
from pathlib import Path

import numpy as np

COLUMNS = ("inputs", "labels", "segments")


class RowWriter:
    def __init__(self, folder: Path, split: str, seq_len: int) -> None:
        self.folder, self.split, self.seq_len, self.rows = folder, split, seq_len, 0
        self.files = {c: open(folder / f".{split}.{c}.raw", "wb") for c in COLUMNS}

    def append(self, inputs: np.ndarray, labels: np.ndarray, segments: np.ndarray) -> None:
        for column, row in zip(COLUMNS, (inputs, labels, segments)):
            self.files[column].write(row.astype("<i4", copy=False).tobytes())
        self.rows += 1

    def close(self) -> Path:
        header: dict[str, dict] = {}
        offset = 0
        for column, f in self.files.items():
            f.close()
            size = self.rows * self.seq_len * 4
            header[column] = {"dtype": "I32", "shape": [self.rows, self.seq_len], "data_offsets": [offset, offset + size]}
            offset += size
        blob = json.dumps(header, separators=(",", ":")).encode()
        blob += b" " * (-len(blob) % 8)
        out = self.folder / f"{self.split}.safetensors"
        with open(out, "wb") as dst:
            dst.write(struct.pack("<Q", len(blob)) + blob)
            for column in COLUMNS:
                raw = self.folder / f".{self.split}.{column}.raw"
                with open(raw, "rb") as src:
                    shutil.copyfileobj(src, dst, 1 << 22)
                raw.unlink()
        return out
