"""Two networks that replace an iterative landmark fitter and HOG+SVM AU classifiers, and their losses.

``UnifiedLandmarkPoseNet``: a MobileNetV2 backbone (Sandler et al. 2018) with three heads:
68 landmarks in input-image pixels, OpenFace's 6 global PDM parameters
``[scale, rx, ry, rz, tx, ty]`` (also in input pixels) and its 34 local shape coefficients.
``AUPredictionNet``: an EfficientNet-Lite backbone (MBConv blocks, ReLU6, a fixed stem and
head; squeeze-excitation kept, as the design asks) and an FC head giving 17 AU intensities
in [0, 5]. Both take float RGB ``(N, 3, S, S)`` scaled to [-1, 1] (``(x/255 − 0.5)/0.5``).

Written here rather than taken from timm/torchvision: neither is a dependency of the
project (torchvision would pin another torch), and both backbones are ~60 lines.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F  # noqa: N812 - the usual name
from torch import nn

#: the order of the global parameters (OpenFace's p_scale … p_ty)
GLOBAL_NAMES = ("scale", "rx", "ry", "rz", "tx", "ty")
#: output = raw · spread + centre per global parameter, for a 112 px input (tx, ty scale with the size);
#: the loss compares global parameters in these normalised units, so no one parameter dominates the MSE
GP_CENTER = (0.45, 0.0, 0.0, 0.0, 56.0, 56.0)
GP_SPREAD = (0.15, 0.5, 0.5, 0.5, 14.0, 14.0)


def _make_divisible(value: float, divisor: int = 8) -> int:
    new = max(divisor, int(value + divisor / 2) // divisor * divisor)
    return new + divisor if new < 0.9 * value else new


class ConvBNAct(nn.Sequential):
    def __init__(self, cin: int, cout: int, k: int = 3, stride: int = 1, groups: int = 1, act: bool = True) -> None:
        layers: list[nn.Module] = [nn.Conv2d(cin, cout, k, stride, k // 2, groups=groups, bias=False),
                                   nn.BatchNorm2d(cout)]
        if act:
            layers.append(nn.ReLU6(inplace=True))
        super().__init__(*layers)


class SqueezeExcite(nn.Module):
    def __init__(self, channels: int, squeezed: int) -> None:
        super().__init__()
        self.reduce = nn.Conv2d(channels, squeezed, 1)
        self.expand = nn.Conv2d(squeezed, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = x.mean((2, 3), keepdim=True)
        return x * torch.sigmoid(self.expand(F.relu(self.reduce(s))))


class InvertedResidual(nn.Module):
    """MBConv: 1×1 expand, k×k depthwise, optional squeeze-excitation, 1×1 linear projection (+ skip)."""

    def __init__(self, cin: int, cout: int, stride: int, expand: int, k: int = 3, se: float = 0.0) -> None:
        super().__init__()
        hidden = cin * expand
        layers: list[nn.Module] = [] if expand == 1 else [ConvBNAct(cin, hidden, 1)]
        layers.append(ConvBNAct(hidden, hidden, k, stride, groups=hidden))
        if se:
            layers.append(SqueezeExcite(hidden, max(1, int(cin * se))))
        layers.append(ConvBNAct(hidden, cout, 1, act=False))
        self.block = nn.Sequential(*layers)
        self.skip = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.block(x) if self.skip else self.block(x)


def _backbone(settings: list[tuple[int, int, int, int, int]], width_mult: float, se: float,
              stem: int = 32, last: int = 1280, scale_depth: bool = False) -> tuple[nn.Sequential, int]:
    """Stem, MBConv stages of (expand, channels, repeats, stride, kernel), 1×1 head to ``last`` features."""
    cin = _make_divisible(stem * width_mult)
    layers: list[nn.Module] = [ConvBNAct(3, cin, 3, 2)]
    for expand, channels, repeats, stride, k in settings:
        cout = _make_divisible(channels * width_mult)
        for i in range(repeats if not scale_depth else max(1, math.ceil(repeats * width_mult))):
            layers.append(InvertedResidual(cin, cout, stride if i == 0 else 1, expand, k, se))
            cin = cout
    features = _make_divisible(last * max(1.0, width_mult))
    layers.append(ConvBNAct(cin, features, 1))
    return nn.Sequential(*layers), features


MOBILENET_V2 = [(1, 16, 1, 1, 3), (6, 24, 2, 2, 3), (6, 32, 3, 2, 3), (6, 64, 4, 2, 3), (6, 96, 3, 1, 3),
                (6, 160, 3, 2, 3), (6, 320, 1, 1, 3)]
EFFICIENTNET_LITE0 = [(1, 16, 1, 1, 3), (6, 24, 2, 2, 3), (6, 40, 2, 2, 5), (6, 80, 3, 2, 3), (6, 112, 3, 1, 5),
                      (6, 192, 4, 2, 5), (6, 320, 1, 1, 3)]


def _init(module: nn.Module) -> None:
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, 0, 0.01)
            nn.init.zeros_(m.bias)


def _mlp(cin: int, hidden: int, cout: int, dropout: float) -> nn.Sequential:
    return nn.Sequential(nn.Linear(cin, hidden), nn.ReLU(inplace=True), nn.Dropout(dropout), nn.Linear(hidden, cout))


class UnifiedLandmarkPoseNet(nn.Module):
    """MobileNetV2 → (landmarks (N, 68, 2) px, global params (N, 6), local params (N, 34))."""

    def __init__(self, width_mult: float = 1.0, num_landmarks: int = 68, num_local_params: int = 34,
                 image_size: int = 112, dropout: float = 0.1) -> None:
        super().__init__()
        self.width_mult, self.num_landmarks, self.image_size = width_mult, num_landmarks, image_size
        self.backbone, features = _backbone(MOBILENET_V2, width_mult, se=0.0)
        self.landmark_head = _mlp(features, 512, num_landmarks * 2, dropout)
        self.global_head = _mlp(features, 256, 6, dropout)
        self.local_head = _mlp(features, 256, num_local_params, dropout)
        _init(self)
        scale = image_size / 112.0
        self.register_buffer("gp_center", torch.tensor(GP_CENTER) * torch.tensor([scale, 1, 1, 1, scale, scale]))
        self.register_buffer("gp_spread", torch.tensor(GP_SPREAD) * torch.tensor([scale, 1, 1, 1, scale, scale]))

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.backbone(x).mean((2, 3))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        f = self.features(x)
        landmarks = (self.landmark_head(f).view(-1, self.num_landmarks, 2) + 0.5) * self.image_size
        global_params = self.global_head(f) * self.gp_spread + self.gp_center
        return landmarks, global_params, self.local_head(f) * 10.0


class AUPredictionNet(nn.Module):
    """EfficientNet-Lite (with SE) → 17 AU intensities in [0, 5].

    ``person_norm``: the head sees the frame's backbone features minus a per-person reference
    (the mean of that person's frames' features; OpenFace's dynamic models do the same with
    a running median of FHOG), so what it learns is the change from the person's usual face,
    not who the person is. ``with_frame`` also gives the head the frame's own features.
    """

    def __init__(self, width_mult: float = 1.0, dropout: float = 0.3, num_aus: int = 17,
                 person_norm: bool = False, with_frame: bool = False) -> None:
        super().__init__()
        self.width_mult, self.num_aus = width_mult, num_aus
        self.person_norm, self.with_frame = person_norm, person_norm and with_frame
        self.backbone, features = _backbone(EFFICIENTNET_LITE0, width_mult, se=0.25)
        self.num_features = features
        head_in = features * (2 if self.with_frame else 1)
        self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(head_in, 512), nn.ReLU(inplace=True),
                                  nn.Dropout(dropout), nn.Linear(512, num_aus))
        _init(self)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.backbone(x).mean((2, 3))

    def from_features(self, features: torch.Tensor, reference: torch.Tensor | None = None) -> torch.Tensor:
        """AUs from backbone features (N, F) and, with ``person_norm``, the person's reference (N, F) or (F,)."""
        h = features
        if self.person_norm:
            if reference is None:
                raise ValueError("a person-normalised AU net needs the person's reference features")
            diff = features - reference
            h = torch.cat([diff, features], 1) if self.with_frame else diff
        return 5.0 * torch.sigmoid(self.head(h))

    def forward(self, x: torch.Tensor, reference: torch.Tensor | None = None) -> torch.Tensor:
        """Without a reference a person-normalised net takes each frame as its own reference (no change)."""
        f = self.features(x)
        if self.person_norm and reference is None:
            reference = f
        return self.from_features(f, reference)


