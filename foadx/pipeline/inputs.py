"""What the files a pipeline names hold, for the stage hashes: replacing [model] weights, the
data or a bench baseline by other contents (under the same name) re-runs what depends on them.

A file is identified by the SHA-256 of its contents. A data folder (an image tree, CIFAR
batches, an insightface folder: possibly many gigabytes) by the SHA-256 of every file's
relative path, size and modification time: any file added, removed, resized or rewritten
changes it, without reading the images on every run.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from foadx.pipeline.config import MODEL_FILES, Pipeline
from foadx.pipeline.records import file_digest
from foadx.pipeline.stage import Stage
from foadx.untrusted import regular_file


def _file(path: str, what: str) -> str:
    return file_digest(regular_file(path, what))


def folder_fingerprint(folder: Path) -> str:
    """SHA-256 of every file's (relative path, size, mtime in ns) under ``folder``, sorted."""
    entries = []
    for root, _, names in os.walk(folder):
        for name in names:
            path = Path(root) / name
            stat = path.stat() if path.exists() else None
            if stat is not None:
                entries.append(f"{path.relative_to(folder).as_posix()}\0{stat.st_size}\0{stat.st_mtime_ns}")
    return hashlib.sha256("\n".join(sorted(entries)).encode()).hexdigest()


def data_digest(source: str, what: str = "data.source") -> str:
    """The identity of a data source (``what`` names its setting in messages): "demo", a file's
    SHA-256 or a folder's fingerprint.

    Raises:
        BadInputError: the source is missing, or neither a regular file nor a folder.
    """
    if source == "demo":
        return source
    path = Path(source)
    if path.is_dir():
        return f"folder {folder_fingerprint(path)}"
    return f"file {_file(source, what)}"


def model_digest(text: str) -> str | None:
    """The contents a MODEL text names: an artifact folder's fingerprint, a file's SHA-256 (an
    ONNX file), a spec's code file's SHA-256; None for anything else (a zoo or torchvision spec,
    whose name in the settings is its identity)."""
    path = Path(text)
    if path.is_dir():
        return f"folder {folder_fingerprint(path)}"
    if path.is_file():
        return f"file {file_digest(path)}"
    return _code_digest(text)


def _code_digest(spec: str) -> str | None:
    location = spec.rpartition(":")[0]
    return file_digest(Path(location)) if location.endswith(".py") and Path(location).is_file() else None


def input_digests(pipeline: Pipeline, stages: Mapping[str, Stage]) -> dict[str, Any]:
    """The contents the stage hashes cover: ``model`` (weights, a spec's code file), ``data``,
    and per stage what its settings name: files (``Stage.files``, e.g. [bench] baseline), models
    (``Stage.models``, e.g. [eval] gallery_model) and data sources (``Stage.sources``).

    Raises:
        BadInputError: a file the pipeline names is missing or not a regular file (a FIFO is
            refused before it is opened).
    """
    model = pipeline.settings("model")
    digests: dict[str, Any] = {
        "model": {key: _file(model[key], f"model.{key}") for key in MODEL_FILES if model.get(key)},
        "data": data_digest(pipeline.settings("data")["source"])}
    digests["model"]["code"] = _code_digest(model["spec"])
    for name in pipeline.stages:
        settings, stage = pipeline.settings(name), stages[name]
        files: dict[str, Any] = {key: _file(settings[key], f"{name}.{key}") for key in stage.files if settings.get(key)}
        files.update({key: model_digest(settings[key]) for key in stage.models if settings.get(key)})
        files.update({key: data_digest(settings[key], f"{name}.{key}") for key in stage.sources if settings.get(key)})
        if files:
            digests[name] = files
    return digests

