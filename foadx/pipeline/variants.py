"""The models a pipeline run holds: the base [model] describes, and each variant's files in the
run folder."""

from __future__ import annotations

from pathlib import Path

from torch import nn

from foadx.pipeline.config import Pipeline
from foadx.pipeline.stage import UNPRUNED, Record
from foadx.resolve import BuildOptions, ModelRef, resolve_model


def base_ref(pipeline: Pipeline) -> ModelRef:
    """The model the pipeline starts from, as [model] describes it."""
    model = pipeline.settings("model")
    size = model["input_size"]
    options = BuildOptions(weights=Path(model["weights"]) if model["weights"] else None,
                           input_size=(size, size) if size else None, model_args=dict(model["args"]),
                           seed=model["seed"], pretrained=model["pretrained"], trust_code=pipeline.trust_code)
    return resolve_model(model["spec"], options)


def load_variant(pipeline: Pipeline, run: Path, relative: str) -> nn.Module:
    """A variant's artifact folder (``relative`` to the run folder), loaded; its plan may name
    the code of [model] only when the pipeline is trusted."""
    return resolve_model(str(run / relative), BuildOptions(trust_code=pipeline.trust_code)).module()


def unpruned_model(pipeline: Pipeline, inputs: dict[str, Record], run: Path) -> nn.Module:
    """The trained base when [train] ran, else the base [model] describes."""
    return load_variant(pipeline, run, inputs["train"]["models"][UNPRUNED]) if "train" in inputs else base_ref(pipeline).module()


def final_models(inputs: dict[str, Record]) -> dict[str, str | None]:
    """Each variant's last model: the fine-tuned one, else the pruned one; ``None`` for an
    unpruned model no stage wrote (built from [model])."""
    models: dict[str, str | None] = {UNPRUNED: inputs.get("train", {}).get("models", {}).get(UNPRUNED)}
    for stage in ("prune", "finetune"):
        models.update(inputs.get(stage, {}).get("models", {}))
    return models


def variant_model(pipeline: Pipeline, run: Path, relative: str | None) -> nn.Module:
    """A variant's model: its artifact, or the base for ``None``; in eval mode."""
    return (load_variant(pipeline, run, relative) if relative else base_ref(pipeline).module()).eval()
