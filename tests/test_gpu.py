"""GPU paths, each checked against the CPU: FOAD's similarity and kept sets, one AMP fine-tune
step, and a latency table on torch-cuda. Marked ``gpu``; they skip where torch sees no CUDA GPU.
(torch-cuda and torch-cuda-graph against eager: tests/test_runtime.py; torch-compile:
tests/test_torch_compile.py; the whole FOAD plan on both devices: tests/test_prune.py.)"""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

import foadx
from foadx.data.labeled import open_labeled
from foadx.foad.greedy import select_k
from foadx.foad.similarity import SimilarityAccumulator
from foadx.train import FinetuneConfig, finetune

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]

TINY = f"{Path(__file__).parent / 'fixtures' / 'tiny_net.py'}:tiny_net"


def test_foad_similarity_and_kept_sets_on_cuda_equal_the_cpu():
    maps = torch.randn(64, 48, 14, 14, generator=torch.Generator().manual_seed(0))
    on_cpu, on_cuda = SimilarityAccumulator(48), SimilarityAccumulator(48)
    for start in range(0, 64, 16):
        on_cpu.add([maps[start:start + 16]])
        on_cuda.add([maps[start:start + 16].cuda()])
    cpu, cuda = on_cpu.similarity(), on_cuda.similarity()
    assert cuda.dtype == torch.float64 and cuda.device.type == "cpu"
    torch.testing.assert_close(cuda, cpu, rtol=1e-12, atol=1e-12)  # float64 on both devices
    for k in (8, 16, 24, 40):
        assert select_k(cuda, k) == select_k(cpu, k)


def test_one_amp_finetune_step_on_cuda(tmp_path):
    torch.manual_seed(0)
    model = foadx.build_model(TINY, input_size=(16, 16), classes=10)
    before = [parameter.detach().clone() for parameter in model.parameters()]
    config = FinetuneConfig(amp=True, channels_last=True, batch_size=32, steps_per_epoch=1, lr=0.01)
    (record,) = finetune(model, open_labeled("demo", "train"), tmp_path, config, device=torch.device("cuda"))
    assert record["images"] == 32 and math.isfinite(record["loss"]) and record["images_per_s"] > 0
    after = list(model.parameters())
    assert all(parameter.device.type == "cuda" for parameter in after)
    assert any(not torch.equal(old, new.detach().cpu()) for old, new in zip(before, after))


def test_latency_profile_on_torch_cuda():
    from foadx.latency import profile

    torch.manual_seed(0)
    table = profile(foadx.build_model(TINY, input_size=(16, 16)).eval(), "torch-cuda")
    assert table.backend == "torch-cuda" and table.round_to == 8 and table.batch == 1
    assert table.network_ms > 0 and table.entries and min(table.entries.values()) > 0
    assert [check["fraction"] for check in table.checks] == [0.75, 0.5, 0.25]
