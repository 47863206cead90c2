"""Option types shared by the commands, so an option means one thing everywhere, the small
parsers that turn option text into library values, and the ranges every numeric option must be
in (``check_numbers``, applied to every command before it starts: a float is finite, a count or
a time is within ``NUMBER_RANGES``)."""

from __future__ import annotations

import functools
import inspect
import json
import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from foadx.errors import BadInputError
from foadx.tasks.settings import ParitySettings

ModelArgument = Annotated[str, typer.Argument(
    help="Pruned-artifact folder, .onnx file, .engine, or a model spec: zoo name, torchvision:NAME, "
         "pkg.module:fn or file.py:fn.", metavar="MODEL")]
WeightsOption = Annotated[Optional[Path], typer.Option(help="State dict to load into a model spec (weights_only).")]
PretrainedOption = Annotated[Optional[str], typer.Option(help="torchvision:NAME with its published weights: DEFAULT or an enum member (e.g. IMAGENET1K_V1); from the torch hub cache or downloaded.")]
WeightsMapOption = Annotated[Optional[Path], typer.Option(help="JSON of regex -> replacement for checkpoint keys.")]
InputSizeOption = Annotated[Optional[str], typer.Option(help="H or HxW: the size a model spec is built at (default: the model's); bench also runs artifacts at it (ONNX files and engines keep theirs).")]
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


# name -> (lowest, highest, why the highest): counts, sizes and times a run can finish with
NUMBER_RANGES: dict[str, tuple[float, float, str]] = {
    "duration_s": (0.001, 3600.0, "an hour per configuration"),
    "warmup_ms": (0.0, 600_000.0, "ten minutes"),
    "rounds": (1, 1000, ""),
    "min_iterations": (1, 1_000_000, ""),
    "images": (1, 10_000_000, ""),
    "calib_images": (1, 10_000_000, ""),
    "batch_size": (1, 65536, ""),
    "latency_batch": (1, 65536, ""),
    "min_batch": (1, 65536, ""),
    "opt_batch": (1, 65536, ""),
    "max_batch": (1, 65536, ""),
    "epochs": (1, 100_000, ""),
    "margin_warmup_epochs": (0, 100_000, ""),
    "steps_per_epoch": (1, 1_000_000_000, ""),
    "workers": (0, 256, ""),
    "workspace": (0.001, 1024.0, "GiB"),
    "seed": (0, 2**32 - 1, "numpy's seed range"),
}


def check_numbers(values: dict[str, Any]) -> None:
    """Refuses, before any work, a float option that is NaN or infinite and a number outside its
    ``NUMBER_RANGES`` entry (``threads``: 1..4 per CPU core). Messages name the parameter
    (``parameters``), so the CLI shows its flag.

    Raises:
        BadInputError: the first value out of range (exit 3).
    """
    from foadx.runtime.base import max_threads

    ranges = {**NUMBER_RANGES, "threads": (1, max_threads(), "4 per CPU core")}
    for name, value in values.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            continue
        if isinstance(value, float) and not math.isfinite(value):
            raise BadInputError(f"{name} must be a finite number, got {value}", parameters=(name,))
        lowest, highest, why = ranges.get(name, (-math.inf, math.inf, ""))
        if value < lowest:
            raise BadInputError(f"{name} must be >= {lowest}, got {value}", parameters=(name,))
        if value > highest:
            raise BadInputError(f"{name} must be <= {highest}{f' ({why})' if why else ''}, got {value}",
                                parameters=(name,))


@dataclass(frozen=True)
class ModelOptions:
    """How to build a MODEL spec (its weights, size, factory arguments) and whether an artifact's
    plan may run code: the options every command that takes a MODEL shares."""

    weights: Optional[Path] = None
    pretrained: Optional[str] = None
    weights_map: Optional[Path] = None
    input_size: Optional[str] = None
    model_arg: Optional[list[str]] = None
    trust_code: bool = False

    def build(self, seed: int = 0):
        from foadx.resolve import BuildOptions

        return BuildOptions(self.weights, self.weights_map, parse_input_size(self.input_size),
                            parse_model_args(self.model_arg), seed, self.trust_code, self.pretrained)

    def resolve(self, model: str, seed: int = 0, defaults=None):
        """MODEL resolved with these options by the library's one resolver."""
        from foadx.resolve import resolve_model

        return resolve_model(model, self.build(seed), defaults=defaults)


