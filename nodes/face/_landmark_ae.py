"""The landmark autoencoder's numpy side: landmark normalisation and the exported MLP's forward pass.

Posed landmarks + head pose → the same person's canonical (straight-on) landmarks.
Points are iBUG 68 (FaceMesh 468 mapped by ``_facemesh``), normalised per face:
centred on their mean, divided by their RMS distance from it, so the network sees
shape, not where or how large the face is; :func:`denormalise` puts its output back
in the input's pixels. Training (``training/landmark_ae.py``) and the
``canonical_landmarks`` node both use these functions, so they cannot drift apart.
The exported model is a ``.npz`` of the MLP's layers (``w0, b0, w1, b1, …``, ReLU
between them; the output is a residual added to the input shape) plus a ``.json``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from facegraph import ModelError


def normalise(points: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """[N,68,2] pixels → (shapes [N,68,2] centred, unit RMS size; centres [N,2]; scales [N])."""
    pts = np.asarray(points, np.float64)[..., :2]
    centre = pts.mean(1)
    rel = pts - centre[:, None]
    scale = np.sqrt((rel**2).sum(-1).mean(-1))
    return (rel / np.maximum(scale, 1e-9)[:, None, None]).astype(np.float32), centre, scale


def denormalise(shapes: np.ndarray, centre: np.ndarray, scale: np.ndarray) -> np.ndarray:
    return (np.asarray(shapes, np.float64) * scale[:, None, None] + centre[:, None]).astype(np.float32)


def point_error(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Mean point-to-point distance per face between normalised shapes [N,68,2] (units of the RMS face size)."""
    return np.sqrt(((np.asarray(a) - np.asarray(b)) ** 2).sum(-1)).mean(-1)


def features(shapes: np.ndarray, pose: np.ndarray) -> np.ndarray:
    """The MLP's input: 136 shape values + (pitch, yaw, roll) in radians."""
    return np.concatenate([np.asarray(shapes, np.float32).reshape(len(shapes), -1),
                           np.asarray(pose, np.float32).reshape(len(shapes), 3)], 1)


class LandmarkAE:
    """The exported MLP: ``canonical(shapes, pose)`` → canonical normalised shapes [N,68,2]."""

    def __init__(self, path: str | Path) -> None:
        path = Path(path).expanduser()
        if not path.exists():
            raise ModelError(f"{path}: no such landmark autoencoder (train one with facegraph train landmark-ae)")
        try:
            with np.load(path) as z:
                count = len([k for k in z.files if k.startswith("w")])
                self.layers = [(z[f"w{i}"].astype(np.float32), z[f"b{i}"].astype(np.float32)) for i in range(count)]
        except (OSError, KeyError, ValueError) as exc:
            raise ModelError(f"{path}: not a landmark autoencoder .npz ({exc})") from None
        meta = path.with_suffix(".json")
        self.metadata: dict[str, Any] = json.loads(meta.read_text()) if meta.exists() else {}
        self.path = path

    def canonical(self, shapes: np.ndarray, pose: np.ndarray) -> np.ndarray:
        x = features(shapes, pose)
        for i, (w, b) in enumerate(self.layers):
            x = x @ w.T + b
            if i < len(self.layers) - 1:
                x = np.maximum(x, 0.0)
        return (np.asarray(shapes, np.float32).reshape(len(x), -1) + x).reshape(-1, 68, 2)
