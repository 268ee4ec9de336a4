"""ArcFace-style recognition: input normalisation, blobs, batched L2-normalised embedding.

Shared by the ``embed`` node and the gallery builder of ``identify``, so a
gallery and a video are embedded the same way (and aligned the same way: both
crop with ``face/_align.py``). Everything but ``Embedder`` is plain numpy,
testable without a model.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from facegraph import ModelError

DEFAULT_MEAN = 127.5
DEFAULT_STD = 127.5


def normalisation(metadata: dict[str, Any]) -> tuple[np.ndarray, np.ndarray, bool]:
    """(mean, std, rgb) from a model's metadata.json; insightface's (x − 127.5) / 127.5 on RGB by default."""
    mean = np.asarray(metadata.get("mean", DEFAULT_MEAN), dtype=np.float32).reshape(-1)
    std = np.asarray(metadata.get("std", DEFAULT_STD), dtype=np.float32).reshape(-1)
    if np.any(std == 0):
        raise ModelError("model metadata has a zero in 'std'")
    order = str(metadata.get("color", metadata.get("channels", "rgb"))).lower()
    if order not in ("rgb", "bgr"):
        raise ModelError(f"model metadata 'color' must be rgb or bgr, got {order!r}")
    return mean, std, order == "rgb"


def to_blob(crops: np.ndarray, mean: np.ndarray, std: np.ndarray, *, rgb: bool = True,
            nchw: bool = True, size: tuple[int, int] | None = None) -> np.ndarray:
    """BGR uint8[N,S,S,3] crops → float32 network input (resized to ``size`` (h, w) when it differs)."""
    crops = np.asarray(crops)
    if size is not None and crops.shape[0] and crops.shape[1:3] != tuple(size):
        import cv2

        crops = np.stack([cv2.resize(c, (size[1], size[0]), interpolation=cv2.INTER_LINEAR) for c in crops])
    x = crops.astype(np.float32)
    if rgb:
        x = x[..., ::-1]
    x = (x - mean) / std
    if nchw:
        x = x.transpose(0, 3, 1, 2)
    return np.ascontiguousarray(x, dtype=np.float32)


def l2_normalise(vec: np.ndarray, eps: float = 1e-12) -> np.ndarray:
    vec = np.asarray(vec, dtype=np.float32)
    norm = np.linalg.norm(vec, axis=-1, keepdims=True)
    return (vec / np.maximum(norm, eps)).astype(np.float32)


class Embedder:
    """An ONNX recognition model: crops in, L2-normalised vectors out, batched as the model allows.

    A model with a fixed batch dimension (many exports have 1) is run in chunks
    of that size, the last chunk padded; a dynamic batch runs all faces at once.
    """

    def __init__(self, spec: str | Path, *, providers: Any = "auto", threads: int = 1) -> None:
        from ._onnx import OnnxModel

        self.model = OnnxModel(spec, providers=providers, threads=threads, what="recognition model")
        shape = self.model.input_shape
        if len(shape) != 4:
            raise ModelError(f"{self.model.path}: recognition model input must be 4-D image, got shape {shape}")
        self.nchw = shape[1] in (1, 3) or shape[3] not in (1, 3)
        self.size = self.model.fixed_hw((112, 112))
        batch = shape[0]
        self.batch = batch if isinstance(batch, int) and batch > 0 else None
        self.mean, self.std, self.rgb = normalisation(self.model.metadata)
        out_shape = self.model.outputs[0].shape
        dim = out_shape[-1] if out_shape else None
        if not (isinstance(dim, int) and dim > 0):
            probe = self._run(np.zeros((self.batch or 1, *self._chw()), dtype=np.float32))
            dim = probe.shape[-1]
        self.dim = int(dim)

    def _chw(self) -> tuple[int, int, int]:
        h, w = self.size
        return (3, h, w) if self.nchw else (h, w, 3)

    def _run(self, blob: np.ndarray) -> np.ndarray:
        out = self.model.run(blob)[0]
        return np.asarray(out, dtype=np.float32).reshape(len(blob), -1)

    def __call__(self, crops: np.ndarray) -> np.ndarray:
        """uint8[N,S,S,3] BGR crops → float32[N,D] unit vectors (N may be 0)."""
        n = len(crops)
        if n == 0:
            return np.zeros((0, self.dim), dtype=np.float32)
        blob = to_blob(crops, self.mean, self.std, rgb=self.rgb, nchw=self.nchw, size=self.size)
        if self.batch is None:
            vec = self._run(blob)
        else:
            parts = []
            for start in range(0, n, self.batch):
                chunk = blob[start : start + self.batch]
                pad = self.batch - len(chunk)
                if pad:
                    chunk = np.concatenate([chunk, np.zeros((pad, *chunk.shape[1:]), np.float32)])
                parts.append(self._run(chunk)[: self.batch - pad])
            vec = np.concatenate(parts)
        if vec.shape[1] != self.dim:
            raise ModelError(f"{self.model.path}: model gave {vec.shape[1]}-D vectors, expected {self.dim}")
        return l2_normalise(vec)
