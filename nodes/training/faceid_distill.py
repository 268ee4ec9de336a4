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

from dataclasses import dataclass
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
                log: Any = print, embedder: Any = None, workers: int = 1) -> np.ndarray:
    """float32 [N, 2, 128] unit teacher descriptors of every image: [:, 0] as stored, [:, 1] mirrored.

    Read from / written to ``cache_dir/teacher_<name>.npz`` when given (checked against the file list).
    ``embedder`` (BGR uint8 crops → unit vectors) replaces dlib, for tests."""
    return _teacher_cached(np.asarray(data.images), _files_key(data.paths), name,
                           Path(cache_dir) / f"teacher_{name}.npz" if cache_dir else None, batch=batch, log=log,
                           embedder=embedder, paths=data.paths, workers=workers)


_WORKER_EMBEDDER: Any = None


def _start_worker() -> None:
    """A teacher process: its own dlib embedder (dlib runs one thread per call). Ctrl-C is the parent's to
    handle: it stops the pool (terminate), so a worker does not also die with a traceback of its own."""
    global _WORKER_EMBEDDER
    import signal

    from ..models._dlib import DlibEmbedder

    signal.signal(signal.SIGINT, signal.SIG_IGN)

    _WORKER_EMBEDDER = DlibEmbedder(framing="arcface")


def _both_views(crops: np.ndarray, embedder: Any = None) -> np.ndarray:
    """[n, 2, D]: the teacher's vectors of the crops as stored and mirrored."""
    embedder = embedder or _WORKER_EMBEDDER
    return np.stack([embedder(crops), embedder(np.ascontiguousarray(crops[:, :, ::-1]))], 1)


def _plain_view(crops: np.ndarray, embedder: Any = None) -> np.ndarray:
    """[n, 2, D] at half the cost: the vector of the crops as stored, given to the mirror as well."""
    vectors = (embedder or _WORKER_EMBEDDER)(crops)
    return np.stack([vectors, vectors], 1)


def _teacher_cached(images: np.ndarray, key: str, name: str, cache: Path | None, *, batch: int, log: Any,
                    embedder: Any, paths: list[str], what: str = "images", workers: int = 1,
                    mirrors: bool = True) -> np.ndarray:
    """The teacher's vectors of ``images`` (and their mirrors), from the cache when it holds these files.

    dlib computes one descriptor at a time on one core; with ``workers`` > 1 (the trainer passes ``--threads``)
    the batches are spread over that many processes, each with its own dlib (thousands of morphs took 12 min on
    one core). A given ``embedder`` (tests) always runs here, in order. ``mirrors=False`` runs the teacher
    once per image and gives its mirror the same vector."""
    if cache is not None and cache.exists():
        with np.load(cache) as z:
            if str(z["key"]) == key:
                log(f"teacher {name}: {cache} (cached, {len(z['vectors'])} {what} × 2)")
                return z["vectors"].astype(np.float32)
        log(f"teacher {name}: {cache} is for other files; computing again")
    chunks = [images[i:i + batch] for i in range(0, len(images), batch)]
    views = _both_views if mirrors else _plain_view
    parts = []
    if embedder is None:
        check_teacher(name)
    if embedder is None and workers > 1 and len(chunks) > 1:
        import multiprocessing

        # a Pool, not a ProcessPoolExecutor: leaving its block (Ctrl-C, an error) terminates the workers at
        # once, where the executor's exit waits for every queued batch (a Ctrl-C hung for minutes)
        with multiprocessing.get_context("spawn").Pool(min(workers, len(chunks)), initializer=_start_worker) as pool:
            for k, part in enumerate(pool.imap(views, chunks)):
                parts.append(part)
                if k % 8 == 7:
                    log(f"teacher {name}: {min((k + 1) * batch, len(images))}/{len(images)} {what}")
    else:
        if embedder is None:
            from ..models._dlib import DlibEmbedder

            embedder = DlibEmbedder(framing="arcface")
        for k, crops in enumerate(chunks):
            parts.append(views(crops, embedder))
            if k % 8 == 7:
                log(f"teacher {name}: {k * batch + len(crops)}/{len(images)} {what}")
    out = np.concatenate(parts).astype(np.float32) if parts else np.zeros((len(images), 2, 0), np.float32)
    if cache is not None:
        cache.parent.mkdir(parents=True, exist_ok=True)
        np.savez_compressed(cache, key=key, vectors=out, paths=np.array(paths), teacher=name)
        log(f"teacher {name}: wrote {cache}")
    return out


