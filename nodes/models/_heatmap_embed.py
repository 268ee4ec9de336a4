"""Embedding with the channels a face-ID model asks for: RGB, or RGB + landmark heatmaps (+ mask).

A model exported by ``facegraph train face-id`` says in its ``.json`` which
channels it needs (``heatmaps``: scheme, sigma, mask; ``landmarks``: extractor and
the crop the points live in). This embedder builds them with
``face/_heatmaps.heatmaps``, the function training used. Landmarks come from the
caller (the ``embed`` node's ``landmarks`` input, moved into crop pixels) or,
when none are given (a gallery folder, ``facegraph eval verify``), from the same
extractor the training ran on the aligned crop (``face/_crop_landmarks``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from facegraph import ModelError

from ..face import _heatmaps as hm
from ._arcface import l2_normalise


def wants_heatmaps(metadata: dict[str, Any]) -> bool:
    """A model of ``facegraph train face-id`` (RGB only or with heatmaps): embedded exactly as it was trained."""
    return bool(metadata.get("heatmaps")) or metadata.get("kind") == "face-id"


def resize_area(crops: np.ndarray, size: int) -> np.ndarray:
    import cv2

    crops = np.asarray(crops)
    if not len(crops) or crops.shape[1:3] == (size, size):
        return crops
    return np.stack([cv2.resize(c, (size, size), interpolation=cv2.INTER_AREA) for c in crops])


def crop_points(points: np.ndarray, matrices: np.ndarray) -> np.ndarray:
    """Frame-pixel landmarks [N,K,C] → crop pixels through each face's frame → crop affine [N,2,3]."""
    pts = np.asarray(points, np.float32)[..., :2]
    m = np.asarray(matrices, np.float32)
    return np.einsum("nij,nkj->nki", m[:, :, :2], pts) + m[:, None, :, 2]


class HeatmapEmbedder:
    """ONNX face-ID model over [RGB + heatmaps (+ mask)] → L2-normalised vectors; also plain RGB models of ours."""

    def __init__(self, spec: str | Path, *, providers: Any = "auto", threads: int = 1) -> None:
        from ._onnx import OnnxModel

        self.model = OnnxModel(spec, providers=providers, threads=threads, what="recognition model")
        meta = self.model.metadata
        self.spec = meta.get("heatmaps") or None
        size = meta.get("input_size", 112)
        self.size = int(size[0] if isinstance(size, (list, tuple)) else size)
        self.mean, self.std = float(meta.get("mean", 127.5)), float(meta.get("std", 127.5))
        self.rgb = str(meta.get("color", "rgb")).lower() == "rgb"
        self.in_channels = int(meta.get("in_channels", 3))
        want = 3 + hm.channels(self.spec, int((self.spec or {}).get("points", 68)))
        if want != self.in_channels:
            raise ModelError(f"{self.model.path}: metadata says {self.in_channels} input channels but its heatmap "
                             f"spec gives {want}")
        lm = meta.get("landmarks") or {}
        self.extractor_name = lm.get("extractor", "mediapipe")
        self.crop_size = int(lm.get("crop_size", 112))
        self._extractor: Any = None
        self._threads = threads
        self.dim = int(meta.get("dim", 512))
        self.name = str(spec)

    @property
    def needs_landmarks(self) -> bool:
        return self.spec is not None

    def landmarks_of(self, crops: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The training's own extractor on aligned crops (resized to the crop size it was trained on)."""
        if self._extractor is None:
            from ..face._crop_landmarks import open_extractor

            self._extractor = open_extractor(self.extractor_name, self._threads)
        points, valid, _ = self._extractor(resize_area(crops, self.crop_size))
        return points, valid

    def inputs(self, crops: np.ndarray, points: np.ndarray | None = None, valid: np.ndarray | None = None,
               points_side: float | None = None) -> np.ndarray:
        """The stacked network input [N, C, S, S]; ``points`` in pixels of crops of side ``points_side``
        (default: the crops' own side)."""
        crops = np.asarray(crops)
        side = crops.shape[1]
        x = resize_area(crops, self.size)
        x = x[..., ::-1] if self.rgb else x
        x = ((x.astype(np.float32) - self.mean) / self.std).transpose(0, 3, 1, 2)
        if self.spec is None:
            return np.ascontiguousarray(x)
        if points is None:
            points, valid = self.landmarks_of(crops)
            points_side = self.crop_size
        maps = hm.heatmaps(points, valid, self.size, self.spec, points_side or side)
        return np.ascontiguousarray(np.concatenate([x, maps], 1), dtype=np.float32)

    def __call__(self, crops: np.ndarray, points: np.ndarray | None = None, valid: np.ndarray | None = None,
                 points_side: float | None = None) -> np.ndarray:
        """uint8 BGR crops [N,S,S,3] (+ landmarks [N,K,2|3] in crop pixels) → float32 [N,D] unit vectors."""
        if len(crops) == 0:
            return np.zeros((0, self.dim), np.float32)
        out = self.model.run(self.inputs(crops, points, valid, points_side))[0]
        return l2_normalise(np.asarray(out, np.float32).reshape(len(crops), -1))
