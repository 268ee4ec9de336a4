"""The shipped FER-2013 CNN as a frozen feature extractor on the landmark/AU nets' 112 px crop.

Why: the pixel AU nets trained on the six shared-video people learnt who is who, not the
expression (benchmarks/README.md, issue 16); the FER CNN saw ~28 k faces of thousands of
people, and its embedding carries the expression. ``CropToFer`` moves the nets' crop onto
FER's own 48 px gray template with one fixed warp (a constant sampling grid, so it exports
to ONNX), and ``FerEmbedding`` runs the CNN's convolutions (weights read from its ONNX
export) on the crop and its mirror, as the export's flip averaging does.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812 - the usual name
from torch import nn

from .reconstruction import FerTokenizer

FER_SIDE = 48
#: the shipped CNN's convolution blocks
FER_WIDTHS = (32, 64, 128, 256)


def crop_to_fer_theta(fer_meta: dict, crop_size: int = 112) -> np.ndarray:
    """The 2×3 ``affine_grid`` matrix taking FER's input pixels to the nets' crop (normalised coordinates)."""
    from ..face._align import umeyama
    from ..models._crops import CropSpec
    from ..models.facepose import crop_template

    spec = CropSpec.from_metadata(fer_meta, size=int(fer_meta["input_size"]), color="gray")
    out = spec.size
    m = umeyama(crop_template(crop_size), np.asarray(spec.template, np.float64) * out)  # crop px → FER px
    inv = np.linalg.inv(np.vstack([m, [0, 0, 1]]))[:2]  # FER pixel → crop pixel
    # in align_corners=False normalised coordinates: u = (2x + 1)/n − 1
    to_px_out = np.array([[out / 2, 0, out / 2 - 0.5], [0, out / 2, out / 2 - 0.5], [0, 0, 1]])
    to_norm_in = np.array([[2 / crop_size, 0, 1 / crop_size - 1], [0, 2 / crop_size, 1 / crop_size - 1], [0, 0, 1]])
    return (to_norm_in @ np.vstack([inv, [0, 0, 1]]) @ to_px_out)[:2]


class CropToFer(nn.Module):
    """RGB crop on the nets' template, normalised to [-1, 1] → FER's gray 48×48 on its template (same scale)."""

    def __init__(self, theta: np.ndarray | None = None, side: int = FER_SIDE) -> None:
        super().__init__()
        theta_t = torch.tensor(np.eye(2, 3) if theta is None else theta, dtype=torch.float64)[None]
        grid = F.affine_grid(theta_t, [1, 1, side, side], align_corners=False).float()
        self.register_buffer("grid", grid)  # kept in checkpoints: a model loads without FER's files
        self.register_buffer("gray", torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1), persistent=False)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        g = (image * self.gray).sum(1, keepdim=True)  # the weights sum to 1: still in [-1, 1]
        grid = self.grid.expand(image.shape[0], -1, -1, -1)
        return F.grid_sample(g, grid, mode="bilinear", padding_mode="border", align_corners=False)


class FerEmbedding(nn.Module):
    """Normalised RGB crops [B, 3, 112, 112] → the FER CNN's unit 128-D embedding [B, 128], frozen."""

    def __init__(self, theta: np.ndarray | None = None, widths: tuple[int, ...] = FER_WIDTHS) -> None:
        super().__init__()
        self.warp = CropToFer(theta)
        self.cnn = FerTokenizer(list(widths), [0.5] * 3, [0.5] * 3)
        self.dim = self.cnn.embed_dim
        for p in self.parameters():
            p.requires_grad_(False)

    @classmethod
    def from_onnx(cls, path: str | Path, crop_size: int = 112) -> FerEmbedding:
        """From a ``facegraph train fer`` export and its JSON (template, input size)."""
        path = Path(path)
        meta = json.loads(path.with_suffix(".json").read_text())
        module = cls(crop_to_fer_theta(meta, crop_size))
        module.cnn.load_onnx(path)
        return module

    def train(self, mode: bool = True) -> FerEmbedding:
        super().train(mode)
        self.cnn.eval()  # frozen: no dropout, whatever the rest of the model does
        return self

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        g = self.warp(image)
        emb = self.cnn.embed_gray(torch.cat([g, torch.flip(g, dims=[3])], 0))
        n = image.shape[0]
        return F.normalize(emb[:n] + emb[n:], dim=-1)
