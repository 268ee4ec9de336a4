"""A small facial-emotion CNN for FER-2013-style inputs (48×48 gray or 224×224 RGB), with an optional embedding.

Conv blocks (2× conv3×3-BN-ReLU, max-pool) widen as they shrink the image; global
average pooling feeds an optional embedding layer (128-D by default) and the class
head. The export includes the softmax and an L2-normalised embedding, so the
``expression`` node only has to prepare crops.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F  # noqa: N812 - the usual torch alias
from torch import nn

from ._export import export
from .resnet_blocks import BasicBlock

FER_LABELS = ["angry", "disgust", "fear", "happy", "sad", "surprise", "neutral"]


@dataclass
class ExpressionConfig:
    size: int = 48
    color: str = "gray"  # gray (1 channel), rgb or bgr (3 channels)
    classes: int = 7
    width: int = 32
    blocks: int = 3
    embedding_dim: int = 128  # 0: no embedding output
    dropout: float = 0.25
    backbone: str = "cnn"  # cnn (the conv blocks above), resnet18, or timm:<name> where timm is installed
    flip_tta: bool = False  # the export averages the face and its mirror image (one batch, twice the rows)


def _block(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, padding=1, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
        nn.Conv2d(cout, cout, 3, padding=1, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
        nn.MaxPool2d(2),
    )


def _resnet18(channels: int, width: int) -> tuple[nn.Module, int]:
    """ResNet-18's [2, 2, 2, 2] layout with a 3×3 stem and no early pooling, as small face images need."""
    widths = [width * 2**i for i in range(4)]
    layers: list[nn.Module] = [nn.Conv2d(channels, widths[0], 3, 1, 1, bias=False), nn.BatchNorm2d(widths[0]),
                               nn.ReLU(inplace=True)]
    cin = widths[0]
    for i, cout in enumerate(widths):
        layers += [BasicBlock(cin, cout, 1 if i == 0 else 2), BasicBlock(cout, cout, 1)]
        cin = cout
    return nn.Sequential(*layers), cin


class _Timm(nn.Module):
    """A timm backbone's pooled features (ImageNet weights only when the user has them cached)."""

    def __init__(self, name: str, channels: int) -> None:
        super().__init__()
        import timm

        self.net = timm.create_model(name, pretrained=False, num_classes=0, in_chans=channels)
        self.dim = int(self.net.num_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)[:, :, None, None]


def _backbone(cfg: ExpressionConfig, channels: int) -> tuple[nn.Module, int]:
    if cfg.backbone == "cnn":
        layers, cin = [], channels
        for i in range(cfg.blocks):
            cout = cfg.width * 2**i
            layers.append(_block(cin, cout))
            cin = cout
        return nn.Sequential(*layers), cin
    if cfg.backbone == "resnet18":
        return _resnet18(channels, cfg.width)
    if cfg.backbone.startswith("timm:"):
        net = _Timm(cfg.backbone[5:], channels)
        return net, net.dim
    raise ValueError(f"unknown backbone {cfg.backbone!r} (cnn, resnet18 or timm:<name>)")


class ExpressionNet(nn.Module):
    """x [B, C, size, size] → logits [B, classes] (and the raw embedding [B, E] when embedding_dim > 0)."""

    def __init__(self, config: ExpressionConfig | None = None, **overrides: Any) -> None:
        super().__init__()
        self.config = cfg = config or ExpressionConfig(**overrides)
        channels = 1 if cfg.color == "gray" else 3
        self.features, cin = _backbone(cfg, channels)
        self.drop = nn.Dropout(cfg.dropout)
        self.embed = nn.Linear(cin, cfg.embedding_dim) if cfg.embedding_dim else None
        self.head = nn.Linear(cfg.embedding_dim or cin, cfg.classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        feat = self.features(x).mean(dim=(2, 3))
        if self.embed is None:
            return self.head(self.drop(feat))
        emb = self.embed(feat)
        return self.head(self.drop(F.relu(emb))), emb


class _Exported(nn.Module):
    def __init__(self, model: ExpressionNet) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        n = x.shape[0]
        if self.model.config.flip_tta:
            x = torch.cat([x, torch.flip(x, dims=[3])], 0)
        out = self.model(x)
        logits, emb = out if isinstance(out, tuple) else (out, None)
        probs = torch.softmax(logits, -1)
        if self.model.config.flip_tta:
            probs = 0.5 * (probs[:n] + probs[n:])
            emb = None if emb is None else emb[:n] + emb[n:]
        if emb is not None:
            return probs, F.normalize(emb, dim=-1)
        return probs


def export_onnx(
    model: ExpressionNet,
    path: str | Path,
    metadata: Mapping[str, Any] | None = None,
    *,
    labels: Sequence[str] | None = None,
    mean: float | Sequence[float] = 0.0,
    std: float | Sequence[float] = 1.0,
) -> Path:
    """Write ``<path>`` (outputs ``probs`` and, with an embedding, ``embedding``) and ``<stem>.json`` beside it."""
    cfg = model.config
    if labels is None:
        labels = FER_LABELS if cfg.classes == 7 else [f"class{i}" for i in range(cfg.classes)]
    if len(labels) != cfg.classes:
        raise ValueError(f"{len(labels)} labels for a model of {cfg.classes} classes")
    meta: dict[str, Any] = {
        "kind": "expression",
        "labels": list(labels),
        "input_size": cfg.size,
        "color": cfg.color,
        "mean": mean,
        "std": std,
        "scale": 1.0 / 255.0,
        "output": "probs",
        "embedding_dim": cfg.embedding_dim,
        "config": asdict(cfg),
    }
    meta.update(metadata or {})
    channels = 1 if cfg.color == "gray" else 3
    outputs = ["probs", "embedding"] if cfg.embedding_dim else ["probs"]
    return export(_Exported(model), (torch.zeros(2, channels, cfg.size, cfg.size),), path, ["image"], outputs, meta)