def option_group(parameter: str, group: type, options: tuple[tuple[str, Any, Any], ...]) -> Callable:
    """A decorator that declares ``options`` (name, annotated type, default) once for every
    command it decorates and hands the command their values as one ``group`` object in its
    ``parameter`` argument. The options go before the trailing common ones (--seed ... --quiet)."""

    def decorate(command: Callable) -> Callable:
        signature = inspect.signature(command, eval_str=True)
        own = [declared for declared in signature.parameters.values() if declared.name != parameter]
        added = [inspect.Parameter(name, inspect.Parameter.POSITIONAL_OR_KEYWORD, default=default, annotation=annotation)
                 for name, annotation, default in options]
        cut = next((i for i, declared in enumerate(own) if declared.name in _TRAILING), len(own))

        @functools.wraps(command)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            values = {name: kwargs.pop(name) for name, _, _ in options}
            return command(*args, **{parameter: group(**values)}, **kwargs)

        wrapper.__signature__ = signature.replace(parameters=own[:cut] + added + own[cut:])
        return wrapper

    return decorate


_TRAILING = ("seed", "force", "report", "as_json", "quiet")

ThreadsOption = Annotated[Optional[int], typer.Option(help="CPU threads for the compute (default: torch's, one per core).")]


def takes_threads_option(command: Callable) -> Callable:
    """Adds ``--threads N`` to a command that computes in torch and sets it before the command runs."""
    signature = inspect.signature(command, eval_str=True)
    own = list(signature.parameters.values())
    cut = next((i for i, declared in enumerate(own) if declared.name in _TRAILING), len(own))
    added = inspect.Parameter("threads", inspect.Parameter.POSITIONAL_OR_KEYWORD, default=None,
                              annotation=ThreadsOption)

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from foadx.device import set_compute_threads

        set_compute_threads(kwargs.pop("threads"))
        return command(*args, **kwargs)

    wrapper.__signature__ = signature.replace(parameters=own[:cut] + [added] + own[cut:])
    return wrapper

takes_model_options = option_group("model_options", ModelOptions, (
    ("weights", WeightsOption, None), ("pretrained", PretrainedOption, None), ("weights_map", WeightsMapOption, None),
    ("input_size", InputSizeOption, None), ("model_arg", ModelArgOption, None), ("trust_code", TrustCodeOption, False)))


takes_parity_options = option_group("parity_options", ParitySettings, (
    ("atol", AtolOption, None), ("rtol", RtolOption, None), ("min_cosine", MinCosineOption, None),
    ("max_scaled_error", MaxScaledErrorOption, None), ("check_error_stat", ErrorStatOption, "elemwise"),
    ("error_quantile", ErrorQuantileOption, 0.99), ("strict", StrictOption, False)))


def prepare_report(path: Optional[Path]) -> Optional[Path]:
    """Checks a report path before any work (creates its folder; refuses links and folders)."""
    if path is None:
        return None
    from foadx.atomic import prepare_output

    return prepare_output(path, "file")


