"""Shared CLI pieces: option types, model loading and small parsers used by several commands."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from foadx.errors import BadInputError

ModelArgument = Annotated[str, typer.Argument(help="Zoo name, torchvision:NAME, pkg.module:fn or file.py:fn.")]
WeightsOption = Annotated[Optional[Path], typer.Option(help="State dict to load (weights_only).")]
WeightsMapOption = Annotated[Optional[Path], typer.Option(help="JSON regex -> replacement for keys.")]
InputSizeOption = Annotated[Optional[str], typer.Option(help="H or HxW (default: the model's).")]
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON on stdout.")]
ModelOrArtifactArgument = Annotated[
    str, typer.Argument(help="Pruned-artifact directory, or zoo name / torchvision:NAME / pkg.module:fn / file.py:fn.")
]

AtolOption = Annotated[float, typer.Option(help="Absolute tolerance; an element fails only where atol AND rtol are exceeded.")]
RtolOption = Annotated[float, typer.Option(help="Relative tolerance (|a-r|/|r|, Polygraphy's definition).")]
VerifyDataOption = Annotated[str, typer.Option("--data", help="Real images to compare on besides random inputs ('none' to skip).")]
QuietOption = Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar or table.")]
ImagesOption = Annotated[int, typer.Option(help="Real images used for parity.")]
StrictOption = Annotated[bool, typer.Option(help="Fail when a deployability check fails.")]
ParityReportOption = Annotated[Optional[Path], typer.Option(help="Write the parity report (JSON) here.")]


def parse_input_size(text: Optional[str]) -> Optional[tuple[int, int]]:
    if text is None:
        return None
    parts = text.lower().split("x")
    try:
        values = [int(part) for part in parts]
    except ValueError:
        raise BadInputError(f"--input-size must be H or HxW, got {text!r}") from None
    if len(values) not in (1, 2) or min(values) < 1:
        raise BadInputError(f"--input-size must be H or HxW with positive sizes, got {text!r}")
    return (values[0], values[-1])


def parse_model_args(pairs: Optional[list[str]]) -> dict[str, Any]:
    """``KEY=VALUE`` factory arguments; VALUE is read as JSON when it parses, else as a string."""
    kwargs: dict[str, Any] = {}
    for pair in pairs or []:
        key, separator, value = pair.partition("=")
        if not separator or not key.isidentifier():
            raise BadInputError(f"--model-arg must be KEY=VALUE, got {pair!r}")
        try:
            kwargs[key] = json.loads(value)
        except json.JSONDecodeError:
            kwargs[key] = value
    return kwargs


ModelArgOption = Annotated[
    Optional[list[str]], typer.Option(help="Factory argument KEY=VALUE, e.g. embedding_size=10 (repeatable).")
]


def load_model(spec: str, weights: Optional[Path], weights_map: Optional[Path], input_size: Optional[str],
                model_args: Optional[list[str]] = None, seed: int = 0):
    """Builds a model; without --weights its random initialisation is seeded, so the same
    command gives the same result."""
    import torch

    from foadx.models import build_model, load_weights
    from foadx.models.registry import read_weights_map

    torch.manual_seed(seed)
    model = build_model(spec, parse_input_size(input_size), **parse_model_args(model_args))
    if weights is not None:
        load_weights(model, weights, read_weights_map(weights_map) if weights_map else None)
    elif weights_map is not None:
        raise BadInputError("--weights-map needs --weights")
    return model


def load_module(spec: str, weights: Optional[Path], weights_map: Optional[Path], input_size: Optional[str],
                 model_args: Optional[list[str]] = None, seed: int = 0):
    """A pruned artifact (directory with plan.json) or a model spec, on the CPU."""
    from foadx.prune import is_artifact, load_pruned

    if is_artifact(spec):
        if weights is not None or input_size is not None or model_args:
            raise BadInputError("--weights, --input-size and --model-arg do not apply to a pruned artifact")
        return load_pruned(spec, device="cpu")
    if spec.endswith(".onnx"):
        raise BadInputError(f"{spec} is an ONNX file; this needs the PyTorch model or pruned artifact")
    return load_model(spec, weights, weights_map, input_size, model_args, seed)


def verification_images(data: str, model, count: int):
    """Real preprocessed images for parity, as one float32 array (None for --data none)."""
    import torch

    from foadx.data import calibration_images
    from foadx.models import model_source

    if data == "none":
        return None
    source = model_source(model)
    images = calibration_images(data, count, source.input_size, source.mean, source.std, count, 0)
    return torch.cat(list(images)).numpy()


def check_output_path(path: Path) -> None:
    if not path.parent.is_dir():
        raise BadInputError(f"output folder does not exist: {path.parent}")
