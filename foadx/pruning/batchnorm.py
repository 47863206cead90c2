"""Re-estimating BatchNorm running statistics after pruning (no gradient steps).

Removing channels shifts the statistics of every layer downstream, and the stored running
mean/var no longer describe them; one pass over calibration images with cumulative averaging
(momentum=None) replaces them with the pruned network's own.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn

from foadx.errors import BadInputError


def refuse_recalibration_without_batchnorm(model: nn.Module) -> None:
    """Refuses ``--recalibrate-bn`` for a network with no BatchNorm layer, before any work: an
    ONNX export folds BN into the preceding convolutions, so an imported file usually has none.

    Raises:
        BadInputError: ``model`` holds no BatchNorm layer (CLI exit code 3).
    """
    if not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules()):
        raise BadInputError("--recalibrate-bn: the model has no BatchNorm layer to recalibrate (an ONNX export folds "
                            "BN into its convolutions); fine-tune it instead, which trains the folded conv biases")


def recalibrate_batchnorm(model: nn.Module, batches: Iterable[torch.Tensor], device: torch.device) -> int:
    """Resets and re-estimates every BN layer's running stats; returns the images seen."""
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not norms:
        return 0
    saved_momentum = [m.momentum for m in norms]
    was_training = model.training
    model.eval()
    for norm in norms:
        norm.reset_running_stats()
        norm.momentum = None
        norm.train()
    images = 0
    try:
        with torch.no_grad():
            for batch in batches:
                model(batch.to(device))
                images += batch.shape[0]
    finally:
        for norm, momentum in zip(norms, saved_momentum):
            norm.momentum = momentum
        model.train(was_training)
    return images
