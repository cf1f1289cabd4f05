"""Bytes out: CSV lines in MovieLens's quoting and line ends, and files written with their SHA-256."""
from __future__ import annotations

import csv
import hashlib
import io
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc


class HashedFile:
    """A binary file that keeps a running SHA-256 of what it wrote."""

    def __init__(self, path: Path):
        self.path, self.handle, self.sha256, self.lines = path, open(path, "wb"), hashlib.sha256(), 0

    def write(self, data) -> None:
        self.handle.write(data)
        self.sha256.update(data)

    def close(self) -> str:
        self.handle.close()
        return self.sha256.hexdigest()


def csv_lines(columns: list[pa.Array], eol: str) -> pa.Array:
    """Each row as one binary value `a,b,c<eol>` (pyarrow kernels, no Python loop)."""
    text = [c if pa.types.is_string(c.type) else pc.cast(c, pa.string()) for c in columns]
    line = pc.binary_join_element_wise(*text, ",")
    return pc.binary_join_element_wise(line, pa.scalar(eol), "").cast(pa.binary())


def concat_bytes(lines: pa.Array) -> memoryview:
    offsets = np.frombuffer(lines.buffers()[1], dtype=np.int32, count=len(lines) + 1, offset=lines.offset * 4)
    return memoryview(lines.buffers()[2])[offsets[0]:offsets[-1]]


def csv_text(rows: list[list], eol: str) -> bytes:
    buf = io.StringIO()
    csv.writer(buf, lineterminator=eol).writerows(rows)  # QUOTE_MINIMAL: quotes only commas/quotes, doubles quotes
    return buf.getvalue().encode("utf-8")


def write_text(path: Path, data: bytes, checksums: dict) -> None:
    path.write_bytes(data)
    checksums[path.name] = hashlib.sha256(data).hexdigest()
