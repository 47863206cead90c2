"""Margin heads for face recognition: ArcFace (additive angular) and CosFace (additive cosine).

Both normalise embeddings and class centres, so logits are scaled cosines s*cos(theta); the
target class gets a margin: ArcFace s*cos(theta + m) (Deng et al. 2019), CosFace s*(cos(theta) - m)
(Wang et al. 2018). Defaults s = 64, m = 0.5 (ArcFace) / 0.35 (CosFace). ArcFace falls back to
cos(theta) - m*sin(m) where theta + m would pass pi, as in the reference implementation.
``margin_scale`` in [0, 1] lets a trainer warm the margin up: a 128-d MobileFaceNet from scratch
often fails to converge with the full 0.5 margin at once.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from foadx.errors import BadInputError

DEFAULT_MARGINS = {"arcface": 0.5, "cosface": 0.35}


class MarginHead(nn.Module):
    """ArcFace (Deng et al., CVPR 2019) or CosFace (Wang et al., CVPR 2018) margin head over
    ``classes`` normalised class centres of ``embedding_size`` dimensions.

    Args:
        kind: "arcface" or "cosface".
        scale: s, the logit scale (> 0).
        margin: m; None takes 0.5 (ArcFace, radians, in [0, pi/2)) or 0.35 (CosFace, a cosine
            offset, in [0, 1)).

    Raises:
        BadInputError: an unknown ``kind``, or ``margin``/``scale`` out of range (CLI exit code 3).
    """

    def __init__(self, embedding_size: int, classes: int, kind: str = "arcface", scale: float = 64.0,
                 margin: float | None = None) -> None:
        super().__init__()
        if kind not in DEFAULT_MARGINS:
            raise BadInputError(f"head must be arcface or cosface, got {kind!r}")
        margin = DEFAULT_MARGINS[kind] if margin is None else margin
        if not 0 <= margin < (math.pi / 2 if kind == "arcface" else 1.0) or scale <= 0:
            raise BadInputError(f"out-of-range margin {margin} or scale {scale} for {kind}")
        self.kind, self.scale, self.margin = kind, scale, margin
        self.margin_scale = 1.0
        self.weight = nn.Parameter(torch.empty(classes, embedding_size))
        nn.init.normal_(self.weight, std=0.01)

    def forward(self, embeddings: Tensor, labels: Tensor) -> Tensor:
        """(N, D) embeddings and (N,) int64 class labels -> (N, classes) float32 logits for
        cross-entropy: s*cos(theta) with the label's margin applied (scaled by ``margin_scale``)."""
        cosine = F.linear(F.normalize(embeddings.float()), F.normalize(self.weight.float())).clamp(-1.0, 1.0)
        margin = self.margin * self.margin_scale
        target = cosine.gather(1, labels[:, None])
        if self.kind == "arcface":
            sine = torch.sqrt((1.0 - target * target).clamp_min(0.0))
            shifted = target * math.cos(margin) - sine * math.sin(margin)
            threshold = math.cos(math.pi - margin)
            shifted = torch.where(target > threshold, shifted, target - margin * math.sin(margin))
        else:
            shifted = target - margin
        return self.scale * cosine.scatter(1, labels[:, None], shifted)
