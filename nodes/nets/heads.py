"""Margin heads for training face recognition (ArcFace, CosFace) and face ID with landmark heatmap channels.

ArcFace (Deng et al. 2019) adds an angular margin m to the target class angle,
CosFace (Wang et al. 2018) subtracts a margin from its cosine; both scale the
logits by s and feed cross-entropy. ``FaceID`` joins an iResNet backbone that
takes 3 + K input channels (the RGB crop plus K Gaussian landmark heatmaps,
drawn by ``landmark_heatmaps``) with one of these heads.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F  # noqa: N812 - the usual name
from torch import nn

from .iresnet import IResNet, iresnet


class MarginHead(nn.Module):
    """Class-centre weights [classes, D]; ``forward(emb, labels)`` gives scaled logits with the margin applied."""

    def __init__(self, embedding_size: int, num_classes: int, s: float = 64.0) -> None:
        super().__init__()
        self.s = s
        self.weight = nn.Parameter(torch.empty(num_classes, embedding_size))
        nn.init.normal_(self.weight, std=0.01)

    def cosine(self, embeddings: torch.Tensor) -> torch.Tensor:
        return F.linear(F.normalize(embeddings), F.normalize(self.weight)).clamp(-1.0, 1.0)

    def margin(self, cos_target: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        cos = self.cosine(embeddings)
        if labels is None:  # inference: plain scaled cosines
            return cos * self.s
        index = torch.arange(len(labels), device=cos.device)
        target = self.margin(cos[index, labels])
        logits = cos.clone()
        logits[index, labels] = target
        return logits * self.s


class ArcFace(MarginHead):
    """cos(θ + m) for the target class (additive angular margin), with the usual easy-margin fallback."""

    def __init__(self, embedding_size: int, num_classes: int, s: float = 64.0, m: float = 0.5) -> None:
        super().__init__(embedding_size, num_classes, s)
        self.set_margin(m)

    def set_margin(self, m: float) -> None:
        """Change m (a margin warm-up starts from 0: from scratch, a full margin stalls small data sets)."""
        self.m = m
        self.cos_m, self.sin_m = math.cos(m), math.sin(m)
        self.theta = math.cos(math.pi - m)  # beyond this, θ + m would pass π
        self.sinmm = math.sin(math.pi - m) * m

    def margin(self, cos_target: torch.Tensor) -> torch.Tensor:
        sin = torch.sqrt((1.0 - cos_target**2).clamp(min=0.0))
        with_margin = cos_target * self.cos_m - sin * self.sin_m
        return torch.where(cos_target > self.theta, with_margin, cos_target - self.sinmm)


class CosFace(MarginHead):
    """cos θ − m for the target class (additive cosine margin)."""

    def __init__(self, embedding_size: int, num_classes: int, s: float = 64.0, m: float = 0.4) -> None:
        super().__init__(embedding_size, num_classes, s)
        self.m = m

    def set_margin(self, m: float) -> None:
        self.m = m

    def margin(self, cos_target: torch.Tensor) -> torch.Tensor:
        return cos_target - self.m


def landmark_heatmaps(points: torch.Tensor, size: int = 112, sigma: float = 2.0) -> torch.Tensor:
    """Gaussian heatmaps float[N,K,size,size] (peak 1) for landmark pixels ``points`` [N,K,2] in crop coordinates."""
    coords = torch.arange(size, dtype=points.dtype, device=points.device)
    dx = coords[None, None, None, :] - points[..., 0, None, None]
    dy = coords[None, None, :, None] - points[..., 1, None, None]
    return torch.exp(-(dx**2 + dy**2) / (2 * sigma**2))


class FaceID(nn.Module):
    """iResNet over RGB (+ K heatmap channels) → embedding; the margin head is used for training only."""

    def __init__(self, backbone: IResNet, head: MarginHead | None = None, heatmap_sigma: float = 2.0) -> None:
        super().__init__()
        self.backbone = backbone
        self.head = head
        self.heatmap_sigma = heatmap_sigma

    @property
    def landmarks(self) -> int:
        return self.backbone.in_channels - 3

    def inputs(self, images: torch.Tensor, points: torch.Tensor | None = None) -> torch.Tensor:
        """Stack the image [N,3,S,S] with heatmaps of ``points`` [N,K,2] when the backbone expects them."""
        if self.landmarks == 0:
            return images
        if points is None or points.shape[1] != self.landmarks:
            got = None if points is None else points.shape[1]
            raise ValueError(f"this model needs {self.landmarks} landmarks per face, got {got}")
        maps = landmark_heatmaps(points.to(images.dtype), images.shape[-1], self.heatmap_sigma)
        return torch.cat([images, maps], dim=1)

    def forward(self, images: torch.Tensor, points: torch.Tensor | None = None,
                labels: torch.Tensor | None = None) -> torch.Tensor:
        emb = self.backbone(self.inputs(images, points))
        if labels is not None and self.head is not None:
            return self.head(emb, labels)
        return emb


def face_id(depth: str = "r50", landmarks: int = 0, num_classes: int | None = None, head: str = "arcface",
            **backbone_kw) -> FaceID:
    """A FaceID model: ``face_id("r50", landmarks=68, num_classes=10_000, head="cosface")``."""
    backbone = iresnet(depth, in_channels=3 + landmarks, **backbone_kw)
    margin = None
    if num_classes:
        cls = {"arcface": ArcFace, "cosface": CosFace}[head]
        margin = cls(backbone.num_features, num_classes)
    return FaceID(backbone, margin)
