"""Atomic file writes: write to a temporary file in the target's folder, then rename over the target.

A killed process leaves either the old file or the new one, never half of one (checkpoints, manifests, audio).
"""
from __future__ import annotations

import csv
import io
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; it replaces ``path`` when the block finishes without error."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)


def write_text_atomic(path: str | Path, text: str) -> None:
    """Write UTF-8 text to ``path`` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_csv_atomic(path: str | Path, records: list[dict]) -> None:
    """Write ``records`` as CSV to ``path`` atomically: a column for every key any record has, in order of first
    appearance; an empty file when there are none."""
    fields = list(dict.fromkeys(key for record in records for key in record))
    buffer = io.StringIO()
    if fields:
        writer = csv.DictWriter(buffer, fieldnames=fields)
        writer.writeheader()
        writer.writerows(records)
    write_text_atomic(path, buffer.getvalue())
