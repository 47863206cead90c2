"""Training checkpoints: everything needed to continue exactly where a run stopped.

Model, head, optimizer, scheduler and AMP-scaler states plus the number of finished epochs; data
order and augmentation are derived from (seed, epoch), so no sampler or RNG stream has to be
saved for an exact resume. Written atomically, read with ``weights_only=True``.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import torch
from torch import nn

from foadx.atomic import write_with
from foadx.errors import BadInputError
from foadx.models.registry import load_torch_file

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
