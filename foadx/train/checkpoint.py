"""Training checkpoints: everything needed to continue exactly where a run stopped.

Model, head, optimizer, scheduler and AMP-scaler states plus the number of finished epochs; data
order and augmentation are derived from (seed, epoch), so no sampler or RNG stream has to be
saved for an exact resume. Written atomically, read with ``weights_only=True``.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn

import torch
from torch import nn

from foadx.atomic import write_with
from foadx.errors import BadInputError
from foadx.models.registry import load_torch_file, state_dict_mismatch, unfit_value

CHECKPOINT_FORMAT = "foadx.checkpoint/1"
CHECKPOINT_FILE = "checkpoint.pt"
"""The checkpoint ``finetune`` writes into its output folder after every epoch (``resume`` reads it)."""


def model_identity(model: nn.Module) -> str:
    """A digest of parameter names and shapes: a checkpoint only resumes the same architecture."""
    shapes = ";".join(f"{name}:{tuple(tensor.shape)}" for name, tensor in model.state_dict().items())
    return hashlib.sha256(shapes.encode()).hexdigest()[:16]


def save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    write_with(path, lambda stream: torch.save({"format": CHECKPOINT_FORMAT, **state}, stream))


def load_checkpoint(path: Path, model: nn.Module) -> dict[str, Any]:
    if not path.exists():
        raise BadInputError(f"--resume: no checkpoint at {path}")
    state = load_torch_file(path, "checkpoint")
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise BadInputError(f"{path} is not a foadx training checkpoint")
    if state.get("identity") != model_identity(model):
        raise BadInputError(
            f"{path} was written for another model (architecture digest {state.get('identity')}, "
            f"this model {model_identity(model)})"
        )
    return state


def check_resumable(state: dict[str, Any], model: nn.Module, head: nn.Module | None, path: Path) -> dict[str, Any]:
    """The settings a checkpoint was written with, once what resuming reads checks out: the
    model's (and margin head's) tensors fit (``state_dict_mismatch``), the epoch is a whole
    number >= 0, the history a list, and the optimizer's numbers and tensors are finite, dense
    values of their own (no stride-0 views that a step would write through).

    Raises:
        BadInputError: the first thing that does not (CLI exit code 3).
    """
    def refuse(what: str) -> NoReturn:
        raise BadInputError(f"{path} cannot be resumed: {what}")

    try:
        saved, history = json.loads(state["config_json"]), json.loads(state["history_json"])
    except (KeyError, TypeError, ValueError) as error:
        refuse(f"its settings or history are not readable ({type(error).__name__}: {str(error)[:100]})")
    if not isinstance(saved, dict) or not isinstance(history, list):
        refuse("its settings must be an object and its history a list")
    epoch = state.get("epoch")
    if not isinstance(epoch, int) or isinstance(epoch, bool) or epoch < 0:
        refuse(f"its epoch is {str(epoch)[:40]}, not a whole number >= 0")
    for name, module, tensors in (("model", model, state.get("model")), ("head", head, state.get("head"))):
        if module is not None:
            problems = state_dict_mismatch(module, tensors) if isinstance(tensors, dict) else "not a state dict"
            if problems:
                refuse(f"its {name}: {problems}")
    _check_optimizer(state.get("optimizer"), refuse)
    return saved


def _check_optimizer(optimizer: Any, refuse: Callable[[str], NoReturn]) -> None:
    if not isinstance(optimizer, dict) or not isinstance(optimizer.get("param_groups"), list) \
            or not isinstance(optimizer.get("state"), dict):
        refuse("its optimizer state is not one torch writes")
    for group in optimizer["param_groups"]:
        if not isinstance(group, dict):
            refuse("its optimizer state is not one torch writes")
        if any(isinstance(v, float) and not math.isfinite(v) for v in group.values()):
            refuse("its optimizer settings hold NaN or infinity")
    for entry in optimizer["state"].values():
        for tensor in (entry.values() if isinstance(entry, dict) else ()):
            if isinstance(tensor, torch.Tensor) and (unfit_value(tensor, tensor) or _shares_elements(tensor)):
                refuse("its optimizer holds a tensor that is not finite, dense values of its own")


def _shares_elements(tensor: torch.Tensor) -> bool:
    """A stride-0 view (``expand``): many elements, one memory location, which a step writes through."""
    return tensor.layout == torch.strided and tensor.numel() > 1 and 0 in tensor.stride()
