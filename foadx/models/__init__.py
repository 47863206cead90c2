"""The model zoo and the registry that turns model specs into networks."""

from foadx.models.mobilefacenet import MobileFaceNet
from foadx.models.registry import ZOO, ModelSource, build_model, load_weights, model_task
from foadx.models.resnet_cifar import ResNetCifar
from foadx.models.vgg_cifar import VGG16Cifar

__all__ = [
    "ZOO",
    "MobileFaceNet",
    "ModelSource",
    "ResNetCifar",
    "VGG16Cifar",
    "build_model",
    "load_weights",
    "model_task",
]
