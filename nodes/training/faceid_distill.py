"""Knowledge distillation for face ID: dlib's CC0 ResNet descriptor as the teacher, cached per image and flip.

A net trained from scratch on 18 people does not generalise to new faces; dlib's
``dlib_face_recognition_resnet_model_v1`` (CC0, from PyPI's
``face-recognition-models``, run by ``nodes/models/_dlib.py``) does. The student
learns, next to its margin head, a linear projection of its embedding onto the
teacher's 128-D unit descriptor. The teacher runs once per image and once per
horizontally mirrored image (the joint transform's flip), and its descriptors are
cached as ``teacher_dlib.npz`` in ``--cache-dir``, keyed by the file list like the
landmark cache. Because the weights are CC0, a student distilled from them may ship.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812 - the usual torch alias

from .errors import TrainingError
from .faceid_data import IdentityData, _files_key

TEACHERS = ("dlib",)
#: what the model card says about the teacher
TEACHER_CARD = {
    "name": "dlib_face_recognition_resnet_model_v1", "dim": 128, "licence": "CC0 1.0 (public domain)",
    "package": "face-recognition-models (PyPI), run by dlib (dlib-bin)",
    "alignment": "dlib 5-point shape predictor inside the ArcFace crop, 150x150 chip",
}
LOSSES = ("cosine", "relation", "cosine+relation")


def check_teacher(name: str) -> None:
    """A one-line TrainingError when ``--distill NAME`` cannot run here (unknown name, dlib not installed)."""
    if name not in TEACHERS:
        raise TrainingError(f"--distill {name}: the teacher must be one of {', '.join(TEACHERS)}")
    from ..models import _dlib

    problems = _dlib.missing()
    if problems:
        raise TrainingError(f"--distill dlib needs dlib and its CC0 weights: {_dlib.INSTALL}")


def teacher_for(data: IdentityData, name: str = "dlib", *, cache_dir: str | Path | None, batch: int = 64,
                log: Any = print, embedder: Any = None) -> np.ndarray:
    """float32 [N, 2, 128] unit teacher descriptors of every image: [:, 0] as stored, [:, 1] mirrored.

    Read from / written to ``cache_dir/teacher_<name>.npz`` when given (checked against the file list).
    ``embedder`` (BGR uint8 crops → unit vectors) replaces dlib, for tests."""
    cache = Path(cache_dir) / f"teacher_{name}.npz" if cache_dir else None
    key = _files_key(data.paths)
    if cache is not None and cache.exists():
        with np.load(cache) as z:
            if str(z["key"]) == key:
                log(f"teacher {name}: {cache} (cached, {len(z['vectors'])} images × 2)")
                return z["vectors"].astype(np.float32)
        log(f"teacher {name}: {cache} is for other files; computing again")
    if embedder is None:
        check_teacher(name)
        from ..models._dlib import DlibEmbedder

        embedder = DlibEmbedder(framing="arcface")
    images = np.asarray(data.images)
    out = np.zeros((len(images), 2, 0), np.float32)
    parts = []
    for i in range(0, len(images), batch):
        crops = images[i:i + batch]
        parts.append(np.stack([embedder(crops), embedder(np.ascontiguousarray(crops[:, :, ::-1]))], 1))
        if (i // batch) % 8 == 7:
            log(f"teacher {name}: {i + len(crops)}/{len(images)} images")
    out = np.concatenate(parts).astype(np.float32) if parts else out
    if cache is not None:
        cache.parent.mkdir(parents=True, exist_ok=True)
        np.savez_compressed(cache, key=key, vectors=out, paths=np.array(data.paths), teacher=name)
        log(f"teacher {name}: wrote {cache}")
    return out


def centre_teacher(vectors: np.ndarray, train_index: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(teacher vectors minus the training images' mean teacher vector, unit length again; that mean).

    dlib's descriptors share one large direction (on glint24 the mean of the training images' unit descriptors
    has length 0.92): predicting that mean alone scores cosine 0.92, so a cosine loss on raw descriptors says
    little about identity. Centred, the identity part is the whole target (the teacher's verification AUC is
    unchanged: 0.9956 on the unseen people either way)."""
    v = np.asarray(vectors, np.float32)
    mean = v[np.asarray(train_index)].reshape(-1, v.shape[-1]).mean(0)
    c = v - mean
    return (c / np.maximum(np.linalg.norm(c, axis=-1, keepdims=True), 1e-12)).astype(np.float32), mean


def distill_loss(student: torch.Tensor, teacher: torch.Tensor, kind: str = "cosine") -> torch.Tensor:
    """Student projections [B, D] against unit teacher vectors [B, D]: ``cosine`` (1 − cos, mean),
    ``relation`` (mean squared difference of the two in-batch cosine-similarity matrices), or both summed."""
    s = F.normalize(student.float(), dim=1)
    t = F.normalize(teacher.float(), dim=1)
    loss = student.new_zeros(())
    if kind in ("cosine", "cosine+relation"):
        loss = loss + (1 - (s * t).sum(1)).mean()
    if kind in ("relation", "cosine+relation"):
        loss = loss + ((s @ s.T - t @ t.T) ** 2).mean()
    return loss
