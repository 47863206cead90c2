"""Atomic file writes: a temp file in the same folder, fsync, then rename over the target.

A crash or error mid-write leaves the previous file (or nothing) — never half a file.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any


@contextmanager
def atomic_path(target: str | Path) -> Iterator[Path]:
    """Yields a temporary path beside ``target``; renames it onto ``target`` on success."""
    target = Path(target)
    if not target.parent.is_dir():
        raise FileNotFoundError(f"folder does not exist: {target.parent}")
    handle, temporary = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(handle)
    temporary_path = Path(temporary)
    try:
        yield temporary_path
        with open(temporary_path, "rb") as written:
            os.fsync(written.fileno())
        os.replace(temporary_path, target)
    finally:
        temporary_path.unlink(missing_ok=True)


def write_with(target: str | Path, writer: Callable[[IO[bytes]], None]) -> None:
    with atomic_path(target) as temporary, open(temporary, "wb") as stream:
        writer(stream)


def write_text(target: str | Path, text: str) -> None:
    write_with(target, lambda stream: stream.write(text.encode("utf-8")))


def write_json(target: str | Path, data: Any) -> None:
    write_text(target, json.dumps(data, indent=2, sort_keys=False) + "\n")
