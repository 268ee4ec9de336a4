"""DINOv2 ViT-S/14 (facebookresearch/dinov2's ``dinov2_vits14``), to read its patch tokens.

Written out here (about fifty lines) so the user's checkpoint loads with its own key
names (``blocks.N.attn.qkv``, ``ls1.gamma``, …) and the project needs no model zoo
for it; attention is spelled out so the encoder still exports to ONNX. Weights:
https://dl.fbaipublicfiles.com/dinov2/dinov2_vits14/dinov2_vits14_pretrain.pth (Apache-2.0).
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
import torch.nn.functional as F  # noqa: N812 - the usual torch alias
from torch import nn

DINOV2_URL = "https://dl.fbaipublicfiles.com/dinov2/dinov2_vits14/dinov2_vits14_pretrain.pth"
DIM, DEPTH, HEADS, PATCH, GRID = 384, 12, 6, 14, 37  # ViT-S/14, trained at 518 px (37 × 37 patches)


class _Attention(nn.Module):
    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, dim * 3)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, d = x.shape
        q, k, v = self.qkv(x).reshape(b, n, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        attn = torch.softmax(q @ k.transpose(-2, -1) / math.sqrt(d // self.heads), dim=-1)
        return self.proj((attn @ v).transpose(1, 2).reshape(b, n, d))


class _LayerScale(nn.Module):
    def __init__(self, dim: int) -> None:
        super().__init__()
        self.gamma = nn.Parameter(torch.full((dim,), 1e-5))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gamma


class _Mlp(nn.Module):
    def __init__(self, dim: int) -> None:
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(dim, dim * 4), nn.Linear(dim * 4, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.gelu(self.fc1(x)))


class _Block(nn.Module):
    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.norm1, self.attn, self.ls1 = nn.LayerNorm(dim, eps=1e-6), _Attention(dim, heads), _LayerScale(dim)
        self.norm2, self.mlp, self.ls2 = nn.LayerNorm(dim, eps=1e-6), _Mlp(dim), _LayerScale(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.ls1(self.attn(self.norm1(x)))
        return x + self.ls2(self.mlp(self.norm2(x)))


class _PatchEmbed(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.proj = nn.Conv2d(3, DIM, PATCH, PATCH)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x).flatten(2).transpose(1, 2)


class DinoV2Small(nn.Module):
    """image [B, 3, S, S] (ImageNet-normalised, S a multiple of 14) → patch tokens [B, (S/14)², 384]."""

    embed_dim = DIM

    def __init__(self, image_size: int = 518) -> None:
        super().__init__()
        if image_size % PATCH:
            raise ValueError(f"DINOv2 takes sides that are multiples of 14, got {image_size}")
        self.grid = image_size // PATCH
        self.patch_embed = _PatchEmbed()
        self.cls_token = nn.Parameter(torch.zeros(1, 1, DIM))
        self.pos_embed = nn.Parameter(torch.zeros(1, 1 + self.grid**2, DIM))
        self.blocks = nn.ModuleList(_Block(DIM, HEADS) for _ in range(DEPTH))
        self.norm = nn.LayerNorm(DIM, eps=1e-6)

    def forward(self, x: torch.Tensor, delta_pos: torch.Tensor | None = None) -> torch.Tensor:
        t = self.patch_embed(x) + self.pos_embed[:, 1:]
        if delta_pos is not None:
            t = t + delta_pos
        t = torch.cat([self.cls_token.expand(len(t), -1, -1) + self.pos_embed[:, :1], t], dim=1)
        for block in self.blocks:
            t = block(t)
        return self.norm(t)[:, 1:]


def resample_positions(pos: torch.Tensor, grid: int) -> torch.Tensor:
    """[1, 1 + g², D] positions → [1, 1 + grid², D] (bicubic over the patch grid, as DINOv2 does)."""
    g = math.isqrt(pos.shape[1] - 1)
    if g == grid:
        return pos
    patches = pos[:, 1:].reshape(1, g, g, -1).permute(0, 3, 1, 2)
    patches = F.interpolate(patches, size=(grid, grid), mode="bicubic", align_corners=False)
    return torch.cat([pos[:, :1], patches.permute(0, 2, 3, 1).reshape(1, grid * grid, -1)], dim=1)


def load_dinov2(model: DinoV2Small, path: str | Path) -> None:
    """``dinov2_vits14_pretrain.pth`` (or a state dict with its key names) into ``model``, positions resampled."""
    file = Path(path).expanduser()
    if not file.is_file():
        raise ValueError(f"DINOv2 weights {file}: no such file (DINOv2 ViT-S/14: {DINOV2_URL})")
    state = torch.load(file, map_location="cpu", weights_only=True)
    if isinstance(state, dict) and "state_dict" in state:
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise ValueError(f"DINOv2 weights {file}: not a state dict")
    own = model.state_dict()
    if "pos_embed" in state:
        state = {**state, "pos_embed": resample_positions(state["pos_embed"], model.grid)}
    taken = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
    missing = sorted(set(own) - set(taken))
    if missing:
        raise ValueError(f"DINOv2 weights {file}: not a ViT-S/14 checkpoint ({len(missing)} tensors missing or "
                         f"of another shape, e.g. {missing[0]})")
    model.load_state_dict(taken)
