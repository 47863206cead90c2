from __future__ import annotations

import pytest
import torch

import foadx


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
