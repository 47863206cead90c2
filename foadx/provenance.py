"""Where a model came from: its source spec, its pruning plan and what it was fine-tuned for.

One typed record travels with every network foadx builds, prunes, loads or fine-tunes, so that
saving, exporting and benchmarking never have to guess: ``provenance_of(model)`` reads it,
``record_provenance(model, ...)`` sets it. The record lives in the module's ``foadx_provenance``
attribute, which ``copy.deepcopy`` carries along with the weights.

``Plan`` owns the ``plan.json`` schema: the one place that reads, validates, writes and digests
it. An unpruned model has the empty plan (no groups); ``Plan.is_pruned`` tells them apart.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import asdict, dataclass, field, replace
from typing import Any, NoReturn

from foadx._version import __version__
from foadx.errors import ArtifactError, BadInputError

PLAN_SCHEMA_VERSION = 1
PROVENANCE_ATTRIBUTE = "foadx_provenance"
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
TASKS = ("face", "classify", "unknown")
RANDOM_WEIGHTS = "random initialisation (no --weights, --pretrained or fine-tuning)"


def _fail(message: str) -> NoReturn:
    raise ArtifactError(f"malformed plan: {message}")


def _tuple_of_floats(value: Any, name: str, positive: bool = False) -> tuple[float, ...]:
    if not isinstance(value, (list, tuple)) or not value:
        _fail(f"{name} must be a non-empty list of numbers")
    numbers = tuple(float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else math.nan for v in value)
    if not all(math.isfinite(v) and (v > 0 or not positive) for v in numbers):
        _fail(f"{name} must hold finite{' positive' if positive else ''} numbers, got {value!r}")
    return numbers


def default_normalisation(channels: int) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """(mean, std), one value per input channel, for a model whose spec names no normalisation:
    ImageNet's RGB statistics for 3 channels; for any other count no published statistics
    apply, so pixels are fed as they are, in [0, 1] (mean 0, std 1)."""
    if channels == 3:
        return IMAGENET_MEAN, IMAGENET_STD
    return (0.0,) * channels, (1.0,) * channels


@dataclass(frozen=True)
class ModelSource:
    """A model's input contract and, when ``rebuildable``, enough to rebuild its architecture: the
    spec, its keyword arguments, the input channels and size (C, H, W) and the normalisation its
    inputs expect. A module handed in memory (not built by foadx) has ``rebuildable=False``: its
    ``spec`` only names its class, and no artifact of it can be written."""

    spec: str
    input_size: tuple[int, int]
    kwargs: dict[str, Any] = field(default_factory=dict)
    mean: tuple[float, ...] = IMAGENET_MEAN
    std: tuple[float, ...] = IMAGENET_STD
    input_channels: int = 3
    rebuildable: bool = True

    def __post_init__(self) -> None:
        """Raises BadInputError unless mean and std hold one value per input channel."""
        if not len(self.mean) == len(self.std) == self.input_channels:
            raise BadInputError(f"{self.spec}: mean and std need one value per input channel "
                                f"({self.input_channels}), got {len(self.mean)} and {len(self.std)}")

    @classmethod
    def in_memory(cls, name: str, input_chw: tuple[int, int, int]) -> "ModelSource":
        """The contract of a module foadx did not build, read off its calibration images (C, H,
        W): the images are fed as given, so the recorded normalisation is mean 0, std 1."""
        channels, height, width = (int(v) for v in input_chw)
        return cls(spec=name, input_size=(height, width), mean=(0.0,) * channels, std=(1.0,) * channels,
                   input_channels=channels, rebuildable=False)

    @property
    def input_chw(self) -> tuple[int, int, int]:
        """The input of one image: (channels, height, width)."""
        return (self.input_channels, *self.input_size)

    def to_json(self) -> dict[str, Any]:
        """The ``model`` entry of ``plan.json``: ``input_channels`` and ``rebuildable`` are written
        only when they differ from the defaults (3, True), so older plans keep their digests."""
        data = asdict(self)
        data["input_size"] = list(self.input_size)
        data["mean"], data["std"] = list(self.mean), list(self.std)
        if self.rebuildable:
            del data["rebuildable"]  # written only for the in-memory modules that lack a spec
        if self.input_channels == 3:
            del data["input_channels"]  # RGB, as every plan before the key: their digests stay valid
        return data

    @classmethod
    def from_json(cls, data: Any) -> "ModelSource":
        """Reads and validates a ``model`` entry (spec, input_size [H, W] in 1..8192, kwargs,
        mean/std with one value per channel, input_channels in 1..4096; a missing channel count
        means RGB, a missing mean/std ``default_normalisation``).

        Raises:
            ArtifactError: a missing or malformed field (CLI exit code 3).
        """
        if not isinstance(data, dict) or not isinstance(data.get("spec"), str) or not data["spec"]:
            _fail("the model entry must be an object with a non-empty 'spec'")
        size = data.get("input_size")
        if (not isinstance(size, list) or len(size) != 2
                or not all(isinstance(v, int) and not isinstance(v, bool) and 1 <= v <= 8192 for v in size)):
            _fail(f"model input_size must be [H, W] with 1 <= H, W <= 8192, got {size!r}")
        kwargs = data.get("kwargs", {})
        if not isinstance(kwargs, dict):
            _fail("model kwargs must be an object")
        channels = data.get("input_channels", 3)  # plans written before the key existed: RGB
        if not isinstance(channels, int) or isinstance(channels, bool) or not 1 <= channels <= 4096:
            _fail(f"model input_channels must be an integer in 1..4096, got {channels!r}")
        mean, std = default_normalisation(channels)
        mean = _tuple_of_floats(data.get("mean", mean), "mean")
        std = _tuple_of_floats(data.get("std", std), "std", positive=True)
        try:
            return cls(spec=data["spec"], input_size=(size[0], size[1]), kwargs=dict(kwargs), mean=mean, std=std,
                       input_channels=channels, rebuildable=data.get("rebuildable", True) is not False)
        except BadInputError as error:  # mean/std of another length than the channel count
            _fail(str(error))


@dataclass(frozen=True)
class PlanGroup:
    """One pruned channel group: its original width and the channel indices kept."""

    name: str
    channels: int
    kept: tuple[int, ...]
    coupled: bool = False

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "channels": self.channels, "kept": list(self.kept), "coupled": self.coupled}

    @classmethod
    def from_json(cls, data: Any) -> "PlanGroup":
        if not isinstance(data, dict) or not isinstance(data.get("name"), str):
            _fail("every group must be an object with a 'name'")
        name, channels, kept = data["name"], data.get("channels"), data.get("kept")
        if not isinstance(channels, int) or isinstance(channels, bool) or channels < 1:
            _fail(f"group {name!r}: channels must be a positive integer, got {channels!r}")
        if not isinstance(kept, list) or not kept or not all(isinstance(i, int) and not isinstance(i, bool) for i in kept):
            _fail(f"group {name!r}: kept must be a non-empty list of channel indices")
        if len(set(kept)) != len(kept) or min(kept) < 0 or max(kept) >= channels:
            _fail(f"group {name!r}: kept indices must be distinct and within 0..{channels - 1}")
        return cls(name, channels, tuple(sorted(kept)), bool(data.get("coupled", False)))


@dataclass(frozen=True)
class Plan:
    """The structure of a (possibly) pruned network, as ``plan.json`` records it."""

    model: ModelSource
    groups: tuple[PlanGroup, ...] = ()
    criterion: str | None = None
    parameters: dict[str, Any] = field(default_factory=dict)
    calibration: dict[str, Any] = field(default_factory=dict)
    output_layers: tuple[str, ...] = ()
    finetune: dict[str, Any] | None = None
    weights: str | None = None  # the checkpoint the unpruned model was loaded from, if any
    foadx_version: str = __version__

    @classmethod
    def empty(cls, model: ModelSource) -> "Plan":
        """The plan of an unpruned model."""
        return cls(model=model)

    @property
    def is_pruned(self) -> bool:
        """True when the plan cuts at least one channel group (the empty plan of an unpruned model is not)."""
        return bool(self.groups)

    @property
    def kept(self) -> dict[str, list[int]]:
        """Group name -> the sorted channel indices kept in it."""
        return {group.name: list(group.kept) for group in self.groups}

    @property
    def trained_task(self) -> str | None:
        """The task ("face", "classify", "unknown") the fine-tuning record names, else None."""
        task = ((self.finetune or {}).get("config") or {}).get("task")
        return task if task in TASKS else None

    @property
    def weights_origin(self) -> str:
        """Where the weights came from, said in every prune and export report: a random
        initialisation makes accuracy, parity on real images and FOAD's feature ranking moot."""
        if self.finetune:
            return "fine-tuned by foadx"
        if self.weights:
            return f"loaded from {self.weights}"
        if self.model.kwargs.get("weights"):
            return f"pretrained torchvision weights {self.model.kwargs['weights']}"
        return RANDOM_WEIGHTS

    def with_finetune(self, training: dict[str, Any]) -> "Plan":
        """A copy of the plan carrying ``training`` as its fine-tuning record (which changes its digest)."""
        return replace(self, finetune=training)

    def to_json(self) -> dict[str, Any]:
        """The ``plan.json`` object (schema version ``PLAN_SCHEMA_VERSION``); the ``finetune`` key
        only after fine-tuning."""
        data: dict[str, Any] = {
            "schema_version": PLAN_SCHEMA_VERSION, "foadx_version": self.foadx_version,
            "model": {**self.model.to_json(), **({"weights": self.weights} if self.weights else {})},
            "criterion": self.criterion, "parameters": self.parameters, "calibration": self.calibration,
            "output_layers": list(self.output_layers), "groups": [group.to_json() for group in self.groups],
        }
        if self.finetune is not None:
            data["finetune"] = self.finetune
        return data

    def digest(self) -> str:
        """sha256 of the canonical JSON: names the exact structure and history of a model."""
        return hashlib.sha256(json.dumps(self.to_json(), sort_keys=True).encode()).hexdigest()

    @classmethod
    def from_json(cls, data: Any) -> "Plan":
        """Validates types, ranges and indices before anything is built from the plan.

        Raises:
            ArtifactError: another schema version, or a missing or malformed field (duplicate group
                names, kept indices out of 0..channels-1 ...); CLI exit code 3.
        """
        if not isinstance(data, dict):
            _fail("the plan must be a JSON object")
        if data.get("schema_version") != PLAN_SCHEMA_VERSION:
            raise ArtifactError(
                f"plan schema version {data.get('schema_version')!r}; this foadx reads version {PLAN_SCHEMA_VERSION}"
            )
        groups = data.get("groups")
        if not isinstance(groups, list):
            _fail("'groups' must be a list")
        parsed = tuple(PlanGroup.from_json(group) for group in groups)
        if len({group.name for group in parsed}) != len(parsed):
            _fail("group names must be distinct")
        layers = data.get("output_layers", [])
        if not isinstance(layers, list) or not all(isinstance(layer, str) for layer in layers):
            _fail("'output_layers' must be a list of layer names")
        for key in ("parameters", "calibration"):
            if not isinstance(data.get(key) or {}, dict):
                _fail(f"'{key}' must be an object")
            _refuse_non_finite(data.get(key), key)
        if data.get("criterion") is not None and not isinstance(data["criterion"], str):
            _fail("'criterion' must be a name")
        finetune = data.get("finetune")
        if finetune is not None and not isinstance(finetune, dict):
            _fail("'finetune' must be an object")
        weights = (data.get("model") or {}).get("weights") if isinstance(data.get("model"), dict) else None
        return cls(
            model=ModelSource.from_json(data.get("model")), groups=parsed,
            criterion=data.get("criterion") if isinstance(data.get("criterion"), str) else None,
            parameters=dict(data.get("parameters") or {}), calibration=dict(data.get("calibration") or {}),
            output_layers=tuple(layers), finetune=finetune,
            weights=weights if isinstance(weights, str) else None,
            foadx_version=str(data.get("foadx_version", "unknown")),
        )


