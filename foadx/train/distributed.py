"""Process-group handling for ``torchrun``: NCCL on GPUs, gloo on CPUs; rank 0 writes.

Without ``torchrun`` (no WORLD_SIZE in the environment) everything is a single process.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as torch_dist
from torch import nn

from foadx.device import resolve_device


@dataclass
class Distributed:
    rank: int
    world: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @classmethod
    def from_environment(cls, device: torch.device | str | None = None) -> "Distributed":
        world = int(os.environ.get("WORLD_SIZE", "1"))
        if world == 1:
            return cls(0, 1, resolve_device(device))
        local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        target = resolve_device(device)
        if target.type == "cuda":
            target = torch.device("cuda", local_rank)
            torch.cuda.set_device(target)
        if not torch_dist.is_initialized():
            torch_dist.init_process_group("nccl" if target.type == "cuda" else "gloo")
        return cls(torch_dist.get_rank(), torch_dist.get_world_size(), target)

    def wrap(self, model: nn.Module) -> nn.Module:
        if self.world == 1:
            return model
        device_ids = [self.device.index] if self.device.type == "cuda" else None
        return nn.parallel.DistributedDataParallel(model, device_ids=device_ids)

    def sum(self, values: list[float]) -> list[float]:
        if self.world == 1:
            return values
        tensor = torch.tensor(values, dtype=torch.float64, device=self.device)
        torch_dist.all_reduce(tensor)
        return tensor.tolist()

    def barrier(self) -> None:
        if self.world > 1:
            torch_dist.barrier()

    def close(self) -> None:
        if self.world > 1 and torch_dist.is_initialized():
            torch_dist.destroy_process_group()