class AUFeatures(nn.Module):
    """The AU net's backbone alone, image → features (the first of a person-normalised net's two exports)."""

    def __init__(self, net: AUPredictionNet) -> None:
        super().__init__()
        self.net = net

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.net.features(image)


class AUHead(nn.Module):
    """The AU net's head alone, (features, reference) → AUs (the second export; runs on one core in µs)."""

    def __init__(self, net: AUPredictionNet) -> None:
        super().__init__()
        self.net = net

    def forward(self, features: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
        return self.net.from_features(features, reference)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


# ------------------------------------------------------------------------------------------------ losses


def wing_loss(pred: torch.Tensor, target: torch.Tensor, w: float = 10.0, epsilon: float = 2.0) -> torch.Tensor:
    """Wing loss (Feng et al. 2018), mean over every coordinate: w·ln(1 + |x|/ε) below w, |x| − C above."""
    x = (pred - target).abs()
    c = w - w * math.log(1.0 + w / epsilon)
    return torch.where(x < w, w * torch.log1p(x / epsilon), x - c).mean()


class WingLoss(nn.Module):
    def __init__(self, w: float = 10.0, epsilon: float = 2.0) -> None:
        super().__init__()
        self.w, self.epsilon = w, epsilon

    def forward(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return wing_loss(pred, target, self.w, self.epsilon)


def ccc(pred: torch.Tensor, target: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Lin's concordance correlation per column of (N, A): 2·cov / (var_p + var_t + (μ_p − μ_t)²)."""
    mp, mt = pred.mean(0), target.mean(0)
    vp, vt = pred.var(0, unbiased=False), target.var(0, unbiased=False)
    cov = ((pred - mp) * (target - mt)).mean(0)
    return 2 * cov / (vp + vt + (mp - mt) ** 2 + eps)


class LandmarkPoseLoss(nn.Module):
    """w_lm·Wing(landmarks) + w_gp·MSE(global, in GP_SPREAD units) + w_lp·L1(local); the parts come back too."""

    def __init__(self, lm_weight: float = 1.0, gp_weight: float = 0.1, lp_weight: float = 0.01,
                 w: float = 10.0, epsilon: float = 2.0, image_size: int = 112) -> None:
        super().__init__()
        self.lm_weight, self.gp_weight, self.lp_weight = lm_weight, gp_weight, lp_weight
        self.wing = WingLoss(w, epsilon)
        scale = image_size / 112.0
        self.register_buffer("gp_spread", torch.tensor(GP_SPREAD) * torch.tensor([scale, 1, 1, 1, scale, scale]))

    def forward(self, pred: tuple[torch.Tensor, torch.Tensor, torch.Tensor],
                target: tuple[torch.Tensor, torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, dict[str, float]]:
        lm = self.wing(pred[0], target[0])
        gp = F.mse_loss(pred[1] / self.gp_spread, target[1] / self.gp_spread)
        lp = F.l1_loss(pred[2], target[2])
        total = self.lm_weight * lm + self.gp_weight * gp + self.lp_weight * lp
        return total, {"wing": float(lm.detach()), "global_mse": float(gp.detach()), "local_l1": float(lp.detach())}


class AUPredictionLoss(nn.Module):
    """w_l1·SmoothL1 + w_ccc·(1 − mean CCC over AUs), optionally weighted per AU."""

    def __init__(self, l1_weight: float = 1.0, ccc_weight: float = 0.5, au_weights: torch.Tensor | None = None) -> None:
        super().__init__()
        self.l1_weight, self.ccc_weight = l1_weight, ccc_weight
        self.register_buffer("au_weights", None if au_weights is None else torch.as_tensor(au_weights).float())

    def forward(self, pred: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
        l1 = F.smooth_l1_loss(pred, target, reduction="none").mean(0)
        c = ccc(pred, target)
        if self.au_weights is not None:
            w = self.au_weights / self.au_weights.sum()
            l1_mean, ccc_mean = (l1 * w).sum(), (c * w).sum()
        else:
            l1_mean, ccc_mean = l1.mean(), c.mean()
        total = self.l1_weight * l1_mean + self.ccc_weight * (1.0 - ccc_mean)
        return total, {"smooth_l1": float(l1_mean.detach()), "ccc": float(ccc_mean.detach())}
