"""iResNet-18/34/50/100/200 as insightface's arcface_torch defines them, plus ONNX export.

The layer names match arcface_torch's ``backbones/iresnet.py`` so its released
checkpoints load with ``load_state_dict``. Two additions for our own models:
``in_channels`` (3 + K landmark heatmap channels, see ``heads.py``) and
``widths`` (narrow stages, for tiny test models). Output: ``num_features``-D
embeddings (512 by default), not normalised; the ``embed`` node normalises.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

LAYERS = {
    "r18": (2, 2, 2, 2),
    "r34": (3, 4, 6, 3),
    "r50": (3, 4, 14, 3),
    "r100": (3, 13, 30, 3),
    "r200": (6, 26, 60, 6),
}


def conv3x3(cin: int, cout: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, kernel_size=3, stride=stride, padding=1, bias=False)


def conv1x1(cin: int, cout: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, kernel_size=1, stride=stride, bias=False)


class IBasicBlock(nn.Module):
    """BN → conv3×3 → BN → PReLU → conv3×3 (stride) → BN, plus the (projected) shortcut."""

    expansion = 1

    def __init__(self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(inplanes, eps=1e-5)
        self.conv1 = conv3x3(inplanes, planes)
        self.bn2 = nn.BatchNorm2d(planes, eps=1e-5)
        self.prelu = nn.PReLU(planes)
        self.conv2 = conv3x3(planes, planes, stride)
        self.bn3 = nn.BatchNorm2d(planes, eps=1e-5)
        self.downsample = downsample
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.bn3(self.conv2(self.prelu(self.bn2(self.conv1(self.bn1(x))))))
        identity = self.downsample(x) if self.downsample is not None else x
        return out + identity


class IResNet(nn.Module):
    """The ArcFace backbone: stem, four stride-2 stages, BN → flatten → dropout → FC → BN1d."""

    def __init__(
        self,
        layers: Sequence[int],
        *,
        num_features: int = 512,
        dropout: float = 0.0,
        in_channels: int = 3,
        widths: Sequence[int] = (64, 128, 256, 512),
        input_size: int = 112,
        zero_init_residual: bool = False,
    ) -> None:
        super().__init__()
        if input_size % 16:
            raise ValueError(f"input_size must be a multiple of 16, got {input_size}")
        self.in_channels = in_channels
        self.input_size = input_size
        self.num_features = num_features
        self.inplanes = widths[0]
        self.conv1 = nn.Conv2d(in_channels, self.inplanes, kernel_size=3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(self.inplanes, eps=1e-5)
        self.prelu = nn.PReLU(self.inplanes)
        self.layer1 = self._make_layer(widths[0], layers[0], stride=2)
        self.layer2 = self._make_layer(widths[1], layers[1], stride=2)
        self.layer3 = self._make_layer(widths[2], layers[2], stride=2)
        self.layer4 = self._make_layer(widths[3], layers[3], stride=2)
        self.bn2 = nn.BatchNorm2d(widths[3], eps=1e-5)
        self.dropout = nn.Dropout(p=dropout, inplace=True)
        side = input_size // 16
        self.fc = nn.Linear(widths[3] * side * side, num_features)
        self.features = nn.BatchNorm1d(num_features, eps=1e-5)
        nn.init.constant_(self.features.weight, 1.0)
        self.features.weight.requires_grad = False
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.normal_(m.weight, 0, 0.1)
            elif isinstance(m, (nn.BatchNorm2d, nn.GroupNorm)):
                nn.init.constant_(m.weight, 1)
                nn.init.constant_(m.bias, 0)
        if zero_init_residual:
            for m in self.modules():
                if isinstance(m, IBasicBlock):
                    nn.init.constant_(m.bn2.weight, 0)

    def _make_layer(self, planes: int, blocks: int, stride: int = 1) -> nn.Sequential:
        downsample = None
        if stride != 1 or self.inplanes != planes:
            downsample = nn.Sequential(conv1x1(self.inplanes, planes, stride), nn.BatchNorm2d(planes, eps=1e-5))
        layers = [IBasicBlock(self.inplanes, planes, stride, downsample)]
        self.inplanes = planes
        layers += [IBasicBlock(planes, planes) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.prelu(self.bn1(self.conv1(x)))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        x = torch.flatten(self.bn2(x), 1)
        x = self.fc(self.dropout(x))
        return self.features(x)


def iresnet(depth: str | Sequence[int] = "r50", **kwargs: Any) -> IResNet:
    """``iresnet("r50")``, ``iresnet("r100", in_channels=3 + 68)``, or explicit blocks per stage."""
    layers = LAYERS[depth] if isinstance(depth, str) else tuple(depth)
    return IResNet(layers, **kwargs)


def iresnet18(**kw: Any) -> IResNet:
    return iresnet("r18", **kw)


def iresnet34(**kw: Any) -> IResNet:
    return iresnet("r34", **kw)


def iresnet50(**kw: Any) -> IResNet:
    return iresnet("r50", **kw)


def iresnet100(**kw: Any) -> IResNet:
    return iresnet("r100", **kw)


def export_onnx(
    model: nn.Module,
    path: str | Path,
    *,
    input_size: int | None = None,
    in_channels: int | None = None,
    opset: int = 17,
    metadata: dict[str, Any] | None = None,
) -> Path:
    """Export a recognition network to ONNX with a dynamic batch (input ``input.1``, output ``embedding``).

    Writes ``<path>.json`` beside it (normalisation, input size, dimension) so the
    ``embed`` node reads the right preprocessing; ``metadata`` adds or overrides keys.
    """
    path = Path(path)
    size = input_size or getattr(model, "input_size", 112)
    channels = in_channels or getattr(model, "in_channels", 3)
    was_training = model.training
    model.eval()
    dummy = torch.zeros(1, channels, size, size)
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # the TorchScript exporter, chosen on purpose
        dim = int(model(dummy).shape[-1])
        kwargs: dict[str, Any] = {}
        if "dynamo" in torch.onnx.export.__code__.co_varnames:
            kwargs["dynamo"] = False
        torch.onnx.export(
            model, (dummy,), str(path), input_names=["input.1"], output_names=["embedding"],
            dynamic_axes={"input.1": {0: "N"}, "embedding": {0: "N"}}, opset_version=opset, **kwargs,
        )
    model.train(was_training)
    meta = {"task": "recognition", "input_size": [size, size], "mean": 127.5, "std": 127.5,
            "color": "rgb", "dim": dim, "in_channels": channels}
    meta.update(metadata or {})
    path.with_suffix(".json").write_text(json.dumps(meta, indent=2))
    return path
