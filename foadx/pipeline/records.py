"""A stage's record read back from ``OUT/STAGE/stage.json`` is data a user may have edited: it is
checked before anything uses it, and one that does not check out counts as absent (the stage
runs again and says why).

``stage.json`` holds the stage's name, its hash, its record and ``files``: every file the stage
wrote (path relative to the run folder -> SHA-256 of its contents). A record checks out when
every field has its stage's shape (``Stage.record``), every path in it is relative, normalised,
inside the run folder and inside the stage's own folder (a path to a model another stage wrote,
inside that stage's folder), and every file listed is still there with the same contents.
"""

from __future__ import annotations

import hashlib
import math
import os
import posixpath
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from foadx.errors import BadInputError
from foadx.pipeline.stage import Record, Stage

PATH = "a path in the stage's folder"
UPSTREAM = "a path in the folder of a stage it reads"
NUMBER = "a finite number"
FLAG = "true or false"
TEXT = "a string"
ANY = "anything"
SHA256_HEX = 64
MAX_ITEMS = 1024  # variants, files or speedups in one record field: a pipeline has a handful


@dataclass(frozen=True)
class MapOf:
    """An object of name -> ``inner``."""

    inner: Any


@dataclass(frozen=True)
class ListOf:
    """A list of ``inner``."""

    inner: Any


@dataclass(frozen=True)
class Optional:
    """``inner`` or null; as a record key's shape, the key may be absent."""

    inner: Any


class RecordProblem(Exception):
    """What is wrong with a record (one line, naming the field)."""


def file_digest(path: Path) -> str:
    """SHA-256 (hex) of a file's contents, read in 1 MiB blocks.

    Raises:
        BadInputError: the file cannot be read (e.g. a /proc file that stat calls regular; exit 3).
    """
    digest = hashlib.sha256()
    try:
        with open(path, "rb") as stream:
            for block in iter(lambda: stream.read(1 << 20), b""):
                digest.update(block)
    except OSError as error:
        raise BadInputError(f"{path} cannot be read: {error.strerror or error}") from None
    return digest.hexdigest()


def list_files(folder: Path, prefix: str) -> dict[str, str]:
    """Every regular file under ``folder`` (links not followed) as ``prefix/relative`` -> SHA-256."""
    files = {}
    for root, _, names in os.walk(folder):
        for name in names:
            path = Path(root) / name
            if path.is_file() and not path.is_symlink():
                files[f"{prefix}/{path.relative_to(folder).as_posix()}"] = file_digest(path)
    return dict(sorted(files.items()))


@dataclass(frozen=True)
class _Where:
    out: Path
    stage: Stage
    files: dict[str, str]


def _check_path(value: Any, roots: tuple[str, ...], where: _Where, name: str, own: bool) -> None:
    if not isinstance(value, str) or not value or "\\" in value or "\x00" in value:
        raise RecordProblem(f"{name} must be a relative path, got {value!r}")
    parts = value.split("/")
    if value.startswith("/") or posixpath.normpath(value) != value or ".." in parts or parts[0] not in roots:
        inside = " or ".join(root + "/" for root in roots)
        raise RecordProblem(f"{name}: {value!r} is not a normalised relative path inside {inside}"[:300])
    target = where.out / value
    if not target.resolve().is_relative_to(where.out.resolve()) or not target.exists():
        raise RecordProblem(f"{name}: {value} is missing from the run folder")
    if own and value not in where.files and not any(path.startswith(value + "/") for path in where.files):
        raise RecordProblem(f"{name}: {value} is not among the files the stage wrote")


def _check_names(mapping: dict[str, Any], name: str) -> None:
    """Keys are variant names (``unpruned``, a criterion) that stages turn into file names: one
    path component each, never ``.`` or ``..``, nothing a path could climb out with."""
    for key in mapping:
        if not key or len(key) > 128 or key in (".", "..") or any(c in key for c in "/\\\x00"):
            raise RecordProblem(f"{name} has a key {key[:40]!r} that is not a plain name")


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _check(value: Any, shape: Any, where: _Where, name: str) -> None:
    if isinstance(shape, Optional):
        if value is not None:
            _check(value, shape.inner, where, name)
    elif isinstance(shape, (MapOf, ListOf)):
        kind = dict if isinstance(shape, MapOf) else list
        if not isinstance(value, kind):
            wanted = "an object" if kind is dict else "a list"
            raise RecordProblem(f"{name} must be {wanted}, got {type(value).__name__}")
        if len(value) > MAX_ITEMS:
            raise RecordProblem(f"{name} holds {len(value)} items; a record holds at most {MAX_ITEMS}")
        if isinstance(value, dict):
            _check_names(value, name)
        items = value.items() if isinstance(value, dict) else enumerate(value)
        for key, item in items:
            _check(item, shape.inner, where, f"{name}.{key}")
    elif shape in (PATH, UPSTREAM):
        roots = (where.stage.name,) if shape == PATH else where.stage.reads
        _check_path(value, roots, where, name, own=shape == PATH)
    elif shape == NUMBER and not _finite(value):
        raise RecordProblem(f"{name} must be {NUMBER}, got {value!r}"[:200])
    elif (shape == FLAG and not isinstance(value, bool)) or (shape == TEXT and not isinstance(value, str)):
        raise RecordProblem(f"{name} must be {shape}, got {type(value).__name__}")


def _check_files(entry: dict[str, Any], where: _Where) -> None:
    files = entry.get("files")
    if not isinstance(files, dict):
        raise RecordProblem("files must be an object of path -> SHA-256")
    for path, digest in files.items():
        _check_path(path, (where.stage.name,), where, f"files.{path}", own=False)
        if not (where.out / path).is_file() or (where.out / path).is_symlink():
            raise RecordProblem(f"files.{path} is not a regular file")
        if not isinstance(digest, str) or len(digest) != SHA256_HEX or file_digest(where.out / path) != digest:
            raise RecordProblem(f"{path} changed since the stage wrote it")


def check_entry(entry: Any, stage: Stage, out: Path) -> Record:
    """The record of ``stage``'s ``stage.json`` contents ``entry``, once it checks out.

    Raises:
        RecordProblem: a field of the wrong shape, a path outside the stage's folder or the
            run folder, a listed file missing or changed (the message names the field).
    """
    if not isinstance(entry, dict) or entry.get("stage") != stage.name:
        raise RecordProblem(f"it is not the record of stage {stage.name}")
    if not isinstance(entry.get("hash"), str) or not isinstance(entry.get("record"), dict):
        raise RecordProblem("hash must be a string and record an object")
    if not isinstance(entry.get("missed", ""), str):
        raise RecordProblem("missed must be a string")
    where = _Where(out, stage, entry.get("files") if isinstance(entry.get("files"), dict) else {})
    _check_files(entry, where)
    record, shapes = entry["record"], {**stage.record, "seconds": NUMBER}
    unknown = [key for key in record if key not in shapes]
    if unknown:
        raise RecordProblem(f"record.{unknown[0]} is not a field of a {stage.name} record")
    for key, shape in shapes.items():
        if key not in record and not isinstance(shape, Optional):
            raise RecordProblem(f"record.{key} is missing")
        _check(record.get(key), shape, where, f"record.{key}")
    return record
