"""``foadx run``: a pipeline file's stages (train, prune, fine-tune, export, verify, bench,
report), each re-run only when its settings or inputs change."""

from foadx.pipeline.config import Pipeline, load_pipeline
from foadx.pipeline.runner import StageOutcome, run_pipeline, summary_markdown

__all__ = ["Pipeline", "StageOutcome", "load_pipeline", "run_pipeline", "summary_markdown"]
