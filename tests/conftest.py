from __future__ import annotations

import os

import pytest
import torch

import foadx

if os.environ.get("PYTEST_XDIST_WORKER"):  # make test runs two workers on two cores: one torch thread each
    torch.set_num_threads(1)


@pytest.fixture(scope="session")
def digits_112() -> torch.Tensor:
    """16 real MNIST digits from the embedded demo set, prepared as MobileFaceNet input."""
    from foadx.data import calibration_images

    images = calibration_images("demo", 16, (112, 112), (0.5,) * 3, (0.5,) * 3, batch_size=16)
    return next(iter(images))


@pytest.fixture(scope="session")
def digits_32() -> torch.Tensor:
    from foadx.data import calibration_images
    from foadx.models.registry import CIFAR_MEAN, CIFAR_STD

    images = calibration_images("demo", 16, (32, 32), CIFAR_MEAN, CIFAR_STD, batch_size=16)
    return next(iter(images))


@pytest.fixture()
def mobilefacenet() -> torch.nn.Module:
    torch.manual_seed(0)
    return foadx.build_model("mobilefacenet").eval()


def realistic(spec: str, images: torch.Tensor, **kwargs) -> torch.nn.Module:
    """A zoo model whose BN statistics come from real digits, so its outputs have a realistic
    scale (freshly initialised MobileFaceNet outputs are ~1e-7 and would make parity trivial)."""
    from foadx.pruning.batchnorm import recalibrate_batchnorm

    torch.manual_seed(0)
    model = foadx.build_model(spec, **kwargs)
    recalibrate_batchnorm(model, [images], torch.device("cpu"))
    return model.eval()


@pytest.fixture(scope="session")
def realistic_mobilefacenet(digits_112) -> torch.nn.Module:
    return realistic("mobilefacenet", digits_112)


@pytest.fixture(scope="session")
def pruned_mobilefacenet(realistic_mobilefacenet, digits_112) -> torch.nn.Module:
    """FOAD at the paper's budget (63.6% fewer MACs), widths rounded to 8, BN re-estimated."""
    result = foadx.prune(realistic_mobilefacenet, digits_112, flops_target=0.636, round_to=8, recalibrate_bn=True)
    return result.model.eval()
