"""``FhogFerAUNet``: 17 AU intensities from FHOG of the OpenFace-aligned face and the FER CNN's embedding.

Why this and not pixels alone: six people (the shared videos) are too few for a pixel net to
learn AUs rather than identity (held-out mean r −0.06; benchmarks/README.md, issue 16). FHOG
of the face aligned OpenFace's way is what OpenFace's own AU models read, and the frozen FER
CNN adds expression features learnt from thousands of FER-2013 people. What is trained is one
linear layer over both, with the AU loss (SmoothL1 + 1 − CCC) and an L2 penalty: a small model
for small data. The FHOG comes in as a second input (``nodes/face/_fhog.aligned_fhog``: it
needs the face's 68 landmarks), the crop as the first.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from .fer_features import FerEmbedding

HOG_DIM = 4464  # 12 × 12 cells × 31


class FhogFerAUNet(nn.Module):
    """(crop [B, 3, 112, 112] in [-1, 1], FHOG [B, 4464]) → AU intensities [B, A] (unclipped)."""

    def __init__(self, num_aus: int = 17, fer_weight: float = 2.0, fer: FerEmbedding | None = None) -> None:
        super().__init__()
        self.fer = fer or FerEmbedding()
        self.fer_weight = float(fer_weight)
        self.register_buffer("hog_mean", torch.zeros(HOG_DIM))
        self.register_buffer("fer_mean", torch.zeros(self.fer.dim))
        self.register_buffer("fer_scale", torch.ones(self.fer.dim))
        self.head = nn.Linear(HOG_DIM + self.fer.dim, num_aus)
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)

    def fer_features(self, image: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return self.fer(image)

    def set_normalisation(self, hog: np.ndarray, fer: np.ndarray, targets: np.ndarray) -> None:
        """Centre both feature sets on the training rows and weigh FER's against FHOG's typical value.

        Each FER dimension is z-scored and scaled to ``fer_weight`` × FHOG's overall standard
        deviation, so the one L2 penalty treats both alike; the bias starts at the mean target.
        """
        hog_t, fer_t = torch.as_tensor(hog, dtype=torch.float32), torch.as_tensor(fer, dtype=torch.float32)
        with torch.no_grad():
            self.hog_mean.copy_(hog_t.mean(0))
            self.fer_mean.copy_(fer_t.mean(0))
            self.fer_scale.copy_(self.fer_weight * hog_t.std() / fer_t.std(0).clamp(min=1e-6))
            self.head.bias.copy_(torch.as_tensor(targets, dtype=torch.float32).mean(0))

    def from_parts(self, fer: torch.Tensor, fhog: torch.Tensor) -> torch.Tensor:
        """AUs from the FER embedding [B, 128] and FHOG [B, 4464] (training reuses each crop's embedding)."""
        return self.head(torch.cat([fhog - self.hog_mean, (fer - self.fer_mean) * self.fer_scale], 1))

    def forward(self, image: torch.Tensor, fhog: torch.Tensor) -> torch.Tensor:
        return self.from_parts(self.fer_features(image), fhog)

    def l2(self) -> torch.Tensor:
        """The head's squared weights (what the L2 penalty sums)."""
        return (self.head.weight ** 2).sum()


class ClippedAUs(nn.Module):
    """The export: the net's intensities clipped to OpenFace's 0–5."""

    def __init__(self, model: FhogFerAUNet) -> None:
        super().__init__()
        self.model = model

    def forward(self, image: torch.Tensor, fhog: torch.Tensor) -> torch.Tensor:
        return self.model(image, fhog).clamp(0.0, 5.0)
