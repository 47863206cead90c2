"""``foadx run``: a pipeline file's stages (train, prune, fine-tune, export, verify, bench,
report), each re-run only when its settings or inputs change."""

from __future__ import annotations

from pathlib import Path

from foadx.pipeline.config import Pipeline
from foadx.pipeline.runner import StageOutcome, run_pipeline, summary_markdown
from foadx.pipeline.stages import STAGES


def load_pipeline(path: str | Path, *, trust_code: bool = False) -> Pipeline:
    """Reads and checks a pipeline file against every stage's settings (``foadx.pipeline.config``).

    Args:
        path: the pipeline file (TOML).
        trust_code: accept a [model] spec that names code (``pkg.module:function``, ``file.py:function``).

    Raises:
        BadInputError: the file is missing, oversized or malformed, a value is out of range, or
            its spec names code without ``trust_code`` (the message names the field and line).
    """
    from foadx.pipeline import config

    return config.load_pipeline(path, STAGES, trust_code=trust_code)


__all__ = ["Pipeline", "StageOutcome", "load_pipeline", "run_pipeline", "summary_markdown"]
