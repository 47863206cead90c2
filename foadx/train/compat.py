"""Backward-compatible training (BCT; Shen, Xiong, Xia and Soatto, "Towards Backward-Compatible
Representation Learning", CVPR 2020): the new model's embeddings are also classified by the old
model's classifier, frozen, so they stay in the old embedding space and a gallery enrolled with the
old model can be searched with the new one's probes.

The old classifier is the margin head (ArcFace / CosFace) the old model was fine-tuned with. foadx
keeps it in that fine-tune folder's ``checkpoint.pt`` (``head``, with the run's settings); the
artifact (plan + weights) holds only the network. The influence loss is that head's own margin
loss (the loss the old model was trained with), on the samples of the classes it knows.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor

from foadx.errors import BadInputError
from foadx.models.registry import load_torch_file, unfit_value
from foadx.train.checkpoint import CHECKPOINT_FILE
from foadx.train.heads import MarginHead


def load_old_classifier(folder: str | Path) -> MarginHead:
    """The frozen margin head of the face fine-tune in ``folder`` (its ``checkpoint.pt``).

    Returns:
        A ``MarginHead`` of (classes, D) centres, the old run's kind, scale and margin, full
        margin, no gradients, in eval mode.

    Raises:
        BadInputError: no readable checkpoint, or one without a margin head (not a face fine-tune).
    """
    path = Path(folder) / CHECKPOINT_FILE
    if not path.is_file():
        raise BadInputError(f"{folder} holds no {CHECKPOINT_FILE}: --compatible-with needs the folder of a face "
                            "fine-tune (its margin head is the old classifier); an embedding-only teacher can be "
                            "used with --distill-from")
    state = load_torch_file(path, "checkpoint")
    try:
        config = json.loads(state["config_json"])
        weight = state["head"]["weight"]
    except Exception as error:  # torch, json and missing keys raise several types
        raise BadInputError(f"{path} is not a face fine-tune checkpoint with a margin head "
                            f"({type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''})") from error
    if not isinstance(weight, Tensor) or weight.ndim != 2:
        raise BadInputError(f"{path}: the margin head's centres are not a (classes, D) matrix")
    if weight.numel() * weight.element_size() > path.stat().st_size:  # a stride-0 view claims what the file lacks
        raise BadInputError(f"{path}: the margin head claims {tuple(weight.shape)} centres, more than the file holds")
    problem = unfit_value(weight, torch.empty(0))
    if problem:
        raise BadInputError(f"{path}: the margin head's centres are {problem}")
    if not isinstance(config, dict):
        raise BadInputError(f"{path}: its settings are not an object")
    try:
        head = MarginHead(weight.shape[1], weight.shape[0], config.get("head", "arcface"),
                          float(config.get("scale", 64.0)), config.get("margin"))
    except (TypeError, ValueError) as error:
        raise BadInputError(f"{path}: its margin head settings are not usable ({str(error)[:120]})") from None
    head.weight.data.copy_(weight.float())
    head.requires_grad_(False)
    return head.eval()


def influence_loss(old_classifier: MarginHead, embeddings: Tensor, labels: Tensor) -> Tensor:
    """BCT's influence loss: cross-entropy of the old classifier's margin logits for the new
    (N, D) embeddings, over the samples whose (N,) labels the old classifier knows (zero when
    none does)."""
    known = labels < old_classifier.weight.shape[0]
    if not bool(known.any()):
        return embeddings.sum() * 0.0
    return F.cross_entropy(old_classifier(embeddings[known], labels[known]).float(), labels[known])


def check_old_classifier(old_classifier: MarginHead, embedding_size: int) -> None:
    """The old classifier must take the student's embeddings.

    Raises:
        BadInputError: another embedding size.
    """
    width = old_classifier.weight.shape[1]
    if width != embedding_size:
        raise BadInputError(f"the old classifier takes {width}-d embeddings, the model outputs {embedding_size}-d: "
                            "backward-compatible training needs one embedding size")
