"""Face-ID networks over ``[RGB + landmark heatmaps (+ mask)]``: backbones with a widened first convolution.

The design: a ResNet-50 (or a smaller ResNet / iResNet for a CPU) whose first
convolution takes 3 + K channels. :func:`widen_first_conv` keeps the RGB filters
as they are and initialises each extra channel's filters with the mean of the RGB
filters, so a pretrained stem starts out treating a heatmap like a gray image.
The embedding (512-D by default) feeds a margin head (``heads.ArcFace`` or
``heads.CosFace``) while training; the export keeps the embedding alone.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from .heads import ArcFace, CosFace, MarginHead
from .iresnet import LAYERS, iresnet
from .resnet_blocks import BasicBlock, Bottleneck

BACKBONES = ("resnet18", "resnet34", "resnet50", "iresnet18", "iresnet34", "iresnet50")


def widen_first_conv(conv: nn.Conv2d, extra: int) -> nn.Conv2d:
    """A copy of ``conv`` with ``extra`` more input channels: RGB filters unchanged, the new ones their mean."""
    if extra <= 0:
        return conv
    wide = nn.Conv2d(conv.in_channels + extra, conv.out_channels, conv.kernel_size, conv.stride, conv.padding,
                     conv.dilation, conv.groups, conv.bias is not None, conv.padding_mode)
    with torch.no_grad():
        wide.weight[:, :conv.in_channels] = conv.weight
        wide.weight[:, conv.in_channels:] = conv.weight[:, :3].mean(1, keepdim=True)
        if conv.bias is not None:
            wide.bias.copy_(conv.bias)
    return wide


@dataclass
class FaceIDConfig:
    backbone: str = "iresnet18"
    in_channels: int = 3
    input_size: int = 112
    embedding: int = 512
    width: float = 1.0  # channel multiplier of the stages (0.5: a quarter of the compute)
    head: str = "arcface"  # arcface | cosface
    classes: int = 0
    dropout: float = 0.0
    distill_dim: int = 0  # > 0: a linear projection embedding → the teacher's space (knowledge distillation)


RESNETS = {"resnet18": (BasicBlock, (2, 2, 2, 2)), "resnet34": (BasicBlock, (3, 4, 6, 3)),
           "resnet50": (Bottleneck, (3, 4, 6, 3))}


class ResNetEmbedding(nn.Module):
    """He et al.'s ResNet (torchvision's layout: 7×7 stride-2 stem, max-pool, four stages), pooled features →
    Linear → BatchNorm1d embedding. The 4× early downsampling makes it the cheap choice at 112 px on a CPU."""

    def __init__(self, name: str, embedding: int, width: float = 1.0, dropout: float = 0.0) -> None:
        super().__init__()
        block, layers = RESNETS[name]
        widths = [max(8, round(c * width)) for c in (64, 128, 256, 512)]
        self.conv1 = nn.Conv2d(3, widths[0], 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(widths[0])
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        cin, stages = widths[0], []
        for i, (planes, n) in enumerate(zip(widths, layers, strict=False)):
            blocks = []
            for b in range(n):
                blocks.append(block(cin, planes, 2 if (b == 0 and i > 0) else 1))
                cin = planes * block.expansion
            stages.append(nn.Sequential(*blocks))
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(cin, embedding)
        self.features = nn.BatchNorm1d(embedding)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.features(self.fc(self.dropout(torch.flatten(self.pool(x), 1))))


def build_backbone(cfg: FaceIDConfig) -> nn.Module:
    """RGB backbone → embedding, its first convolution widened to ``cfg.in_channels``."""
    extra = cfg.in_channels - 3
    if cfg.backbone.startswith("iresnet"):
        widths = tuple(max(8, round(c * cfg.width)) for c in (64, 128, 256, 512))
        net = iresnet(LAYERS["r" + cfg.backbone[len("iresnet"):]], num_features=cfg.embedding, widths=widths,
                      input_size=cfg.input_size, dropout=cfg.dropout)
        net.conv1 = widen_first_conv(net.conv1, extra)
        net.in_channels = cfg.in_channels
        return net
    if cfg.backbone in RESNETS:
        net = ResNetEmbedding(cfg.backbone, cfg.embedding, cfg.width, cfg.dropout)
        net.conv1 = widen_first_conv(net.conv1, extra)
        return net
    raise ValueError(f"unknown backbone {cfg.backbone!r} (one of {', '.join(BACKBONES)})")


def margin_head(cfg: FaceIDConfig) -> MarginHead:
    if cfg.head not in ("arcface", "cosface"):
        raise ValueError(f"head must be arcface or cosface, got {cfg.head!r}")
    cls = ArcFace if cfg.head == "arcface" else CosFace
    return cls(cfg.embedding, cfg.classes, s=32.0 if cfg.classes < 1000 else 64.0)


class FaceIDNet(nn.Module):
    """Stacked input [N, 3+K, S, S] → embedding [N, D]; with labels the margin head's logits for training.

    With ``distill_dim`` a ``projection`` (Linear D → teacher dim) maps the embedding into a teacher's descriptor
    space (``training/faceid_distill.py``); ``classes`` 0 means no margin head (distillation alone)."""

    def __init__(self, cfg: FaceIDConfig) -> None:
        super().__init__()
        self.config = cfg
        self.backbone = build_backbone(cfg)
        self.head = margin_head(cfg) if cfg.classes else None
        self.projection = nn.Linear(cfg.embedding, cfg.distill_dim) if cfg.distill_dim else None

    def forward(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        emb = self.backbone(x)
        if labels is not None and self.head is not None:
            return self.head(emb, labels)
        return emb
