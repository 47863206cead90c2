"""The layer contracts (pyproject.toml, [tool.importlinter]) hold, and the checker catches a
violation; the CLI starts without loading torch, onnx or onnxruntime."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def lint(root: Path, config: Path) -> subprocess.CompletedProcess:
    environment = {**os.environ, "PYTHONPATH": str(root)}
    return subprocess.run([str(LINT_IMPORTS), "--config", str(config), "--no-cache"], cwd=root, env=environment,
                          capture_output=True, text=True, timeout=300)


def copy_tree(tmp_path: Path) -> Path:
    shutil.copytree(ROOT / "foadx", tmp_path / "foadx", ignore=shutil.ignore_patterns("__pycache__", "*.npz"))
    shutil.copytree(ROOT / "cli", tmp_path / "foadx_cli", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    return tmp_path


def test_the_layer_contracts_hold(tmp_path):
    tree = copy_tree(tmp_path)
    result = lint(tree, tree / "pyproject.toml")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "2 kept, 0 broken" in result.stdout


def test_an_upward_import_breaks_the_contract(tmp_path):
    tree = copy_tree(tmp_path)
    base = tree / "foadx" / "runtime" / "base.py"
    base.write_text(base.read_text() + "\nfrom foadx.export import export_onnx  # runtime must not know export\n")
    result = lint(tree, tree / "pyproject.toml")
    assert result.returncode != 0
    assert "foadx.runtime.base -> foadx.export" in result.stdout


def test_the_cli_starts_without_the_heavy_libraries():
    probe = ("import sys, foadx_cli.app; "
             "print(','.join(m for m in ('torch', 'onnx', 'onnxruntime', 'torch_pruning') if m in sys.modules))")
    loaded = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=True)
    assert loaded.stdout.strip() == ""
