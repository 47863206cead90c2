"""Model specs -> nn.Module: the zoo, ``torchvision:NAME``, ``pkg.module:fn`` and ``file.py:fn``.

Every model built here carries its provenance (``foadx.provenance_of(model)``) so that a pruned
artifact can rebuild the architecture later without pickling code.
"""

from __future__ import annotations

import importlib
import importlib.util
import warnings
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch
from torch import nn

from foadx.errors import BadInputError, MissingDependencyError, UnknownModelError, WeightsError, first_line
from foadx.models.arcface import IRESNET_DEPTHS, iresnet, mbf
from foadx.models.input_contract import first_layer_channels
from foadx.models.mobilefacenet import MobileFaceNet
from foadx.models.resnet_cifar import ResNetCifar
from foadx.models.weights_map import read_weights_map, rename_keys  # noqa: F401 (read_weights_map: public here)
from foadx.models.vgg_cifar import VGG16Cifar
from foadx.provenance import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    ModelSource,
    Plan,
    Provenance,
    default_normalisation,
    provenance_of,
    record_provenance,
)
from foadx.untrusted import regular_file

CIFAR_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR_STD = (0.2470, 0.2435, 0.2616)
FACE_MEAN = (0.5, 0.5, 0.5)  # insightface: (x - 127.5) / 127.5
FACE_STD = (0.5, 0.5, 0.5)


@dataclass(frozen=True)
class ZooEntry:
    """One zoo model: its factory, default input (H, W), normalisation (mean/std per RGB channel),
    description, whether the factory takes ``input_size``, and its task."""

    factory: Callable[..., nn.Module]
    input_size: tuple[int, int]
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    description: str
    takes_input_size: bool = False
    task: str = "classify"  # "face": the output is an embedding compared by cosine


ZOO: dict[str, ZooEntry] = {
    "mobilefacenet": ZooEntry(
        MobileFaceNet, (112, 112), FACE_MEAN, FACE_STD,
        "MobileFaceNet (Chen et al. 2018, Table 1): face embeddings, 1.00M params, 221M MACs",
        takes_input_size=True, task="face",
    ),
    "vgg16_cifar": ZooEntry(
        VGG16Cifar, (32, 32), CIFAR_MEAN, CIFAR_STD,
        "VGG-16 in the FOAD reference layout for CIFAR-10: 14.72M params, 313M MACs",
    ),
    "resnet56_cifar": ZooEntry(
        ResNetCifar, (32, 32), CIFAR_MEAN, CIFAR_STD,
        "ResNet-56 for CIFAR-10 (He et al. 2016, option-A shortcuts): 0.85M params, 125M MACs",
    ),
    "mbf": ZooEntry(
        mbf, (112, 112), FACE_MEAN, FACE_STD,
        "insightface arcface_torch MobileFaceNet (mbf): 512-d embeddings, loads its backbone.pth",
        task="face",
    ),
    **{
        f"iresnet{depth}": ZooEntry(
            lambda depth=depth, **kwargs: iresnet(depth, **kwargs), (112, 112), FACE_MEAN, FACE_STD,
            f"insightface arcface_torch IResNet-{depth}: 512-d embeddings, loads its backbone.pth",
            task="face",
        )
        for depth in IRESNET_DEPTHS
    },
}
"""The model zoo: name -> ``ZooEntry``; ``build_model(name)`` builds one, ``foadx models`` lists them."""


def runs_user_code(spec: str) -> bool:
    """A spec that imports and calls code outside foadx and torchvision (``module:function``,
    ``file.py:function``): safe to build when the user typed it, not when a file names it. An
    ``.onnx`` file is data (``foadx.models.onnx_import``), never code."""
    return spec not in ZOO and not spec.startswith("torchvision:") and not spec.endswith(".onnx")


def model_task(spec: str) -> str:
    """What a model's output means: "face" (embedding), "classify" (logits) or "unknown"."""
    if spec in ZOO:
        return ZOO[spec].task
    return "classify" if spec.startswith("torchvision:") else "unknown"


def _load_factory(spec: str) -> Callable[..., nn.Module]:
    location, _, function = spec.rpartition(":")
    if location.endswith(".py"):
        path = Path(location)
        if not path.is_file():
            raise UnknownModelError(f"model file not found: {location}")
        module_spec = importlib.util.spec_from_file_location(f"foadx_user_{path.stem}", path)
        module = importlib.util.module_from_spec(module_spec)
        try:
            module_spec.loader.exec_module(module)
        except Exception as error:  # user code: any failure is the user's input
            raise UnknownModelError(f"cannot import {location}: {error}") from error
    else:
        try:
            module = importlib.import_module(location)
        except ImportError as error:
            raise UnknownModelError(f"cannot import module {location!r}: {error}") from error
    factory = getattr(module, function, None)
    if not callable(factory):
        raise UnknownModelError(f"{location} has no callable {function!r}")
    return factory


