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


YAW_BINS = ((0.0, 15.0), (15.0, 30.0), (30.0, 45.0), (45.0, 180.0))
YAW_NOTE = "yaw-binned figures skipped: yaw unknown (pass --yaw to estimate it with the pose node's maths)"


def yaw_binned(vectors: np.ndarray, labels: np.ndarray, yaw_deg: np.ndarray) -> list[dict[str, Any]]:
    """Per |yaw| bin (0–15°, 15–30°, 30–45°, > 45°): ROC AUC and TAR@FAR 1e-3 over the pairs whose larger |yaw|
    falls in the bin, and rank-1 of the images in the bin against all others."""
    yaw = np.abs(np.asarray(yaw_deg, np.float64))
    scores, genuine = pair_scores(vectors, labels)
    i, j = np.triu_indices(len(vectors), k=1)
    pair_yaw = np.fmax(yaw[i], yaw[j])
    sim = vectors @ vectors.T
    np.fill_diagonal(sim, -np.inf)
    nearest_ok = labels[sim.argmax(1)] == labels
    rows = []
    for lo, hi in YAW_BINS:
        row: dict[str, Any] = {"bin": f"{lo:.0f}-{hi:.0f}" if hi < 180 else f">{lo:.0f}",
                               "images": int(((yaw >= lo) & (yaw < hi)).sum())}
        sel = (pair_yaw >= lo) & (pair_yaw < hi)
        g = genuine[sel]
        row["genuine_pairs"], row["impostor_pairs"] = int(g.sum()), int((~g).sum())
        if g.any() and (~g).any():
            row["roc_auc"] = roc_auc(scores[sel], g)
            row["tar_at_far_1e-3"] = tar_at_far(scores[sel], g, 1e-3)[0]
        in_bin = (yaw >= lo) & (yaw < hi)
        if in_bin.any():
            row["rank1"] = float(nearest_ok[in_bin].mean())
        rows.append(row)
    return rows


def image_yaw(images: np.ndarray, threads: int = 1) -> tuple[np.ndarray, int]:
    """|yaw| in degrees per aligned crop (FaceMesh on the crop, then the pose node's solvePnP; NaN where
    landmarks failed) and how many failed."""
    from ..face._crop_landmarks import MeshOnCrops, crop_pose

    points, valid, _ = MeshOnCrops(threads=threads)(images)
    pose = crop_pose(points, valid, images.shape[1])
    return np.degrees(pose[:, 1]), int((~valid).sum())


def verify(embedder: Any, root: str | Path, *, max_per_class: int = 0, batch: int = 64,
           progress: bool = True, people: list[str] | None = None, yaw: bool = False) -> dict[str, Any]:
    import cv2
    from tqdm import tqdm

    from . import imagefolder

    root = Path(root).expanduser()
    if not root.is_dir():
        raise TrainingError(f"--data {root}: no such folder")
    names, items = imagefolder.scan(root)
    if people:
        unknown = sorted(set(people) - set(names))
        if unknown:
            raise TrainingError(f"--people: '{unknown[0]}' is not a folder of {root}")
        items = [(p, label) for p, label in items if names[label] in people]
    if max_per_class:
        taken: dict[int, int] = {}
        kept = []
        for path, label in items:
            taken[label] = taken.get(label, 0) + 1
            if taken[label] <= max_per_class:
                kept.append((path, label))
        items = kept
    vecs, every = [], []
    for start in tqdm(range(0, len(items), batch), disable=not progress or None, leave=False, unit="batch"):
        images = []
        for path, _ in items[start:start + batch]:
            image = cv2.imread(str(path), cv2.IMREAD_COLOR)
            if image is None:
                raise TrainingError(f"{path}: not a readable image")
            images.append(cv2.resize(image, (112, 112)) if image.shape[:2] != (112, 112) else image)
        vecs.append(embedder(np.stack(images)))
        if yaw:
            every.append(np.stack(images))
    vectors = np.concatenate(vecs).astype(np.float32)
    vectors /= np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
    labels = np.array([label for _, label in items])
    scores, genuine = pair_scores(vectors, labels)
    tar, threshold = tar_at_far(scores, genuine, 1e-3)
    out = {"data": str(root), "people": len(np.unique(labels)), "images": len(items), "dim": int(vectors.shape[1]),
           "genuine_pairs": int(genuine.sum()), "impostor_pairs": int((~genuine).sum()),
           "roc_auc": roc_auc(scores, genuine), "tar_at_far_1e-3": tar, "threshold_at_far_1e-3": threshold,
           "rank1": rank1(vectors, labels)}
    if yaw:
        yaw_deg, failed = image_yaw(np.concatenate(every))
        out["yaw_source"] = "FaceMesh on the crop + the pose node's solvePnP (|yaw|, degrees)"
        out["yaw_failed"] = failed
        out["yaw_bins"] = yaw_binned(vectors, labels, yaw_deg)
    else:
        out["yaw_note"] = YAW_NOTE
    return out
