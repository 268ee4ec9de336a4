"""Face verification and identification scores of any embedder on class folders (one folder per person).

Every pair of images is a trial: same folder = genuine, different = impostor,
scored by cosine similarity. ROC AUC over all trials, the true-accept rate at a
false-accept rate of 1e-3 (threshold from the impostor scores), and closed-set
rank-1 (leave-one-out nearest neighbour: each image against every other). People
the embedder was not trained on measure what it does for users' faces.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from .errors import TrainingError


def pair_scores(vectors: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Cosine scores of every pair i < j, and whether the pair is genuine."""
    sim = vectors @ vectors.T
    i, j = np.triu_indices(len(vectors), k=1)
    return sim[i, j].astype(np.float64), labels[i] == labels[j]


def roc_auc(scores: np.ndarray, genuine: np.ndarray) -> float:
    """Probability that a genuine pair scores above an impostor pair (ties count half): Mann–Whitney U."""
    from scipy.stats import rankdata

    n_pos, n_neg = int(genuine.sum()), int((~genuine).sum())
    if not n_pos or not n_neg:
        raise TrainingError("verification needs genuine and impostor pairs: ≥ 2 people, one with ≥ 2 images")
    ranks = rankdata(scores)
    return float((ranks[genuine].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def tar_at_far(scores: np.ndarray, genuine: np.ndarray, far: float = 1e-3) -> tuple[float, float]:
    """(TAR, threshold): the threshold lets through a ``far`` share of impostor pairs at most."""
    impostor = np.sort(scores[~genuine])
    k = int(np.floor(far * len(impostor)))  # impostors allowed above the threshold
    threshold = impostor[len(impostor) - k - 1] if k < len(impostor) else -np.inf
    return float((scores[genuine] > threshold).mean()), float(threshold)


def rank1(vectors: np.ndarray, labels: np.ndarray) -> float:
    """Leave-one-out closed-set identification: is each image's nearest other image the same person?"""
    sim = vectors @ vectors.T
    np.fill_diagonal(sim, -np.inf)
    counts = {c: int((labels == c).sum()) for c in np.unique(labels)}
    probes = np.array([counts[c] > 1 for c in labels])
    return float((labels[sim.argmax(1)] == labels)[probes].mean())


def rank1_gallery(probe: np.ndarray, probe_labels: np.ndarray, gallery: np.ndarray,
                  gallery_labels: np.ndarray) -> float:
    """Closed-set identification against a separate gallery: is each probe's nearest gallery image its person?"""
    if not len(probe) or not len(gallery):
        return float("nan")
    return float((gallery_labels[(probe @ gallery.T).argmax(1)] == probe_labels).mean())


def verify(embedder: Any, root: str | Path, *, max_per_class: int = 0, batch: int = 64,
           progress: bool = True) -> dict[str, Any]:
    import cv2
    from tqdm import tqdm

    from . import imagefolder

    root = Path(root).expanduser()
    if not root.is_dir():
        raise TrainingError(f"--data {root}: no such folder")
    names, items = imagefolder.scan(root)
    if max_per_class:
        taken: dict[int, int] = {}
        kept = []
        for path, label in items:
            taken[label] = taken.get(label, 0) + 1
            if taken[label] <= max_per_class:
                kept.append((path, label))
        items = kept
    vecs = []
    for start in tqdm(range(0, len(items), batch), disable=not progress or None, leave=False, unit="batch"):
        images = []
        for path, _ in items[start:start + batch]:
            image = cv2.imread(str(path), cv2.IMREAD_COLOR)
            if image is None:
                raise TrainingError(f"{path}: not a readable image")
            images.append(cv2.resize(image, (112, 112)) if image.shape[:2] != (112, 112) else image)
        vecs.append(embedder(np.stack(images)))
    vectors = np.concatenate(vecs).astype(np.float32)
    vectors /= np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
    labels = np.array([label for _, label in items])
    scores, genuine = pair_scores(vectors, labels)
    tar, threshold = tar_at_far(scores, genuine, 1e-3)
    return {"data": str(root), "people": len(names), "images": len(items), "dim": int(vectors.shape[1]),
            "genuine_pairs": int(genuine.sum()), "impostor_pairs": int((~genuine).sum()),
            "roc_auc": roc_auc(scores, genuine), "tar_at_far_1e-3": tar, "threshold_at_far_1e-3": threshold,
            "rank1": rank1(vectors, labels)}