def _parse_input_size(input_size: tuple[int, int] | None, default: tuple[int, int]) -> tuple[int, int]:
    return tuple(input_size) if input_size else default


def _from_zoo(spec: str, input_size: tuple[int, int] | None, kwargs: dict[str, Any]) -> tuple[Any, ModelSource]:
    entry = ZOO[spec]
    size = _parse_input_size(input_size, entry.input_size)
    factory_kwargs = dict(kwargs)
    if entry.takes_input_size:
        factory_kwargs["input_size"] = size
    elif size != entry.input_size:
        raise UnknownModelError(f"{spec} takes only {entry.input_size[0]}x{entry.input_size[1]} inputs")
    try:
        model = entry.factory(**factory_kwargs)
    except (TypeError, ValueError) as error:
        raise UnknownModelError(f"cannot build {spec}: {error}") from error
    return model, ModelSource(spec, size, kwargs, entry.mean, entry.std)


def build_model(spec: str, input_size: tuple[int, int] | None = None, **kwargs: Any) -> nn.Module:
    """Builds ``spec`` with random initialisation; load weights with ``load_weights``.

    Args:
        spec: a zoo name (``ZOO``), ``torchvision:NAME``, ``pkg.module:function`` or
            ``path/file.py:function`` (the last two import and run that code), or an ``.onnx``
            file (imported with ``foadx.models.onnx_import.import_onnx``; ``kwargs`` may hold
            the ``sha256`` it must have).
        input_size: (H, W) in pixels; None takes the zoo entry's size, else (224, 224). Zoo
            models that do not take an input size refuse any other.
        kwargs: the factory's keyword arguments (recorded in the plan to rebuild the model).

    Returns:
        The module, carrying its provenance (source spec, input (C, H, W), mean/std, task) and the
        empty plan. A user factory's C is the input channels of its first image layer.

    Raises:
        UnknownModelError: an unknown spec, a factory that cannot be imported or called with
            ``kwargs``, a zoo or torchvision argument beyond +-``MAX_ARGUMENT``, a size a zoo model
            does not take, or a result that is not an nn.Module (CLI exit code 3).
        MissingDependencyError: torchvision weights asked for that are neither cached nor
            downloadable (exit code 6).
    """
    if spec in ZOO or spec.startswith("torchvision:"):
        _refuse_huge_arguments(spec, kwargs)
    if spec in ZOO:
        model, source = _from_zoo(spec, input_size, kwargs)
    elif spec.endswith(".onnx"):
        from foadx.models.onnx_import import import_onnx

        if set(kwargs) - {"sha256"}:
            raise UnknownModelError(f"an ONNX file takes no factory arguments, got {sorted(kwargs)}")
        return import_onnx(spec, input_size, **kwargs)  # its provenance: the task the graph shows
    elif spec.startswith("torchvision:"):
        import torchvision

        name = spec.split(":", 1)[1]
        if name not in torchvision.models.list_models(module=torchvision.models):
            raise UnknownModelError(
                f"torchvision has no classification model {name!r} (see torchvision.models.list_models())"
            )
        model = _torchvision_model(name, kwargs)
        size = _parse_input_size(input_size, (224, 224))
        source = ModelSource(spec, size, kwargs, IMAGENET_MEAN, IMAGENET_STD)
    elif ":" in spec:
        location = spec.rpartition(":")[0]
        if location.endswith(".py"):
            spec = f"{Path(location).resolve()}:{spec.rpartition(':')[2]}"
        model = _load_factory(spec)(**kwargs)
        source = _user_source(spec, model, _parse_input_size(input_size, (224, 224)), kwargs)
    else:
        known = ", ".join(sorted(ZOO))
        raise UnknownModelError(
            f"unknown model {spec!r}: use one of {known}, torchvision:NAME, pkg.module:function "
            "or path/file.py:function"
        )
    if not isinstance(model, nn.Module):  # every factory's result, before anything uses it
        raise UnknownModelError(f"{spec} returned {type(model).__name__}, not a torch nn.Module")
    record_provenance(model, Provenance(Plan.empty(source), model_task(source.spec)))
    return model


MAX_ARGUMENT = 100_000  # a number a zoo or torchvision factory argument may be (num_classes, embedding_size)


