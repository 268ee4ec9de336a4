"""Face crops → model input tensors, as a model's metadata.json describes them.

Crops arrive BGR uint8 [N, S, S, 3]; classification and reconstruction models
want NCHW float32 at their own size and colour (``gray``, ``rgb`` or ``bgr``),
scaled by ``scale`` (default 1/255) and normalised by ``mean``/``std``.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True)
class CropSpec:
    size: int = 48
    color: str = "gray"
    mean: tuple[float, ...] = (0.0,)
    std: tuple[float, ...] = (1.0,)
    scale: float = 1.0 / 255.0
    #: where the model's training images had the five ArcFace keypoints (fractions of the side); None: resize only
    template: tuple[tuple[float, float], ...] | None = None

    @property
    def channels(self) -> int:
        return 1 if self.color == "gray" else 3

    @classmethod
    def from_metadata(cls, meta: Mapping[str, Any], *, size: int, color: str) -> CropSpec:
        """Metadata keys ``input_size``, ``color``, ``mean``, ``std``, ``scale``; the arguments are defaults."""
        size = int(meta.get("input_size", size))
        color = str(meta.get("color", color)).lower()
        if color not in ("gray", "rgb", "bgr"):
            raise ValueError(f"color must be gray, rgb or bgr, got {color!r}")
        channels = 1 if color == "gray" else 3
        mean = _per_channel(meta.get("mean", 0.0), channels, "mean")
        std = _per_channel(meta.get("std", 1.0), channels, "std")
        template = meta.get("template")
        if template is not None:
            pts = np.asarray(template, np.float64)
            if pts.shape != (5, 2) or not np.all(np.isfinite(pts)):
                raise ValueError(f"template must be 5 [x, y] points, got {template!r}")
            template = tuple((float(x), float(y)) for x, y in pts)
        return cls(size, color, mean, std, float(meta.get("scale", 1.0 / 255.0)), template)

    def crop_matrix(self, crop_size: int) -> np.ndarray:
        """ArcFace crop (crop_size²) → model input: the similarity that puts the template's keypoints in place.

        A data set framed looser or tighter than ArcFace's template (FER-2013's faces
        fill their frames) then sees faces at inference as it saw them in training.
        """
        from ..face._align import arcface_template, umeyama

        return umeyama(arcface_template(crop_size), np.asarray(self.template, np.float64) * self.size)


def _per_channel(value: float | Sequence[float], channels: int, what: str) -> tuple[float, ...]:
    values = [float(value)] if isinstance(value, (int, float)) else [float(v) for v in value]
    if len(values) == 1:
        values *= channels
    if len(values) != channels:
        raise ValueError(f"{what} has {len(values)} values for {channels} channels")
    return tuple(values)


def prepare(images: np.ndarray, spec: CropSpec) -> np.ndarray:
    """BGR uint8 [N, S, S, 3] → float32 [N, C, size, size] ready for the model."""
    import cv2

    images = np.asarray(images)
    n = len(images)
    out = np.empty((n, spec.size, spec.size, spec.channels), np.float32)
    for i, img in enumerate(images):
        side = img.shape[0]
        if spec.template is not None and side == img.shape[1] and (side % 112 == 0 or side % 128 == 0):
            # reframe at the crop's own size, then shrink with area averaging below
            img = cv2.warpAffine(img, _reframe_matrix(spec, side), (side, side), flags=cv2.INTER_LINEAR,
                                 borderMode=cv2.BORDER_REPLICATE)
        if img.shape[0] != spec.size or img.shape[1] != spec.size:
            shrink = img.shape[0] > spec.size
            img = cv2.resize(img, (spec.size, spec.size), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)
        if spec.color == "gray":
            img = cv2.cvtColor(img, cv2.COLOR_BGR2GRAY)[..., None]
        elif spec.color == "rgb":
            img = img[..., ::-1]
        out[i] = img
    out *= spec.scale
    out -= np.asarray(spec.mean, np.float32)
    out /= np.asarray(spec.std, np.float32)
    return np.ascontiguousarray(out.transpose(0, 3, 1, 2))


@functools.lru_cache(maxsize=16)
def _reframe_matrix(spec: CropSpec, side: int) -> np.ndarray:
    """ArcFace crop (side²) → the training framing at the same side; worked out once per model and crop size."""
    return spec.crop_matrix(side) * (side / spec.size)


def to_bgr_uint8(images: np.ndarray, color: str = "rgb", value_range: Sequence[float] = (0.0, 1.0)) -> np.ndarray:
    """Model images float [N, C, H, W] in ``value_range`` → BGR uint8 [N, H, W, 3]."""
    lo, hi = float(value_range[0]), float(value_range[1])
    x = (np.asarray(images, np.float32) - lo) / (hi - lo)
    x = np.clip(np.rint(x * 255.0), 0, 255).astype(np.uint8).transpose(0, 2, 3, 1)
    if x.shape[-1] == 1:
        return np.repeat(x, 3, axis=-1)
    return np.ascontiguousarray(x[..., ::-1]) if color == "rgb" else np.ascontiguousarray(x)