@dataclass
class Morphs:
    """Blends of two training people's aligned crops, ``alpha · a + (1 − alpha) · b``, with the teacher's
    descriptors of each blend and its mirror (or, with ``mirrors=False``, of the blend, given to both).
    18 people give the student 18 clusters of the teacher's space;
    a blend of two aligned faces is a face the teacher places elsewhere, so the student sees more of that space.
    They carry no label (no margin-head loss); their heatmaps are the same blend of the two images' heatmaps."""

    images: np.ndarray  # uint8 BGR [M, S, S, 3]
    pairs: np.ndarray  # [M, 2] image indices into the identity data
    alpha: np.ndarray  # [M] float32
    teacher: np.ndarray  # [M, 2, D]


def make_morphs(data: IdentityData, count: int, name: str = "dlib", *, seed: int = 0,
                cache_dir: str | Path | None, log: Any = print, embedder: Any = None, batch: int = 64,
                workers: int = 1, mirrors: bool = True) -> Morphs:
    """``count`` blends of two training images of different people (alpha uniform in 0.35–0.65, by ``seed``),
    their teacher vectors cached as ``teacher_<name>_morphs<count>_s<seed>[_plain].npz``.

    ``mirrors=False`` halves the teacher's time per blend: a mirrored blend keeps the blend's own vector (a
    mirror changes no one's identity), so the same teacher time buys twice the blends."""
    rng = np.random.default_rng(seed)
    train = data.where("train")
    if len(np.unique(data.labels[train])) < 2:
        raise TrainingError("--distill-morphs needs training images of at least 2 people")
    a = rng.choice(train, count)
    b = rng.choice(train, count)
    same = data.labels[a] == data.labels[b]
    while same.any():
        b[same] = rng.choice(train, int(same.sum()))
        same = data.labels[a] == data.labels[b]
    alpha = rng.uniform(0.35, 0.65, count).astype(np.float32)
    w = alpha[:, None, None, None]
    images = np.clip(np.rint(w * data.images[a] + (1 - w) * data.images[b]), 0, 255).astype(np.uint8)
    suffix = "" if mirrors else "_plain"
    tag = f"{_files_key(data.paths)}_morphs{count}_s{seed}{suffix}"
    cache = Path(cache_dir) / f"teacher_{name}_morphs{count}_s{seed}{suffix}.npz" if cache_dir else None
    teacher = _teacher_cached(images, tag, name, cache, batch=batch, log=log, embedder=embedder, what="morphs",
                              paths=[f"{data.paths[i]} + {data.paths[j]}" for i, j in zip(a, b, strict=True)],
                              workers=workers, mirrors=mirrors)
    return Morphs(images, np.stack([a, b], 1), alpha, teacher)


def centre_teacher(vectors: np.ndarray, train_index: np.ndarray | None = None, *, mean: np.ndarray | None = None
                   ) -> tuple[np.ndarray, np.ndarray]:
    """(teacher vectors minus the training images' mean teacher vector, unit length again; that mean).

    dlib's descriptors share one large direction (on glint24 the mean of the training images' unit descriptors
    has length 0.92): predicting that mean alone scores cosine 0.92, so a cosine loss on raw descriptors says
    little about identity. Centred, the identity part is the whole target (the teacher's verification AUC is
    unchanged: 0.9956 on the unseen people either way)."""
    v = np.asarray(vectors, np.float32)
    if mean is None:
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
