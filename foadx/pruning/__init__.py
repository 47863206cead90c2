"""Structure: channel groups, feature taps, criteria, selection, surgery, artifacts."""

from foadx.pruning.api import PruneResult, inspect_model, prune
from foadx.pruning.artifact import (
    is_artifact,
    load_pruned,
    read_plan,
    record_training,
    save_artifact,
    write_artifact_files,
)
from foadx.pruning.criteria import CRITERIA

__all__ = [
    "CRITERIA",
    "PruneResult",
    "inspect_model",
    "is_artifact",
    "load_pruned",
    "prune",
    "read_plan",
    "record_training",
    "save_artifact",
    "write_artifact_files",
]