def _refuse_huge_arguments(spec: str, kwargs: dict[str, Any]) -> None:
    """Refuses a number in ``kwargs`` (at any depth) beyond +-``MAX_ARGUMENT``: a plan or pipeline
    of a few bytes naming num_classes=3000000 would build a layer of gigabytes."""
    pending = list(kwargs.items())
    while pending:
        name, value = pending.pop()
        if isinstance(value, dict):
            pending += [(name, item) for item in value.values()]
        elif isinstance(value, (list, tuple)):
            pending += [(name, item) for item in value]
        elif isinstance(value, (int, float)) and not isinstance(value, bool) and not abs(value) <= MAX_ARGUMENT:
            raise UnknownModelError(f"{spec} argument {name}={str(value)[:24]} is beyond the {MAX_ARGUMENT:,} foadx builds "
                                    "a zoo or torchvision model with")


def _user_source(spec: str, model: Any, size: tuple[int, int], kwargs: dict[str, Any]) -> ModelSource:
    """The input contract of a model built from the user's code: the channels its first image
    layer takes (3 when it has none), the normalisation ``default_normalisation`` gives them."""
    channels = (first_layer_channels(model) if isinstance(model, nn.Module) else None) or 3
    return ModelSource(spec, size, kwargs, *default_normalisation(channels), input_channels=channels)


def _torchvision_model(name: str, kwargs: dict[str, Any]) -> nn.Module:
    """``get_model`` with weights=None unless the user asked for weights (``--model-arg weights=...``);
    pretrained weights that are neither cached nor downloadable are a missing dependency."""
    import torchvision

    arguments = {"weights": None, **kwargs}
    try:
        return torchvision.models.get_model(name, **arguments)
    except (TypeError, ValueError, KeyError) as error:
        raise UnknownModelError(f"cannot build torchvision:{name} with {kwargs}: {error}"
                                + (" (--pretrained takes DEFAULT or a member of the model's weights enum, e.g. IMAGENET1K_V1)"
                                   if "weights" in kwargs else "")) from error
    except OSError as error:  # urllib's URLError is an OSError: no cache, no network
        raise MissingDependencyError(
            f"torchvision:{name} weights {arguments['weights']!r} are not in the torch hub cache and cannot be "
            f"downloaded: {error}"
        ) from error


def _unwrap_checkpoint(checkpoint: Any, path: Path) -> dict[str, torch.Tensor]:
    for key in ("state_dict", "model", "model_state_dict"):
        if isinstance(checkpoint, dict) and isinstance(checkpoint.get(key), dict):
            checkpoint = checkpoint[key]
            break
    if not isinstance(checkpoint, dict) or not all(isinstance(v, torch.Tensor) for v in checkpoint.values()):
        raise WeightsError(f"{path} holds no state dict of tensors")
    if not all(isinstance(k, str) for k in checkpoint):
        raise WeightsError(f"{path} holds no state dict of tensors: a state dict's keys are parameter names (strings)")
    return checkpoint


MAX_SHOWN_KEY = 120  # characters of one key a message shows


def _shown_key(key: str) -> str:
    """A checkpoint's key as one message line shows it: escaped (no control characters) and cut."""
    escaped = key.encode("unicode_escape").decode("ascii")
    return escaped if len(escaped) <= MAX_SHOWN_KEY else escaped[:MAX_SHOWN_KEY] + "..."


def unfit_value(tensor: torch.Tensor, expected: torch.Tensor) -> str | None:
    """Why a checkpoint tensor of the right shape still cannot stand for ``expected``: not dense,
    on the meta device, of another kind of number (complex, or integers where floats belong), or
    not finite; None when it can."""
    if tensor.layout != torch.strided:
        return f"layout {str(tensor.layout).removeprefix('torch.')}"
    if tensor.device.type == "meta":
        return "on the meta device (no values)"
    if tensor.is_complex() or (expected.is_floating_point() and not tensor.is_floating_point()):
        return f"dtype {str(tensor.dtype).removeprefix('torch.')} vs {str(expected.dtype).removeprefix('torch.')}"
    if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
        return "not finite (NaN or infinity)"
    return None


def state_dict_mismatch(model: nn.Module, state: dict[str, torch.Tensor]) -> str | None:
    """What keeps ``state`` from loading into ``model``: its missing, unexpected and mis-shaped
    keys, and those whose values are not dense, not of the model's kind of number or not finite
    (five of each named, escaped and cut to ``MAX_SHOWN_KEY`` characters, then a count), or
    None when it fits exactly."""
    expected = model.state_dict()
    missing = [key for key in expected if key not in state]
    unexpected = [key for key in state if key not in expected]
    mismatched = [f"{key} {tuple(state[key].shape)} vs {tuple(expected[key].shape)}"
                  for key in expected if key in state and state[key].shape != expected[key].shape]
    unfit = [f"{key} {why}" for key in expected if key in state and state[key].shape == expected[key].shape
             and (why := unfit_value(state[key], expected[key]))]
    problems = []
    for label, keys in (("missing", missing), ("unexpected", unexpected), ("shape mismatch", mismatched),
                        ("unusable values", unfit)):
        if keys:
            shown = ", ".join(map(_shown_key, keys[:5])) + (f" (+{len(keys) - 5} more)" if len(keys) > 5 else "")
            problems.append(f"{label}: {shown}")
    return "; ".join(problems) or None


