"""Fine-tuning: the loop, margin heads, checkpoints and DDP."""

from foadx.train.heads import MarginHead
from foadx.train.loop import CHECKPOINT_FILE, METRICS_FILE, FinetuneConfig, finetune

__all__ = ["CHECKPOINT_FILE", "METRICS_FILE", "FinetuneConfig", "MarginHead", "finetune"]
