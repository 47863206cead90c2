"""Atomic writes of files and whole folders: build beside the target, then rename over it.

A crash or error mid-write leaves the previous file or folder (or nothing) — never half of one.
A write the file system refuses (full, read-only, forbidden) is ``OutputError`` (exit 7), one
line naming the output, with the temporary file or staging folder removed. Files get the permissions the umask gives a new file (0644 under 0022), not ``mkstemp``'s 0600:
artifacts are copied to other users and containers. Missing parent folders are created.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import fcntl
import json
import os
import shutil
import stat
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

from foadx.errors import BadInputError, OutputError

_RENAME_EXCHANGE = 2  # linux/fs.h: swap two paths in one step

# errno values that mean "this file system will not take the write", not "your input is wrong"
# (a folder foadx writes into); the first four can only come from a write
ONLY_WRITES = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS})
WRITE_FAILURES = ONLY_WRITES | {errno.EACCES, errno.EPERM, errno.EIO}
# torch's C++ writer (torch.save) reports a failed write as a RuntimeError with one of these
_TORCH_WRITE_FAILURES = ("PytorchStreamWriter failed", "unexpected pos", "file write failed")


def write_failure(error: BaseException, writing: bool = True) -> str | None:
    """Why ``error`` is a write the file system refused (its strerror, or torch's words), or
    None when it is something else. ``writing``: the error came from writing an output, so a
    permission or I/O error counts too; else only errors no read can raise do."""
    if isinstance(error, OSError) and error.errno in (WRITE_FAILURES if writing else ONLY_WRITES):
        return error.strerror or errno.errorcode.get(error.errno, "write failed")
    if isinstance(error, RuntimeError) and any(marker in str(error) for marker in _TORCH_WRITE_FAILURES):
        return "the file system refused the write (full disk or file size limit?)"
    return None


def raise_if_refused_write(error: BaseException, target: str | Path) -> None:
    """Raises ``OutputError`` naming ``target`` when ``error``, or an error it wraps (an
    exporter's ``__cause__``), is a write the file system refused; returns otherwise. A
    permission error on a path outside ``target``'s folder (an input being read) does not count.

    Raises:
        OutputError: the write was refused (exit 7).
    """
    target = Path(target)
    cause: BaseException | None = error
    seen: set[int] = set()
    while cause is not None and id(cause) not in seen:
        seen.add(id(cause))
        reason = write_failure(cause, writing=_names_output(cause, target))
        if reason is not None:
            raise OutputError(f"cannot write the output {target}: {reason}") from error
        cause = cause.__cause__ or cause.__context__


@contextmanager
def _refused_writes(target: Path) -> Iterator[None]:
    """Turns a refused write inside the block into ``OutputError`` naming ``target``."""
    try:
        yield
    except (OSError, RuntimeError) as error:
        raise_if_refused_write(error, target)
        raise


def _umask() -> int:
    current = os.umask(0)
    os.umask(current)
    return current


def _names_output(error: BaseException, target: Path) -> bool:
    name = getattr(error, "filename", None)
    if not isinstance(name, (str, bytes, os.PathLike)):
        return True  # a stream's write: the output being written
    return Path(os.fsdecode(name)).resolve().is_relative_to(target.parent.resolve())


def prepare_output(target: str | Path, kind: str = "file") -> Path:
    """Checks an output path before any work: creates missing parent folders, refuses a path
    that is a symlink, a device or another special file, or an existing entry of the wrong kind."""
    target = Path(target)
    if target.is_symlink():
        raise BadInputError(f"output {target} is a symbolic link; foadx does not write through links")
    if target.exists():
        mode = target.stat().st_mode
        if not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
            raise BadInputError(f"output {target} is not a regular file or folder")
        if kind == "file" and stat.S_ISDIR(mode):
            raise BadInputError(f"output {target} is a folder; give a file path")
        if kind == "folder" and stat.S_ISREG(mode):
            raise BadInputError(f"output {target} is a file; give a folder path")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        if error.errno in WRITE_FAILURES:
            raise OutputError(f"cannot write the output {target}: cannot create its folder: {error.strerror}") from error
        raise BadInputError(f"cannot create the folder of {target}: {error.strerror}") from error
    if not os.access(target.parent, os.W_OK | os.X_OK):
        raise OutputError(f"cannot write the output {target}: its folder {target.parent} is read-only or not writable")
    return target


@contextmanager
def atomic_path(target: str | Path) -> Iterator[Path]:
    """Yields a temporary path beside ``target``; renames it onto ``target`` on success."""
    target = prepare_output(target, "file")
    with _refused_writes(target):
        handle, temporary = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
        os.close(handle)
        temporary_path = Path(temporary)
        try:
            yield temporary_path
            os.chmod(temporary_path, 0o666 & ~_umask())
            with open(temporary_path, "rb") as written:
                os.fsync(written.fileno())
            os.replace(temporary_path, target)
        finally:
            temporary_path.unlink(missing_ok=True)


def write_with(target: str | Path, writer: Callable[[IO[bytes]], None]) -> None:
    """Writes ``target`` atomically with ``writer(stream)`` (e.g. ``torch.save(state, stream)``).

    Raises:
        BadInputError: ``target`` is a link, a folder or a special file.
        OutputError: the file system refused the write; no file is left.
    """
    with atomic_path(target) as temporary, open(temporary, "wb") as stream:
        writer(stream)


def write_text(target: str | Path, text: str) -> None:
    write_with(target, lambda stream: stream.write(text.encode("utf-8")))


def write_json(target: str | Path, data: Any) -> None:
    write_text(target, json.dumps(data, indent=2, sort_keys=False) + "\n")


def check_folder_target(target: str | Path, owned: Callable[[Path], bool], force: bool, what: str) -> Path:
    """Refuses (before any work) a non-empty folder that is not an earlier ``what`` output,
    unless ``force``: foadx never mixes a new output with another run's files."""
    target = prepare_output(target, "folder")
    if target.is_dir() and any(target.iterdir()) and not owned(target) and not force:
        raise BadInputError(
            f"--out {target} is not empty and is not an earlier {what} output; choose another folder "
            "or add --force to replace it as a whole"
        )
    return target


def _exchange(first: Path, second: Path) -> bool:
    """renameat2(RENAME_EXCHANGE): both paths swap in one atomic step (Linux >= 3.15)."""
    library = ctypes.util.find_library("c")
    if library is None:
        return False
    renameat2 = getattr(ctypes.CDLL(library, use_errno=True), "renameat2", None)
    if renameat2 is None:
        return False
    at_cwd = -100
    result = renameat2(at_cwd, os.fsencode(first), at_cwd, os.fsencode(second), _RENAME_EXCHANGE)
    return result == 0


@contextmanager
def _locked(target: Path) -> Iterator[None]:
    """An exclusive lock on ``target`` (a hidden ``.NAME.lock`` file beside it) for one writer at
    a time; a second writer is refused at once rather than interleaved."""
    lock_path = target.parent / f".{target.name}.lock"
    handle = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o666 & ~_umask())
    try:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise BadInputError(f"another foadx run is writing {target}; wait for it or choose another --out") from None
        yield
    finally:
        os.close(handle)  # releases the lock


def _remove_stale_staging(target: Path) -> None:
    """Staging folders a killed run left beside ``target`` (safe: we hold its lock)."""
    for stale in target.parent.glob(f".{target.name}.*.partial"):
        shutil.rmtree(stale, ignore_errors=True)


@contextmanager
def atomic_directory(target: str | Path) -> Iterator[Path]:
    """Yields an empty staging folder beside ``target``; on success it replaces ``target`` as a
    whole (stale files of an earlier run disappear with it). On failure ``target`` is untouched
    and the staging folder removed; a write the file system refuses inside the block is
    ``OutputError``. One writer at a time per target; staging folders of killed runs are removed
    first."""
    target = prepare_output(target, "folder")
    with _refused_writes(target), _locked(target):
        _remove_stale_staging(target)
        staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".partial", dir=target.parent))
        try:
            yield staging
            os.chmod(staging, 0o777 & ~_umask())
            _swap_in(staging, target)
        except OutputError as error:  # a file inside: name the output the user asked for
            raise OutputError(str(error).replace(str(staging), str(target))) from error
        finally:
            if staging.exists():
                shutil.rmtree(staging, ignore_errors=True)


def _swap_in(staging: Path, target: Path) -> None:
    if not target.exists():
        os.rename(staging, target)
    elif _exchange(staging, target):
        shutil.rmtree(staging)  # now holds the previous folder
    else:  # no renameat2: a short window in which target is absent, never half-written
        previous = staging.with_name(staging.name + ".previous")
        os.rename(target, previous)
        os.rename(staging, target)
        shutil.rmtree(previous)
