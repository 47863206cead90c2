"""``evaluate_model``: one entry point for ``foadx eval`` and per-epoch evaluation in training.

A module runs on torch (CPU), an ONNX file in onnxruntime with the preprocessing its foadx
metadata records; both through the runtime layer.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from torch import nn

from foadx.data.labeled import demo_pairs, open_labeled
from foadx.data.verification import read_pairs
from foadx.errors import BadInputError
from foadx.evaluate.api import Preprocessing, top1, verification
from foadx.evaluate.verification import VerificationResult
from foadx.provenance import require_provenance
from foadx.resolve import ModelRef
from foadx.runtime import open_session


@dataclass
class EvalResult:
    task: str
    backend: str
    classification: dict[str, float] | None = None
    verification: VerificationResult | None = None

    def summary(self) -> dict[str, Any]:
        if self.classification is not None:
            return {"top1": self.classification["top1"]}
        result = self.verification
        return {"verification_accuracy": result.accuracy, "verification_std": result.accuracy_std, "tar": result.tar}

    def to_json(self) -> dict[str, Any]:
        body = self.classification if self.classification is not None else self.verification.to_json()
        return {"backend": self.backend, **body}

    def line(self) -> str:
        if self.classification is not None:
            return f"top-1 {self.classification['top1']:.4f} on {self.classification['count']} images ({self.backend})"
        result = self.verification
        line = (f"verification accuracy {result.accuracy:.4f} +- {result.accuracy_std:.4f} over {result.folds} folds "
                f"of {result.pairs} pairs, mean threshold {sum(result.thresholds) / len(result.thresholds):.2f}")
        if result.tar is not None:
            line += f"; TAR {result.tar:.4f} +- {result.tar_std:.4f} at FAR {result.far:.2e} (target {result.far_target:g})"
        return line + f" ({self.backend})"


def _runner(target: nn.Module | ModelRef) -> tuple[Any, Preprocessing, str]:
    """A session and the preprocessing it expects: a module on torch (CPU); an ONNX file in
    onnxruntime with the preprocessing its foadx metadata records."""
    if isinstance(target, ModelRef) and not target.runs_in_torch:
        if target.kind != "onnx" or target.source is None:
            raise BadInputError(f"{target.text} carries no foadx preprocessing metadata (input size, mean, std); "
                                "evaluate a foadx-exported ONNX file, a model or an artifact")
        source = target.source
        session = open_session("ort-cpu", target.path)
        return session, Preprocessing(tuple(target.input_chw[1:]), tuple(source.mean), tuple(source.std)), "ort-cpu"
    module = target.module() if isinstance(target, ModelRef) else target
    source = require_provenance(module, "evaluation").source
    session = open_session("torch-cpu", module.eval(), input_shape=(None, 3, *source.input_size))
    return session, Preprocessing(tuple(source.input_size), tuple(source.mean), tuple(source.std)), "torch-cpu"


def evaluate_model(target: nn.Module | ModelRef, data: str, task: str, *, batch_size: int = 128,
                   far_target: float = 1e-3) -> EvalResult:
    if task not in ("classify", "face"):
        raise BadInputError(f"--task must be classify or face, got {task!r}")
    session, preprocess, backend = _runner(target)

    def run(batch):
        return session.run(batch)[0]

    if task == "classify":
        return EvalResult(task, backend, classification=top1(run, open_labeled(data, "test"), preprocess, batch_size))
    if data == "demo":
        images, pairs = demo_pairs()
    else:
        images, pairs = None, read_pairs(data)
    return EvalResult(task, backend, verification=verification(run, pairs, preprocess, images, batch_size, far_target))
