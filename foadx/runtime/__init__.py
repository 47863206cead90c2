"""Runtimes behind one interface: load a model on a backend, run a batch, time an iteration.

Knows nothing about pruning or export: it runs what it is given (an ONNX file or a module).
"""

from foadx.runtime.base import Session, SessionOptions
from foadx.runtime.parity import (
    CaseComparison,
    InputBatch,
    OutputComparison,
    Tolerances,
    compare_output,
    compare_sessions,
    comparison_inputs,
)
from foadx.runtime.registry import BACKENDS, get_backend, open_session
from foadx.runtime.timing import TimingSettings, measure_interleaved, summarize

__all__ = [
    "BACKENDS",
    "CaseComparison",
    "InputBatch",
    "Tolerances",
    "compare_sessions",
    "comparison_inputs",
    "OutputComparison",
    "Session",
    "SessionOptions",
    "TimingSettings",
    "compare_output",
    "get_backend",
    "measure_interleaved",
    "open_session",
    "summarize",
]