def _refuse_compressed_records(path: Path, what: str) -> None:
    """Refuses a zip checkpoint holding a compressed record, or records adding up to more than the
    file: ``torch.save`` stores records uncompressed, and a compressed one can claim gigabytes
    from a few megabytes (a decompression bomb) before any shape is checked."""
    if not zipfile.is_zipfile(path):
        return  # the legacy format stores tensors raw: their sizes are bounded by the file's
    try:
        with zipfile.ZipFile(path) as archive:
            records = archive.infolist()
    except (zipfile.BadZipFile, OSError, ValueError) as error:  # torch.save's archives always parse
        raise WeightsError(f"cannot read {what} {path}: a zip archive that does not parse ({error}); "
                           "torch.save never writes one") from None
    compressed = next((record.filename for record in records if record.compress_type != zipfile.ZIP_STORED), None)
    if compressed is not None:
        raise WeightsError(f"cannot read {what} {path}: record {_shown_key(compressed)} is compressed, which "
                           "torch.save never writes (its size would not be bounded by the file's)")
    if sum(record.file_size for record in records) > path.stat().st_size:
        raise WeightsError(f"cannot read {what} {path}: its records claim more bytes than the file holds")


def load_torch_file(path: str | Path, what: str = "weights", map_location: str | torch.device = "cpu") -> Any:
    """What a ``torch.save`` file holds, read as data (``weights_only=True``: never unpickles
    code), its memory bounded by the file's size (no compressed records).

    Raises:
        WeightsError: missing, not a regular file, a compressed or oversized zip record, objects
            other than tensors and plain containers, or not a readable file (CLI exit code 3).
    """
    try:
        path = regular_file(path, f"{what} file")
    except BadInputError as error:
        raise WeightsError(str(error)) from None
    _refuse_compressed_records(path, what)
    try:
        with warnings.catch_warnings():  # torch's own notes on old pickle protocols: the error below says it
            warnings.simplefilter("ignore")
            return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as error:  # torch raises several types for corrupt or unsafe files
        if "Weights only load failed" in str(error):  # torch's text goes on to suggest weights_only=False
            raise WeightsError(f"cannot read {what} {path}: it holds objects other than tensors, and foadx never "
                               "unpickles code; save a plain state dict (torch.save(model.state_dict(), path))") from None
        raise WeightsError(f"cannot read {what} {path}: not a readable PyTorch checkpoint ({first_line(error)})") from error


def read_state_dict(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, torch.Tensor]:
    """Reads a checkpoint's state dict safely (``load_torch_file``); a ``state_dict``, ``model``
    or ``model_state_dict`` entry is unwrapped.

    Raises:
        WeightsError: as ``load_torch_file``, or no state dict of tensors (CLI exit code 3).
    """
    path = Path(path)
    checkpoint = load_torch_file(path, "weights", map_location)
    return _unwrap_checkpoint(checkpoint, path)


def load_weights(
    model: nn.Module,
    path: str | Path,
    weights_map: list[tuple[str, str]] | None = None,
) -> None:
    """Loads a state dict strictly, naming the keys that do not fit.

    Args:
        model: the module to load into (in place); its plan records ``path`` as the weights' origin.
        path: a checkpoint read with ``torch.load(weights_only=True)``; a ``state_dict``, ``model``
            or ``model_state_dict`` entry is unwrapped.
        weights_map: (regex, replacement) pairs applied in order to every checkpoint key
            (``read_weights_map``).

    Raises:
        WeightsError: the file is missing, unreadable or holds no tensors, a map entry cannot be
            applied, or keys are missing, unexpected or of another shape (CLI exit code 3).
    """
    state = read_state_dict(path)
    if weights_map:
        state = dict(zip(rename_keys(list(state), weights_map), state.values()))
    problems = state_dict_mismatch(model, state)
    if problems:
        raise WeightsError(f"weights {path} do not fit the model: {problems}")
    model.load_state_dict(state)
    provenance = provenance_of(model)
    if provenance is not None:
        record_provenance(model, replace(provenance, plan=replace(provenance.plan, weights=str(path))))
