"""Turning ``--device auto|cpu|cuda[:N]`` into a torch.device, with a clear error when absent."""

from __future__ import annotations

import torch

from foadx.errors import BadInputError, MissingDependencyError


def resolve_device(device: str | torch.device | None) -> torch.device:
    if device is None or str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except RuntimeError as error:
        raise BadInputError(f"unknown device {device!r}: use auto, cpu or cuda") from error
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise MissingDependencyError(
            f"--device {device} asked for a GPU but torch sees none "
            "(no CUDA device or a CPU-only torch build); use --device cpu"
        )
    if resolved.type not in ("cpu", "cuda"):
        raise BadInputError(f"unsupported device {device!r}: use auto, cpu or cuda")
    return resolved


def set_compute_threads(threads: int | None) -> None:
    """Sets torch's intra-op CPU threads for this process (pruning, fine-tuning, profiling);
    None leaves torch's default (one per physical core). Benchmarks set their runtime's own."""
    if threads is not None:
        torch.set_num_threads(threads)
