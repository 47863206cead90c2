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
    assert "4 kept, 0 broken" in result.stdout


def lint_with(tmp_path: Path, module: str, line: str) -> subprocess.CompletedProcess:
    """The contracts checked on a copy of the tree where ``module`` (a path under foadx/) ends with ``line``."""
    tree = copy_tree(tmp_path)
    planted = tree / "foadx" / module
    planted.write_text(planted.read_text() + f"\n{line}\n")
    return lint(tree, tree / "pyproject.toml")


def test_an_upward_import_breaks_the_contract(tmp_path):
    result = lint_with(tmp_path, "runtime/base.py", "from foadx.export import export_onnx  # runtime must not know export")
    assert result.returncode != 0
    assert "foadx.runtime.base -> foadx.export" in result.stdout


def test_the_cli_starts_without_the_heavy_libraries():
    probe = ("import sys, foadx_cli.app; "
             "print(','.join(m for m in ('torch', 'onnx', 'onnxruntime', 'torch_pruning') if m in sys.modules))")
    loaded = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=True)
    assert loaded.stdout.strip() == ""


def test_the_old_pipeline_circle_breaks_the_contract(tmp_path):
    """report.py once imported stages.py while stages.py imported report.py; planted again, the
    pipeline's inner contract must catch it (the package-level layers contract cannot)."""
    result = lint_with(tmp_path, "pipeline/report.py", "from foadx.pipeline.stages import STAGES  # the old circle")
    assert result.returncode != 0
    assert "pipeline inner order BROKEN" in result.stdout
    assert "foadx.pipeline.report -> foadx.pipeline.stages" in result.stdout


def test_a_task_importing_another_task_breaks_the_contract(tmp_path):
    result = lint_with(tmp_path, "tasks/bench.py", "from foadx.tasks.prune import prune_model  # tasks stay independent")
    assert result.returncode != 0
    assert "foadx.tasks.bench -> foadx.tasks.prune" in result.stdout
