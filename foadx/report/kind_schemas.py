"""JSON Schemas of the report kinds that have no schema file (parity, prune, eval, sweep,
pipeline, engine sidecar): the types of every field their Markdown and figures read, so a report
with a wrong type, a missing field or a null where a number belongs is refused before rendering
(``foadx.report.schema.validate_report``) instead of failing inside it. Fields a renderer does
not read are left free; a report may carry more than its schema names.
"""

from __future__ import annotations

from typing import Any

NUMBER = {"type": "number"}
NUMBER_OR_NULL = {"type": ["number", "null"]}
INTEGER = {"type": "integer"}
TEXT = {"type": "string"}
FLAG = {"type": "boolean"}
INTERVAL_OR_NULL = {"type": ["array", "null"], "items": {"type": "number", "exclusiveMinimum": 0}, "minItems": 2,
                    "maxItems": 2}  # [lo, hi]; its order is checked by foadx.report.speedup


def _object(required: dict[str, Any], optional: dict[str, Any] | None = None) -> dict[str, Any]:
    """An object that must hold ``required`` (name -> schema) and may hold ``optional``."""
    return {"type": "object", "required": sorted(required), "properties": {**required, **(optional or {})}}


def _list(items: dict[str, Any]) -> dict[str, Any]:
    return {"type": "array", "items": items}


_BEFORE_AFTER = _object({"before": NUMBER, "after": NUMBER, "reduction": NUMBER})

PARITY = _object(
    {"path": TEXT, "passed": FLAG, "strict": FLAG, "atol": NUMBER, "rtol": NUMBER,
     "worst": _object({"smallest_passing_atol": NUMBER, "smallest_passing_rtol": NUMBER}),
     "cases": _list(_object(
         {"inputs": TEXT, "batch": INTEGER,
          "outputs": _list(_object({"name": TEXT, "max_abs": NUMBER, "cosine": NUMBER, "mismatches": INTEGER,
                                    "elements": INTEGER, "passed": FLAG},
                                   {"rms_reference": NUMBER, "scaled_error": NUMBER, "min_sample_cosine": NUMBER}))},
         {"agreement_pct": NUMBER_OR_NULL})),
     "checks": _list(_object({"name": TEXT, "passed": FLAG, "detail": TEXT}))},
    {"failures": _list(TEXT),
     "tolerances": {"type": ["object", "null"],
                    "properties": {"error_stat": TEXT, "min_cosine": NUMBER_OR_NULL,
                                   "max_scaled_error": NUMBER_OR_NULL}}})

PRUNE = _object(
    {"criterion": TEXT, "plan_digest": TEXT, "params": _BEFORE_AFTER, "macs": _BEFORE_AFTER,
     "weights_bytes": _BEFORE_AFTER,
     "groups": _list(_object({"name": TEXT, "before": INTEGER, "after": INTEGER, "coupled": FLAG}))},
    {"latency": {"type": ["object", "null"],
                 "required": ["target", "backend", "batch", "measured_ms", "measured_p90_ms", "predicted_ms",
                              "unpruned_ms", "rounds"],
                 "properties": {"measured_ms": NUMBER, "measured_p90_ms": NUMBER, "predicted_ms": NUMBER,
                                "unpruned_ms": NUMBER, "rounds": {"type": "array"}}}})

EVAL = _object({"model": TEXT, "data": TEXT, "task": TEXT, "backend": TEXT},
               {"sets": {"type": "object", "additionalProperties": _object({"accuracy": NUMBER})},
                "roc": _list(_object({"set": TEXT, "gallery": TEXT, "probe": TEXT, "cross": FLAG, "eer": NUMBER,
                                      "auc": NUMBER, "curve": _list(_list(NUMBER))}))})

SWEEP = _object(
    {"model": TEXT, "backend": TEXT, "batch": INTEGER,
     "unpruned": _object({"accuracy": NUMBER_OR_NULL, "latency_ms": NUMBER, "macs": NUMBER_OR_NULL}),
     "points": _list(_object({"criterion": TEXT, "budget": NUMBER, "reachable": FLAG},
                             {"accuracy": NUMBER_OR_NULL, "latency_ms": NUMBER_OR_NULL, "speedup": NUMBER_OR_NULL,
                              "macs": NUMBER_OR_NULL, "speedup_interval": INTERVAL_OR_NULL,
                              "latency_interval_ms": INTERVAL_OR_NULL,
                              "speedup_coverage": {"type": ["number", "null"], "minimum": 0, "maximum": 1},
                              "speedup_verdict": {"type": ["string", "null"]}}))},
    {"accuracy_axis": TEXT})

PIPELINE = _object({"stages": _list(_object({"stage": TEXT, "status": TEXT, "reason": TEXT},
                                            {"key_figure": TEXT, "file": TEXT}))})

ENGINE = _object({"engine": TEXT, "input": TEXT, "input_chw": _list(INTEGER)})
