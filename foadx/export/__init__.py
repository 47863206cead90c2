"""ONNX export, graph passes, metadata, deployability checks and parity verification."""

from foadx.export.metadata import load_onnx, metadata_of
from foadx.export.onnx_export import ExportError, ExportResult, export_onnx
from foadx.export.verify import ParityFailedError, VerifyReport, verify_onnx
from foadx.runtime.parity import DEFAULT_ATOL, DEFAULT_RTOL

__all__ = [
    "DEFAULT_ATOL",
    "DEFAULT_RTOL",
    "ExportError",
    "ExportResult",
    "ParityFailedError",
    "VerifyReport",
    "export_onnx",
    "load_onnx",
    "metadata_of",
    "verify_onnx",
]
