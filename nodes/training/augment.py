"""Face augmentation applied to whole batches in torch: flip, small affine, crop-like zoom, brightness, contrast.

Batch-wise (one ``affine_grid`` + ``grid_sample`` for the whole batch) costs far
less than per-image PIL transforms on 2 cores. Every draw comes from the
generator the trainer passes in, so epochs are repeatable.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F  # noqa: N812 - the usual torch alias


@dataclass(frozen=True)
class FaceAugment:
    flip: float = 0.5  # probability of a horizontal flip (faces are near-symmetric; labels do not change)
    degrees: float = 10.0  # rotation range ±
    scale: tuple[float, float] = (0.9, 1.1)  # zoom: > 1 crops in
    shift: float = 0.08  # translation range ± (fraction of the size)
    brightness: float = 0.25  # ± additive, in [0, 1] units
    contrast: float = 0.25  # × (1 ± c)
    erase: float = 0.25  # probability of blanking one random rectangle (occlusion: hands, glasses)

    def __call__(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """x float [B, C, H, W] in [0, 1] → augmented, same shape and range."""
        b = x.shape[0]

        def uniform(lo: float, hi: float) -> torch.Tensor:
            return lo + (hi - lo) * torch.rand(b, generator=generator)

        angle = uniform(-self.degrees, self.degrees) * math.pi / 180
        zoom = uniform(*self.scale)
        flip = torch.where(torch.rand(b, generator=generator) < self.flip, -1.0, 1.0)
        tx, ty = uniform(-self.shift, self.shift) * 2, uniform(-self.shift, self.shift) * 2
        cos, sin = torch.cos(angle) / zoom, torch.sin(angle) / zoom
        theta = torch.stack([torch.stack([cos * flip, -sin, tx], 1), torch.stack([sin * flip, cos, ty], 1)], 1)
        grid = F.affine_grid(theta, list(x.shape), align_corners=False)
        x = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
        mean = x.mean(dim=(1, 2, 3), keepdim=True)
        contrast = uniform(1 - self.contrast, 1 + self.contrast).view(b, 1, 1, 1)
        bright = uniform(-self.brightness, self.brightness).view(b, 1, 1, 1)
        x = (x - mean) * contrast + mean + bright
        if self.erase:
            h, w = x.shape[2:]
            hit = torch.rand(b, generator=generator) < self.erase
            eh = (uniform(0.15, 0.4) * h).long()
            ew = (uniform(0.15, 0.4) * w).long()
            y0 = (torch.rand(b, generator=generator) * (h - eh)).long()
            x0 = (torch.rand(b, generator=generator) * (w - ew)).long()
            rows = torch.arange(h).view(1, h, 1)
            cols = torch.arange(w).view(1, 1, w)
            box = ((rows >= y0.view(b, 1, 1)) & (rows < (y0 + eh).view(b, 1, 1))
                   & (cols >= x0.view(b, 1, 1)) & (cols < (x0 + ew).view(b, 1, 1)) & hit.view(b, 1, 1))
            x = x.masked_fill(box.unsqueeze(1), 0.5)
        return x.clamp_(0.0, 1.0)
