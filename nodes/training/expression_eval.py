"""The bars of the expression models, each as a function ``facegraph eval`` calls.

* :func:`eval_reconstruction`: enroll the person of a video on its first N frames
  (both networks frozen), then PSNR/SSIM of the reconstructions of the remaining
  frames against the per-subject mean-face baseline (the mean of the enrollment crops).
* :func:`linear_probe`: a logistic regression on the tokens of labelled face images
  against the same probe on their raw pixels, cross-validated with whole subjects
  on one side (CK+: ``S<subject>_…``).
* :func:`identity_swap`: a video's faces rendered as another subject; an embedder
  says whether they now look like the target rather than the source, and the tokens
  re-extracted from the swapped faces are compared with the source frames' tokens.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import numpy as np

from .errors import TrainingError


def _ssim(a: np.ndarray, b: np.ndarray) -> float:
    from skimage.metrics import structural_similarity

    return float(structural_similarity(a, b, channel_axis=-1, data_range=1.0))


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b) ** 2))
    return float(10 * np.log10(1.0 / max(mse, 1e-10)))


def _encode(t: Any, x: Any, subject: Any) -> Any:
    import torch

    mean = torch.tensor(t.config.mean).view(1, 3, 1, 1)
    std = torch.tensor(t.config.std).view(1, 3, 1, 1)
    return t((x - mean) / std, subject.expand(len(x), -1))


def eval_reconstruction(model: str | Path, source: str | Path, *, enroll_frames: int = 32, steps: int = 100,
                        max_frames: int | None = None, threads: int = 0) -> dict[str, Any]:
    """PSNR/SSIM (mean over frames) of reconstructions after enrollment, and of the mean-face baseline."""
    import torch

    from .expression import enroll, enrollment_reference, to_tensor
    from .expression_export import load_parts, track_crops

    torch.set_num_threads(threads or os.cpu_count() or 1)
    t, r, subjects, folder = load_parts(model)
    crops, frame_ids = track_crops(source, t.config.image_size, max_frames=max_frames)
    if len(crops) <= enroll_frames:
        raise TrainingError(f"--source {source}: its longest face track has {len(crops)} frames, not more than "
                            f"--enroll-frames {enroll_frames}")
    x = to_tensor(crops)
    enrol, rest = x[:enroll_frames], x[enroll_frames:]
    vec = enroll(t, r, enrol, torch.from_numpy(subjects.get("mean")), steps=steps)
    reference = enrollment_reference(enrol)[None] if r.uses_reference else None
    with torch.no_grad():
        outs = []
        for s in range(0, len(rest), 64):
            chunk = rest[s : s + 64]
            subject = vec[None]
            outs.append(r(subject.expand(len(chunk), -1), _encode(t, chunk, subject), reference))
        rec = torch.cat(outs).permute(0, 2, 3, 1).numpy()
    truth = rest.permute(0, 2, 3, 1).numpy()
    mean_face = enrol.permute(0, 2, 3, 1).numpy().mean(0)
    psnr = [_psnr(a, b) for a, b in zip(rec, truth, strict=True)]
    ssim = [_ssim(a, b) for a, b in zip(rec, truth, strict=True)]
    base = [_psnr(mean_face, b) for b in truth]
    base_ssim = [_ssim(mean_face.astype(np.float32), b) for b in truth]
    return {"model": str(folder), "source": str(source), "image_size": t.config.image_size,
            "enroll_frames": enroll_frames, "enroll_steps": steps, "eval_frames": len(truth),
            "first_eval_frame": int(frame_ids[enroll_frames]), "psnr": float(np.mean(psnr)),
            "ssim": float(np.mean(ssim)), "baseline_psnr": float(np.mean(base)),
            "baseline_ssim": float(np.mean(base_ssim)),
            "psnr_gain_db": float(np.mean(psnr) - np.mean(base))}


# -- linear probe ---------------------------------------------------------------------------------------------
def _images_by_class(root: Path) -> tuple[list[Path], list[str]]:
    from .imagefolder import has_images, scan

    if not root.is_dir():
        raise TrainingError(f"--data {root}: no such folder")
    names, _ = scan(root)
    paths, labels = [], []
    for name in names:
        for p in sorted((root / name).iterdir()):
            if has_images(p.parent) and p.suffix.lower() in (".png", ".jpg", ".jpeg", ".bmp"):
                paths.append(p)
                labels.append(name)
    return paths, labels


def linear_probe(model: str | Path, data: str | Path, *, group_by: str = r"^(S\d+)", folds: int = 5,
                 threads: int = 0, seed: int = 0) -> dict[str, Any]:
    """Accuracy of one logistic-regression probe on tokens and on raw pixels, subject-grouped k-fold."""
    import cv2
    import torch
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedGroupKFold
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from .expression import to_tensor
    from .expression_export import load_parts

    torch.set_num_threads(threads or os.cpu_count() or 1)
    t, _, subjects, _ = load_parts(model)
    paths, labels = _images_by_class(Path(data).expanduser())
    groups = []
    for p in paths:
        m = re.search(group_by, p.name)
        if m is None:
            raise TrainingError(f"--group-by {group_by!r}: does not match {p.name}")
        groups.append(m.group(1) if m.groups() else m.group(0))
    raw, rgb = [], []
    size = t.config.image_size
    for p in paths:
        img = cv2.imread(str(p), cv2.IMREAD_COLOR)
        if img is None:
            raise TrainingError(f"--data: cannot read {p}")
        raw.append(cv2.cvtColor(img, cv2.COLOR_BGR2GRAY).reshape(-1).astype(np.float32) / 255.0)
        rgb.append(cv2.resize(img, (size, size), interpolation=cv2.INTER_LINEAR)[..., ::-1])
    x = to_tensor(np.stack(rgb))
    mean = torch.from_numpy(subjects.get("mean"))[None]
    with torch.no_grad():
        tokens = torch.cat([_encode(t, x[s : s + 128], mean) for s in range(0, len(x), 128)]).flatten(1).numpy()
    y = np.unique(np.asarray(labels), return_inverse=True)[1]
    splitter = StratifiedGroupKFold(n_splits=folds, shuffle=True, random_state=seed)
    scores: dict[str, list[float]] = {"tokens": [], "pixels": []}
    for train, test in splitter.split(tokens, y, np.asarray(groups)):
        for name, feats in (("tokens", tokens), ("pixels", np.stack(raw))):
            probe = make_pipeline(StandardScaler(), LogisticRegression(max_iter=3000, C=0.1))
            probe.fit(feats[train], y[train])
            scores[name].append(float((probe.predict(feats[test]) == y[test]).mean()))
    return {"data": str(data), "images": len(paths), "subjects": len(set(groups)), "classes": int(y.max() + 1),
            "folds": folds, "token_features": int(tokens.shape[1]), "pixel_features": len(raw[0]),
            "tokens_accuracy": float(np.mean(scores["tokens"])), "pixels_accuracy": float(np.mean(scores["pixels"])),
            "tokens_folds": scores["tokens"], "pixels_folds": scores["pixels"]}


# -- identity swap --------------------------------------------------------------------------------------------
def identity_swap(model: str | Path, source: str | Path, target: str, target_crops: str | Path, *,
                  embedder: str, enroll_frames: int = 32, steps: int = 100, max_frames: int | None = None,
                  threads: int = 0) -> dict[str, Any]:
    """Swap a video's face to ``target`` and measure identity (an embedder) and expression (tokens) kept.

    ``target_crops``: a folder of the target's real aligned crops (BGR, any size) for its reference
    embedding. Real crops go through the same ``image_size`` round trip as the rendered faces, so
    resolution is not what tells them apart.
    """
    import cv2
    import torch

    from ..models._dlib import open_embedder
    from .expression import enroll, enrollment_reference, to_reference, to_tensor
    from .expression_export import load_parts, track_crops

    torch.set_num_threads(threads or os.cpu_count() or 1)
    t, r, subjects, _ = load_parts(model)
    size = t.config.image_size
    crops, _ = track_crops(source, size, max_frames=max_frames)
    if len(crops) <= enroll_frames:
        raise TrainingError(f"--source {source}: {len(crops)} face frames, need more than --enroll-frames")
    x = to_tensor(crops)
    src_vec = enroll(t, r, x[:enroll_frames], torch.from_numpy(subjects.get("mean")), steps=steps)
    tgt_vec = torch.from_numpy(subjects.get(target, "--target"))
    rest = x[enroll_frames:]
    src_ref = tgt_ref = None
    if r.uses_reference:
        src_ref = enrollment_reference(x[:enroll_frames])[None]
        tgt_ref = to_reference(subjects.reference(target, "--target")[None])
    with torch.no_grad():
        tokens = _encode(t, rest, src_vec[None])
        swapped = r(tgt_vec[None].expand(len(rest), -1), tokens, tgt_ref)
        own = r(src_vec[None].expand(len(rest), -1), tokens, src_ref)
        again = _encode(t, swapped, tgt_vec[None])
    files = sorted(p for p in Path(target_crops).expanduser().rglob("*.jpg"))[:200]
    if not files:
        raise TrainingError(f"--target-crops {target_crops}: no .jpg crops there")

    def to_bgr(images: Any) -> np.ndarray:
        arr = np.clip(np.rint(images.permute(0, 2, 3, 1).numpy() * 255), 0, 255).astype(np.uint8)[..., ::-1]
        return np.stack([cv2.resize(a, (112, 112), interpolation=cv2.INTER_LINEAR) for a in arr])

    def round_trip(bgr: np.ndarray) -> np.ndarray:
        small = cv2.resize(bgr, (size, size), interpolation=cv2.INTER_AREA)
        return cv2.resize(small, (112, 112), interpolation=cv2.INTER_LINEAR)

    emb = open_embedder(embedder, threads=threads or 1)
    target_ref = emb(np.stack([round_trip(cv2.imread(str(f))) for f in files])).mean(0)
    source_ref = emb(np.stack([round_trip(c[..., ::-1].copy()) for c in crops[enroll_frames:]])).mean(0)
    target_ref /= np.linalg.norm(target_ref)
    source_ref /= np.linalg.norm(source_ref)
    e_swap, e_own = emb(to_bgr(swapped)), emb(to_bgr(own))
    to_target, to_source = e_swap @ target_ref, e_swap @ source_ref
    # expression kept: each swapped frame's re-extracted tokens against its own source frame's, and against
    # the source tokens of the other frames (how far apart expressions of this video are anyway)
    a, b = again.flatten(1).numpy(), tokens.flatten(1).numpy()
    d = ((a[:, None] - b[None]) ** 2).mean(-1)
    own_d = np.diag(d)
    rank = np.array([(d[i] < own_d[i]).sum() / (len(d) - 1) for i in range(len(d))])
    return {"source": str(source), "target": target, "embedder": embedder, "frames": len(rest),
            "swap_cos_to_target": float(to_target.mean()), "swap_cos_to_source": float(to_source.mean()),
            "swap_closer_to_target_fraction": float((to_target > to_source).mean()),
            "own_reconstruction_cos_to_source": float((e_own @ source_ref).mean()),
            "own_reconstruction_cos_to_target": float((e_own @ target_ref).mean()),
            "token_mse_to_own_frame": float(own_d.mean()),
            "token_mse_to_other_frames": float((d.sum(1) - own_d).mean() / (len(d) - 1)),
            "own_frame_rank_fraction": float(rank.mean())}
