"""The machine a measurement was taken on, and a fingerprint to tell machines apart.

Latency numbers mean nothing without the CPU, GPU, driver, library versions and thread
settings; a regression gate comparing reports from different machines must say so.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import subprocess
from importlib import metadata
from typing import Any

import torch

from foadx._version import __version__

LIBRARIES = ("torch", "onnxruntime", "onnx", "numpy", "tensorrt")
# What must be equal for two latency reports to be comparable.
FINGERPRINT_KEYS = ("cpu", "cpu_count", "gpu", "gpu_driver", "libraries", "torch_threads")


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as info:
            for line in info:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _gpu_driver() -> str | None:
    try:
        completed = subprocess.run(
            ["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
            capture_output=True, text=True, timeout=10, check=True,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return completed.stdout.strip().splitlines()[0] if completed.stdout.strip() else None


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def describe_environment() -> dict[str, Any]:
    """The machine a measurement ran on: CPU model and count, platform, Python, GPU name, driver
    and CUDA (None without a GPU), library versions (None where not installed), torch and OMP
    threads, and its ``fingerprint``."""
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    environment = {
        "cpu": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "gpu": gpu,
        "gpu_driver": _gpu_driver() if gpu else None,
        "cuda": torch.version.cuda if gpu else None,
        "libraries": {"foadx": __version__, **{name: _version(name) for name in LIBRARIES}},
        "torch_threads": torch.get_num_threads(),
        "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
    }
    environment["fingerprint"] = fingerprint(environment)
    return environment


def fingerprint(environment: dict[str, Any]) -> str:
    """16 hex digits of SHA-256 over the ``FINGERPRINT_KEYS`` fields of ``environment``: equal
    for measurements whose timings may be compared."""
    subset = {key: environment.get(key) for key in FINGERPRINT_KEYS}
    return hashlib.sha256(json.dumps(subset, sort_keys=True).encode()).hexdigest()[:16]


def environment_differences(current: dict[str, Any], baseline: dict[str, Any]) -> list[str]:
    """Human-readable differences in the fingerprinted fields."""
    differences = []
    for key in FINGERPRINT_KEYS:
        if current.get(key) != baseline.get(key):
            differences.append(f"{key}: {baseline.get(key)!r} -> {current.get(key)!r}")
    return differences
