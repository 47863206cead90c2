"""The evaluate task: top-1 (classify) or face verification of a MODEL on data, as a report."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from foadx.tasks.checks import finite


@dataclass(frozen=True)
class EvalRequest:
    """Which data and how: ``task`` None is the data's (or the model's), ``backend`` runs an
    ONNX file (ort-cpu default, or openvino), ``far`` the false-accept rate TAR is reported at,
    ``val_split`` the held-out fraction of an unsplit folder; ``protocol`` (face) "pairs" (the
    listed pairs: 10-fold accuracy and a ROC) or "all" (a ROC over every pair of an
    identity-labelled set)."""

    data: str
    task: str | None = None
    backend: str | None = None
    val_split: float | None = None
    allow_train_overlap: bool = False
    batch_size: int = 128
    far: float = 1e-3
    seed: int = 0
    protocol: str = "pairs"


def evaluate(ref: Any, request: EvalRequest, gallery: Any = None) -> tuple[dict[str, Any], Any]:
    """Scores the resolved MODEL ``ref`` as ``request`` says; a resolved ``gallery`` model adds
    its own rows and the cross-model rows (its embeddings on the gallery side of each pair).

    Returns:
        ``(report, result)``: the ``foadx.eval`` report and the ``EvalResult`` (its ``lines()``).

    Raises:
        BadInputError, DataError: bad options, data or a task mismatch (exit 3).
    """
    from foadx.evaluate.runner import evaluate_model
    from foadx.report.kinds import envelope

    finite("far", request.far)
    finite("val_split", request.val_split)
    result = evaluate_model(ref, request.data, request.task, batch_size=request.batch_size, far_target=request.far,
                            backend=request.backend, val_split=request.val_split, seed=request.seed,
                            allow_train_overlap=request.allow_train_overlap, protocol=request.protocol,
                            gallery=gallery)
    report = envelope("foadx.eval", {"model": ref.text, "data": request.data, "task": result.task,
                                     **({"gallery_model": gallery.text} if gallery is not None else {}),
                                     **result.to_json()})
    return report, result
