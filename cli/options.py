"""Option types shared by the commands, so an option means one thing everywhere, and the small
parsers that turn option text into library values."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from foadx.errors import BadInputError

ModelArgument = Annotated[str, typer.Argument(
    help="Pruned-artifact folder, .onnx file, .engine, or a model spec: zoo name, torchvision:NAME, "
         "pkg.module:fn or file.py:fn.", metavar="MODEL")]
WeightsOption = Annotated[Optional[Path], typer.Option(help="State dict to load into a model spec (weights_only).")]
PretrainedOption = Annotated[Optional[str], typer.Option(help="torchvision:NAME with its published weights: DEFAULT or an enum member (e.g. IMAGENET1K_V1); from the torch hub cache or downloaded.")]
WeightsMapOption = Annotated[Optional[Path], typer.Option(help="JSON of regex -> replacement for checkpoint keys.")]
InputSizeOption = Annotated[Optional[str], typer.Option(help="H or HxW for a model spec (default: the model's).")]
ModelArgOption = Annotated[
    Optional[list[str]], typer.Option(help="Factory argument KEY=VALUE for a model spec, e.g. embedding_size=10 (repeatable).")
]
TrustCodeOption = Annotated[bool, typer.Option(help="Build a model factory (module:function, file.py:function) that an artifact's plan names: runs its code.")]
SeedOption = Annotated[int, typer.Option(help="Seed: initialisation of a spec without weights, image sampling, data order.")]
JsonOption = Annotated[bool, typer.Option("--json", help="Print the result as JSON on stdout (and nothing else).")]
QuietOption = Annotated[bool, typer.Option("--quiet", "-q", help="No progress and no table.")]
ReportOption = Annotated[Optional[Path], typer.Option(help="Write the JSON report here.")]
ForceOption = Annotated[bool, typer.Option(help="Replace a non-empty --out folder that is not this command's earlier output.")]
DataOption = Annotated[str, typer.Option(help="Images: 'demo', a folder, CIFAR batches or .npy/.npz ('none' to skip where optional).")]
ImagesOption = Annotated[int, typer.Option(help="How many images to take from --data.")]
BatchListOption = Annotated[str, typer.Option("--batch", help="Comma-separated batch sizes, e.g. 1,8.")]
DeviceOption = Annotated[str, typer.Option(help="auto, cpu or cuda.")]
AtolOption = Annotated[Optional[float], typer.Option(help="Absolute tolerance; an element fails only where atol AND rtol are exceeded (default 1e-3; int8: off).")]
RtolOption = Annotated[Optional[float], typer.Option(help="Relative tolerance (|a-r|/|r|, Polygraphy's definition; default 1e-3; int8: off).")]
StrictOption = Annotated[bool, typer.Option(help="Fail when a deployability check fails.")]
MinCosineOption = Annotated[Optional[float], typer.Option(help="Every sample's cosine similarity must reach this (default by precision: 0.9999 fp32).")]
MaxScaledErrorOption = Annotated[Optional[float], typer.Option(help="Largest allowed max|a-r| / RMS(r) per output (default by precision: 1e-3 fp32).")]
ErrorStatOption = Annotated[str, typer.Option(help="What atol/rtol bound (Polygraphy's --check-error-stat): elemwise, max, mean, median or quantile.")]
ErrorQuantileOption = Annotated[float, typer.Option(help="The quantile for --check-error-stat quantile.")]


def parse_input_size(text: Optional[str]) -> Optional[tuple[int, int]]:
    if text is None:
        return None
    parts = text.lower().split("x")
    try:
        values = [int(part) for part in parts]
    except ValueError:
        raise BadInputError(f"--input-size must be H or HxW, got {text!r}") from None
    if len(values) not in (1, 2) or min(values) < 1 or max(values) > 8192:
        raise BadInputError(f"--input-size must be H or HxW with sizes in 1..8192, got {text!r}")
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


def finite(value: Optional[float], name: str) -> Optional[float]:
    """Float options are finite numbers: NaN and infinity mean a typo, never a setting."""
    if value is not None and not math.isfinite(value):
        raise BadInputError(f"{name} must be a finite number, got {value}")
    return value


def tolerances(atol: Optional[float], rtol: Optional[float], min_cosine: Optional[float], max_scaled_error: Optional[float],
               error_stat: str, error_quantile: float, precision: str = "fp32"):
    """The comparator's tolerances from the parity options; unset floors take the precision's."""
    from foadx.runtime import Tolerances

    for name, value in (("--atol", atol), ("--rtol", rtol), ("--min-cosine", min_cosine),
                        ("--max-scaled-error", max_scaled_error), ("--error-quantile", error_quantile)):
        finite(value, name)
    chosen = {"error_stat": error_stat, "error_quantile": error_quantile}
    chosen.update({key: value for key, value in (("atol", atol), ("rtol", rtol), ("min_cosine", min_cosine),
                                                 ("max_scaled_error", max_scaled_error)) if value is not None})
    return Tolerances.for_precision(precision, **chosen)


def build_options(weights: Optional[Path] = None, weights_map: Optional[Path] = None, input_size: Optional[str] = None,
                  model_arg: Optional[list[str]] = None, seed: int = 0, trust_code: bool = False,
                  pretrained: Optional[str] = None):
    from foadx.resolve import BuildOptions

    return BuildOptions(weights, weights_map, parse_input_size(input_size), parse_model_args(model_arg), seed, trust_code,
                        pretrained)


def resolve(model: str, weights: Optional[Path] = None, weights_map: Optional[Path] = None,
            input_size: Optional[str] = None, model_arg: Optional[list[str]] = None, seed: int = 0,
            trust_code: bool = False, defaults=None, pretrained: Optional[str] = None):
    """The MODEL argument and its build options, resolved by the library's one resolver."""
    from foadx.resolve import resolve_model

    options = build_options(weights, weights_map, input_size, model_arg, seed, trust_code, pretrained)
    return resolve_model(model, options, defaults=defaults)


def real_images(data: str, ref, count: int):
    """Real preprocessed images at the model's input, as one float32 array (None for 'none')."""
    import torch

    from foadx.data import calibration_images

    if data == "none":
        return None
    if ref.source is None:
        raise BadInputError(f"{ref.text} records no normalisation; give --data none")
    images = calibration_images(data, count, ref.input_chw[1:], ref.source.mean, ref.source.std, count, 0)
    return torch.cat(list(images)).numpy()


def prepare_report(path: Optional[Path]) -> Optional[Path]:
    """Checks a report path before any work (creates its folder; refuses links and folders)."""
    if path is None:
        return None
    from foadx.atomic import prepare_output

    return prepare_output(path, "file")