@dataclass(frozen=True)
class LatencyOptions:
    """How ``prune --latency-target`` measures: the options beside the target itself."""

    backend: str = "ort-cpu"
    lut: Optional[list[str]] = None
    allow_foreign_lut: bool = False
    latency_batch: int = 1
    min_keep: float = 0.0
    allocation: str = "knapsack"

    def refuse_without_target(self) -> None:
        """These options shape a latency prune only: given without ``--latency-target`` they
        would be ignored, so they are refused (exit 3)."""
        given = [f"--{name.replace('_', '-')}" for name, value in vars(self).items()
                 if value != getattr(LatencyOptions, name)]
        if given:
            raise BadInputError(f"{', '.join(given)} appl{'ies' if len(given) == 1 else 'y'} only with --latency-target")

    def budget(self, target: str, round_to: Optional[int]):
        """The library's latency budget for ``target`` (2.0ms or 2.5x); ``round_to`` None: the
        backend's width step."""
        from foadx.tasks.prune import LatencyBudget

        return LatencyBudget(target, self.backend, self._tables(), self.allow_foreign_lut, self.latency_batch,
                             self.min_keep, self.allocation, round_to)

    def _tables(self):
        """``--lut FILE`` (the one target's table) or ``--lut BACKEND[@PRECISION]=FILE`` (repeatable).

        Raises:
            BadInputError: a bare file beside others, or a target named twice.
        """
        if not self.lut:
            return None
        named = [re.fullmatch(r"([a-z0-9-]+(?:@[a-z0-9]+)?)=(.+)", item) for item in self.lut]
        if len(self.lut) == 1 and named[0] is None:
            return Path(self.lut[0])
        if any(match is None for match in named):
            raise BadInputError("with several --lut, each must be BACKEND=FILE, e.g. --lut ort-cpu=ort.lut.json")
        tables = {match.group(1): Path(match.group(2)) for match in named}
        if len(tables) < len(named):
            raise BadInputError("--lut names one backend twice")
        return tables


# Written out so that `foadx --help` need not import the runtimes; a test keeps it equal to the
# backend registry's profiling backends.
PROFILING_BACKEND_HELP = "ort-cpu, openvino, torch-cpu or torch-cuda."

takes_latency_options = option_group("latency_options", LatencyOptions, (
    ("backend", Annotated[str, typer.Option(help=f"--latency-target: the backend the latency is measured on: {PROFILING_BACKEND_HELP}")], "ort-cpu"),
    ("lut", Annotated[Optional[list[str]], typer.Option(help="--latency-target: a table from foadx profile (default: profile now); with several targets BACKEND=FILE, repeatable.")], None),
    ("allow_foreign_lut", Annotated[bool, typer.Option(help="Plan with a table measured in another environment.")], False),
    ("latency_batch", Annotated[int, typer.Option(help="--latency-target: the batch the latency is for.")], 1),
    ("min_keep", Annotated[float, typer.Option(help="--latency-target: keep at least this fraction of every group's channels.")], 0.0),
    ("allocation", Annotated[str, typer.Option(help="--latency-target: knapsack (a width per group) or global (the criterion's one budget for all groups, bisected to the target).")], "knapsack")))

def _timing(**values: Any):
    """``foadx.runtime.TimingSettings`` of the timing options (imported when a command runs)."""
    from foadx.runtime.timing import TimingSettings

    return TimingSettings(**values)


takes_timing_options = option_group("timing", _timing, (
    ("warmup_ms", Annotated[float, typer.Option(help="Warm-up per configuration, milliseconds.")], 200.0),
    ("duration_s", Annotated[float, typer.Option(help="Measured time per configuration, seconds.")], 3.0),
    ("min_iterations", Annotated[int, typer.Option(help="Minimum timed iterations per configuration.")], 10),
    ("rounds", Annotated[int, typer.Option(help="Interleaved rounds (the gate compares their medians).")], 5)))


@dataclass(frozen=True)
class GateOptions:
    """The regression gate's options; ``gate()`` is None without a baseline."""

    baseline: Optional[Path] = None
    max_regression: float = 10.0
    strict_env: bool = False
    allow_missing: bool = False

    def gate(self):
        from foadx.tasks.bench import Gate

        if self.baseline is None:
            return None
        return Gate(self.baseline, self.max_regression, self.strict_env, self.allow_missing)


takes_gate_options = option_group("gate_options", GateOptions, (
    ("baseline", Annotated[Optional[Path], typer.Option(help="A previous report to gate against.")], None),
    ("max_regression", Annotated[float, typer.Option(help="Allowed slowdown against --baseline, percent; exit 5 beyond.")], 10.0),
    ("strict_env", Annotated[bool, typer.Option(help="Refuse a baseline from a different environment.")], False),
    ("allow_missing", Annotated[bool, typer.Option(help="A configuration only one of this run and --baseline has is a warning, not a failure.")], False)))
