"""The one place that decides what a MODEL argument is.

A MODEL is, in this order: a folder holding ``plan.json`` (a foadx artifact), a ``.onnx`` file
(run as it is by verify and bench, imported into PyTorch when a command needs a module),
a TensorRT engine (``.engine``/``.plan`` with foadx's JSON sidecar), or a model spec (a zoo name,
``torchvision:NAME``, ``pkg.module:function``, ``path/file.py:function``). ``resolve_model``
turns it into a ``ModelRef`` that knows its kind, its input name and shape, its normalisation,
its task and its sizes; every command and the benchmark use it, so no two places guess apart.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from foadx.errors import BadInputError
from foadx.provenance import ModelSource, provenance_of

ENGINE_SUFFIXES = (".engine", ".plan")


@dataclass(frozen=True)
class BuildOptions:
    """How a model spec is built: factory arguments, input size, weights, and the seed of the
    random initialisation when no weights are given (same command, same model)."""

    weights: Path | None = None
    weights_map: Path | None = None
    input_size: tuple[int, int] | None = None
    model_args: dict[str, Any] = field(default_factory=dict)
    seed: int = 0
    trust_code: bool = False  # build a code factory named by an artifact's plan
    pretrained: str | None = None  # torchvision's weights: DEFAULT or an enum member name

    @property
    def given(self) -> list[str]:
        names = {"--weights": self.weights, "--weights-map": self.weights_map, "--pretrained": self.pretrained,
                 "--input-size": self.input_size, "--model-arg": self.model_args or None}
        return [name for name, value in names.items() if value is not None]


@dataclass
class ModelRef:
    """A resolved MODEL argument. ``module()`` gives the PyTorch network of a spec or artifact;
    ``path`` is the file of an artifact, ONNX file or engine."""

    text: str
    kind: str
    input_chw: tuple[int, int, int]
    input_name: str = "input"
    source: ModelSource | None = None
    task: str = "unknown"
    path: Path | None = None
    plan_digest: str | None = None
    training_data: dict[str, Any] | None = None  # what it was fine-tuned on (source, held-out split)
    assumed: str | None = None  # what was assumed about an ONNX file that does not say (its contract, task)
    _module: nn.Module | None = field(default=None, repr=False)
    _importer: Callable[[], nn.Module] | None = field(default=None, repr=False)  # an ONNX file's import

    @property
    def runs_in_torch(self) -> bool:
        """True for a spec, artifact or module; False for ONNX files and engines, which run themselves
        (an ONNX file's PyTorch import is only made when ``module()`` is asked for)."""
        return self.kind not in ("onnx", "engine")

    def module(self) -> nn.Module:
        """The PyTorch network (in eval mode) of a spec, artifact, module or ONNX file (imported on
        the first call, ``foadx.models.onnx_import``); it takes (N, C, H, W) with (C, H, W) =
        ``input_chw``.

        Raises:
            BadInputError: the ref is a TensorRT engine, or an ONNX file whose operators cannot be
                imported (CLI exit code 3).
        """
        if self._module is None and self._importer is not None:
            self._module = self._importer().eval()
        if self._module is None:
            raise BadInputError(f"{self.text} is a TensorRT engine; this needs a PyTorch model, a pruned artifact "
                                "or an ONNX file")
        return self._module

    def describe(self) -> dict[str, Any]:
        """A JSON-ready summary for reports: model text, kind, [input name, C, H, W], task,
        source (or None), plan digest (or None) and, for an ONNX file without foadx metadata,
        what was assumed about it."""
        return {"model": self.text, "kind": self.kind, "input": [self.input_name, *self.input_chw],
                "task": self.task, "source": self.source.to_json() if self.source else None,
                "plan_digest": self.plan_digest, **({"assumed": self.assumed} if self.assumed else {})}


def names_spec(text: str) -> bool:
    """True when ``resolve_model`` reads ``text`` as a model spec: not a folder (an artifact), an
    ONNX file or a TensorRT engine."""
    path = Path(text)
    return not (path.is_dir() or path.suffix == ".onnx" or path.suffix in ENGINE_SUFFIXES)


def resolve_model(text: str, options: BuildOptions | None = None, *,
                  defaults: ModelSource | None = None, specs_only: bool = False) -> ModelRef:
    """Resolves ``text``. ``defaults``: the source recorded in a file being compared against
    (e.g. an ONNX file's metadata) — a spec naming the same model is then built with that
    file's input size and factory arguments unless the options give their own.
    ``specs_only``: the build options are meant for the specs among several MODELs (``bench
    --input-size``); a file or artifact ignores them instead of refusing them.

    Returns:
        A ``ModelRef`` of kind "artifact", "onnx", "engine" or "spec" with its (C, H, W) input.

    Raises:
        BadInputError: build options given for a file or artifact; a folder without ``plan.json``;
            an ONNX file with more than one input or not N x C x H x W; an engine without its
            sidecar's ``input_chw``; inconsistent weight options (CLI exit code 3). Subclasses
            from building or loading: UnknownModelError, WeightsError, ArtifactError.
    """
    options = options or BuildOptions()
    path = Path(text)
    if specs_only and not names_spec(text):
        options = BuildOptions(seed=options.seed, trust_code=options.trust_code)
    if path.is_dir():
        return _artifact(text, path, options)
    if path.suffix == ".onnx":
        return _onnx(text, path, options)
    if path.suffix in ENGINE_SUFFIXES:
        return _engine(text, path, options)
    return _spec(text, options, defaults)


def as_ref(model: ModelRef | nn.Module | str | Path, label: str | None = None) -> ModelRef:
    """A ModelRef for what library callers hold: a ref, a module that carries foadx provenance
    (built, loaded or pruned by foadx, including any ``nn.Module`` pruned with ``foadx.prune``,
    whose input contract its calibration images gave), or a MODEL text.

    Raises:
        BadInputError: a module with no provenance (its input shape is unknown).
    """
    if isinstance(model, ModelRef):
        return model
    if isinstance(model, nn.Module):
        if provenance_of(model) is None:
            raise BadInputError(f"{label or type(model).__name__}: its input shape and normalisation are unknown; "
                                "build it with foadx.build_model, or prune it with foadx.prune (its images give them)")
        return _module_ref(label or type(model).__name__, "module", model, None)
    return resolve_model(str(model))


def _refuse_build_options(text: str, kind: str, options: BuildOptions) -> None:
    if options.given:
        raise BadInputError(f"{', '.join(options.given)} do not apply to {text}: it is a{'n' if kind[0] in 'aoAO' else ''} "
                            f"{kind}, built already")


def _module_ref(text: str, kind: str, module: nn.Module, path: Path | None) -> ModelRef:
    """The ref of a network; one whose code is the user's must run on the (1, C, H, W) tensor
    foadx feeds it (else BadInputError, exit 3): every command that runs it resolves it here."""
    from foadx.models.input_contract import check_forward
    from foadx.models.registry import runs_user_code

    provenance = provenance_of(module)
    if runs_user_code(provenance.source.spec):
        check_forward(module.eval(), provenance.source.input_chw)
    plan = provenance.plan
    digest = plan.digest() if plan.is_pruned or plan.finetune else None
    return ModelRef(text, kind, provenance.source.input_chw, source=provenance.source,
                    task=provenance.task, path=path, plan_digest=digest,
                    training_data=(plan.finetune or {}).get("training_data"), _module=module.eval())


def _artifact(text: str, path: Path, options: BuildOptions) -> ModelRef:
    from foadx.pruning.artifact import PLAN_FILE, is_artifact, load_pruned

    if not is_artifact(path):
        raise BadInputError(f"{text} is a folder without {PLAN_FILE}: not a foadx artifact")
    _refuse_build_options(text, "artifact", options)
    return _module_ref(text, "artifact", load_pruned(path, device="cpu", trust_code=options.trust_code), path)


def _onnx(text: str, path: Path, options: BuildOptions) -> ModelRef:
    from foadx.export.metadata import load_onnx, metadata_of
    from foadx.models.onnx_import import onnx_contract

    _refuse_build_options(text, "ONNX file", options)
    graph = load_onnx(path)
    contract = onnx_contract(graph, text)
    metadata = metadata_of(graph)
    source = _metadata_source(metadata) or ModelSource(
        str(path.resolve()), contract.input_chw[1:], mean=contract.mean, std=contract.std,
        input_channels=contract.input_chw[0])
    return ModelRef(text, "onnx", contract.input_chw, graph.graph.input[0].name, source=source, task=contract.task,
                    path=path, plan_digest=metadata.get("plan_digest"),
                    training_data=metadata.get("training_data") if isinstance(metadata.get("training_data"), dict) else None,
                    assumed=contract.assumed, _importer=lambda: _imported(path))


def _imported(path: Path) -> nn.Module:
    from foadx.models import build_model

    return build_model(str(path.resolve()))


def _metadata_source(metadata: dict[str, Any]) -> ModelSource | None:
    """The source recorded in an ONNX file foadx wrote; None for other files."""
    recorded = metadata.get("source_model")
    if not isinstance(recorded, dict) or "input_size" not in recorded:
        return None
    try:
        return ModelSource.from_json({**recorded, "mean": metadata.get("mean") or recorded.get("mean"),
                                      "std": metadata.get("std") or recorded.get("std")})
    except BadInputError:
        return None


def _engine(text: str, path: Path, options: BuildOptions) -> ModelRef:
    from foadx.export.tensorrt import read_sidecar

    _refuse_build_options(text, "TensorRT engine", options)
    if not path.is_file():
        raise BadInputError(f"engine not found: {text}")
    sidecar = read_sidecar(path)
    chw = sidecar.get("input_chw")
    if not isinstance(chw, list) or len(chw) != 3 or not all(isinstance(v, int) and v > 0 for v in chw):
        raise BadInputError(f"{text}: its sidecar does not record the input shape (input_chw)")
    return ModelRef(text, "engine", (chw[0], chw[1], chw[2]), str(sidecar.get("input", "input")), path=path)


def _spec(text: str, options: BuildOptions, defaults: ModelSource | None) -> ModelRef:
    from foadx.models import build_model, load_weights
    from foadx.models.registry import read_weights_map

    input_size, kwargs = options.input_size, dict(options.model_args)
    if defaults is not None and defaults.spec == text:
        input_size = input_size or defaults.input_size
        kwargs = kwargs or dict(defaults.kwargs)
    if options.weights_map is not None and options.weights is None:
        raise BadInputError("--weights-map needs --weights")
    if options.pretrained is not None:
        if not text.startswith("torchvision:"):
            raise BadInputError(f"--pretrained takes torchvision's published weights; {text} has none in foadx: "
                                "give --weights FILE")
        if options.weights is not None:
            raise BadInputError("give --pretrained or --weights, not both")
        kwargs["weights"] = options.pretrained
    torch.manual_seed(options.seed)
    module = build_model(text, input_size, **kwargs)
    if options.weights is not None:
        load_weights(module, options.weights, read_weights_map(options.weights_map) if options.weights_map else None)
    return _module_ref(text, "spec", module, None)
