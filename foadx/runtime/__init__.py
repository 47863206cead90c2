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
from foadx.runtime.registry import (
    BACKENDS,
    Backend,
    backend_help,
    backend_names,
    check_available,
    check_profiling_backend,
    get_backend,
    open_session,
    width_step,
)
from foadx.runtime.timing import TimingSettings, measure_interleaved, summarize

__all__ = [
    "BACKENDS",
    "Backend",
    "CaseComparison",
    "InputBatch",
    "Tolerances",
    "compare_sessions",
    "comparison_inputs",
    "OutputComparison",
    "Session",
    "SessionOptions",
    "TimingSettings",
    "backend_help",
    "backend_names",
    "check_available",
    "check_profiling_backend",
    "compare_output",
    "get_backend",
    "measure_interleaved",
    "open_session",
    "summarize",
    "width_step",
]