def _refuse_non_finite(value: Any, where: str) -> None:
    """Refuses NaN or infinity anywhere in a plan's recorded settings: they would be carried into
    every plan written from it, where strict JSON cannot hold them."""
    pending = [(where, value)]
    while pending:
        path, item = pending.pop()
        if isinstance(item, float) and not math.isfinite(item):
            _fail(f"'{path}' is {item}: a recorded setting is a finite number")
        if isinstance(item, dict):
            pending += [(f"{path}.{key}", entry) for key, entry in item.items()]
        elif isinstance(item, list):
            pending += [(f"{path}[{index}]", entry) for index, entry in enumerate(item)]


@dataclass(frozen=True)
class Provenance:
    """A model's origin: how to rebuild it (``plan.model``), its structure (``plan``) and what its
    output means (``task``: "face" embeddings, "classify" logits or "unknown")."""

    plan: Plan
    task: str = "unknown"

    @property
    def source(self) -> ModelSource:
        """The model's input contract and rebuild recipe (``plan.model``)."""
        return self.plan.model

    def with_plan(self, plan: Plan) -> "Provenance":
        """The record with a new plan; the task becomes the plan's trained task when it names one."""
        return Provenance(plan, plan.trained_task or self.task)


def provenance_of(model: Any) -> Provenance | None:
    """The provenance record of a module foadx built, pruned, loaded or fine-tuned (else None)."""
    record = getattr(model, PROVENANCE_ATTRIBUTE, None)
    return record if isinstance(record, Provenance) else None


def require_provenance(model: Any, needed_for: str) -> Provenance:
    """The provenance record, or a clear refusal: ``needed_for`` says what the record is for."""
    provenance = provenance_of(model)
    if provenance is None:
        raise BadInputError(f"{needed_for} needs a model built by foadx.build_model (its spec, input size and "
                            "normalisation); build it with foadx.build_model(spec)")
    return provenance


def record_provenance(model: Any, provenance: Provenance) -> None:
    """Attaches ``provenance`` to ``model`` (its ``foadx_provenance`` attribute)."""
    setattr(model, PROVENANCE_ATTRIBUTE, provenance)
