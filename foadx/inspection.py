"""What ``foadx inspect`` shows for any resolved MODEL: a network's channel groups, widths and
costs (with its plan when pruned); a file's input, outputs, opset and foadx metadata."""

from __future__ import annotations

from collections import Counter
from typing import Any

import torch

from foadx.pruning import inspect_model
from foadx.provenance import provenance_of
from foadx.resolve import ModelRef


def inspect_ref(ref: ModelRef) -> dict[str, Any]:
    info = {"model": ref.text, **ref.describe()}
    if ref.runs_in_torch:
        module = ref.module()
        info.update(inspect_model(module, torch.zeros(2, *ref.input_chw)))
        plan = provenance_of(module).plan
        info["pruned_groups"] = {group.name: [group.channels, len(group.kept)] for group in plan.groups}
        info["criterion"] = plan.criterion
        return info
    if ref.kind == "onnx":
        return {**info, **_onnx_summary(ref)}
    from foadx.export.tensorrt import read_sidecar

    return {**info, "sidecar": read_sidecar(ref.path)}


def _onnx_summary(ref: ModelRef) -> dict[str, Any]:
    import onnx

    from foadx.export.metadata import float_parameter_count, metadata_of

    graph = onnx.load(str(ref.path))
    return {
        "opset": next((entry.version for entry in graph.opset_import if entry.domain in ("", "ai.onnx")), None),
        "outputs": [output.name for output in graph.graph.output],
        "params": float_parameter_count(graph),
        "op_counts": dict(Counter(node.op_type for node in graph.graph.node)),
        "metadata": metadata_of(graph),
        "file_bytes": ref.path.stat().st_size,
    }
