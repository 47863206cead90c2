"""Issue 23, kind 14: a full disk or a read-only folder is one line and exit 7 (OutputError),
and nothing partial is left: no temporary file, no staging folder, no half an artifact.

A full disk is made without root tricks: RLIMIT_FSIZE in a subprocess (SIGXFSZ ignored, so a
write past the limit fails with EFBIG, as on a full disk) and /dev/full (ENOSPC on every write).
The tests run as root, which chmod does not stop, so a read-only folder is a check on
``os.access`` only where it can hold."""

from __future__ import annotations

import os
import resource
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from foadx.atomic import atomic_directory, write_failure, write_text, write_with
from foadx.errors import OutputError


def _limited(limit_bytes: int) -> None:
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit_bytes, limit_bytes))


def _foadx_with_file_limit(limit_bytes: int, *args: object) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "foadx_cli", *[str(a) for a in args]]
    return subprocess.run(command, check=False, capture_output=True, text=True, timeout=300,
                          preexec_fn=lambda: _limited(limit_bytes))


def _one_error(result: subprocess.CompletedProcess) -> str:
    lines = [line for line in result.stderr.splitlines() if line.startswith("foadx: error:")]
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    return lines[0]


def _leftovers(folder: Path) -> list[str]:
    """Everything in ``folder`` but lock files (which a successful run leaves too)."""
    return sorted(p.name for p in folder.iterdir() if not p.name.endswith(".lock"))


def test_prune_on_a_full_disk_is_exit_7_and_leaves_nothing(tmp_path):
    result = _foadx_with_file_limit(100_000, "prune", "resnet56_cifar", "--data", "demo", "--images", "8",
                                    "--ratio", "0.3", "--out", tmp_path / "out")
    line = _one_error(result)
    assert result.returncode == 7 and f"cannot write the output {tmp_path / 'out'}" in line, line
    assert _leftovers(tmp_path) == []  # no out/, no .out.*.partial


def test_export_on_a_full_disk_is_exit_7_and_leaves_nothing(tmp_path):
    result = _foadx_with_file_limit(100_000, "export", "resnet56_cifar", "--out", tmp_path / "m.onnx")
    line = _one_error(result)
    assert result.returncode == 7 and "cannot write the output" in line, line
    assert _leftovers(tmp_path) == []


def test_torch_save_on_a_full_disk_becomes_output_error(tmp_path):
    state = {"w": torch.zeros(100_000)}
    code = ("import sys, torch; from foadx.atomic import write_with; from foadx.errors import OutputError\n"
            "try:\n    write_with(sys.argv[1], lambda s: torch.save({'w': torch.zeros(100000)}, s))\n"
            "except OutputError as e:\n    print(e); sys.exit(7)\n")
    result = subprocess.run([sys.executable, "-c", code, str(tmp_path / "w.pt")], check=False, capture_output=True, text=True,
                            timeout=120, preexec_fn=lambda: _limited(50_000))
    assert result.returncode == 7 and "cannot write the output" in result.stdout, result.stderr
    assert list(tmp_path.iterdir()) == []
    write_with(tmp_path / "w.pt", lambda stream: torch.save(state, stream))  # without the limit it works
    assert torch.equal(torch.load(tmp_path / "w.pt")["w"], state["w"])


def test_dev_full_gives_enospc_which_is_a_write_failure():
    with pytest.raises(OSError) as raised, open("/dev/full", "wb", buffering=0) as stream:
        stream.write(b"x")
    assert write_failure(raised.value) == os.strerror(raised.value.errno)


def test_a_refused_write_in_a_staging_folder_names_the_output_and_removes_the_staging(tmp_path):
    def fail_like_a_full_disk(staging: Path) -> None:
        (staging / "weights.pt").write_bytes(b"part")
        with open("/dev/full", "wb", buffering=0) as full:
            full.write(b"more")

    with pytest.raises(OutputError, match=f"cannot write the output {tmp_path / 'run'}"), \
            atomic_directory(tmp_path / "run") as staging:
        fail_like_a_full_disk(staging)
    assert _leftovers(tmp_path) == []


def test_an_unrelated_error_is_not_called_a_write_failure(tmp_path):
    with pytest.raises(RuntimeError, match="not about disks"), atomic_directory(tmp_path / "run"):
        raise RuntimeError("not about disks")
    assert write_failure(PermissionError(13, "Permission denied", "/etc/shadow"), writing=False) is None


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into a chmod 0500 folder anyway")
def test_a_read_only_folder_is_exit_7_before_any_work(tmp_path):
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o500)
    try:
        with pytest.raises(OutputError, match="read-only or not writable"):
            write_text(folder / "x.txt", "x")
    finally:
        folder.chmod(0o700)
    assert list(folder.iterdir()) == []
