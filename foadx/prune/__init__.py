"""Structure: channel groups, feature taps, selection, surgery, artifacts, baseline criteria."""

from foadx.prune.api import CRITERIA, PruneResult, inspect_model, prune
from foadx.prune.artifact import is_artifact, load_pruned, plan_digest, read_plan, save_pruned, save_trained

__all__ = [
    "CRITERIA",
    "PruneResult",
    "inspect_model",
    "is_artifact",
    "load_pruned",
    "plan_digest",
    "prune",
    "read_plan",
    "save_pruned",
    "save_trained",
]
