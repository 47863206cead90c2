"""Every torchvision classification model either prunes (output shape kept, fewer params,
finite outputs) or is refused with exit 3 and a reason: never a crash. Slow (minutes per large
model): `make test-all` runs it; scripts/torchvision_coverage.py prints the README's table."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torchvision

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "torchvision_coverage.py"


@pytest.mark.slow
@pytest.mark.parametrize("name", torchvision.models.list_models(module=torchvision.models))
def test_torchvision_model_prunes_or_is_refused(name):
    done = subprocess.run([sys.executable, str(SCRIPT), "--one", name], capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-2000:]
    row = json.loads(done.stdout.strip().splitlines()[-1])
    assert row["status"] == "pruned" or row["status"].startswith("refused (exit 3)"), row
