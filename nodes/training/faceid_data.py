"""Identity data for face ID: the split (held-out images, held-out people), landmarks, heatmaps and their caches.

An identity folder is ``<person>/<image>``. The split answers the two questions the
bars ask: ``holdout_people`` whole people never trained on (verification on
people never seen), and a ``probe_fraction`` of every person's images kept out of
training (closed-set rank-1 on unseen images; for held-out people those images
are probes against the rest of their own images as the gallery).

Landmarks come from ``face/_crop_landmarks`` (MediaPipe by default, dlib 68 with
the ``[dlib]`` extra), cached per extractor in ``landmarks_<extractor>.npz``
(``--cache_landmarks``); heatmaps from ``face/_heatmaps`` (the implementation the
``embed`` node uses too), cached as float16 in ``heatmaps_<key>.npy``
(``--cache_heatmaps``). Both caches are checked against the file list.
"""

from __future__ import annotations

import hashlib
import json
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .errors import TrainingError
from .imagefolder import scan


@dataclass
class IdentityData:
    """Every image of an identity folder in memory (uint8 RGB [N,S,S,3] at the crop's own size) + the split."""

    images: np.ndarray
    labels: np.ndarray  # person index over ``people``
    paths: list[str]
    people: list[str]
    train_people: list[str] = field(default_factory=list)
    role: np.ndarray = field(default_factory=lambda: np.zeros(0, "U7"))  # train | probe | unseen

    def where(self, role: str) -> np.ndarray:
        return np.flatnonzero(self.role == role)


def _read(path: Path, side: int) -> np.ndarray:
    import cv2

    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise TrainingError(f"{path}: not a readable image")
    if image.shape[:2] != (side, side):
        image = cv2.resize(image, (side, side), interpolation=cv2.INTER_AREA)
    return image


def load_identities(root: str | Path, *, side: int = 112, holdout_people: int = 6, probe_fraction: float = 0.2,
                    seed: int = 0, min_images: int = 2) -> IdentityData:
    """Read ``root/<person>/*`` (BGR as OpenCV reads it, at ``side``) and split it reproducibly by ``seed``."""
    people, items = scan(root)
    counts = np.bincount([label for _, label in items], minlength=len(people))
    few = [p for p, c in zip(people, counts, strict=False) if c < min_images]
    if few:
        raise TrainingError(f"--data_root {root}: '{few[0]}' has fewer than {min_images} images")
    if not 0 <= holdout_people <= len(people) - 2:
        raise TrainingError(f"--holdout-people {holdout_people}: {root} has {len(people)} people; keep ≥ 2 to train")
    if not 0.0 < probe_fraction < 1.0:
        raise TrainingError(f"--probe-fraction must be between 0 and 1, got {probe_fraction}")
    with ThreadPoolExecutor(4) as pool:
        images = np.stack(list(pool.map(lambda it: _read(it[0], side), items)))
    labels = np.array([label for _, label in items], np.int64)
    rng = np.random.default_rng(seed)
    unseen = set(rng.choice(len(people), holdout_people, replace=False).tolist()) if holdout_people else set()
    role = np.empty(len(items), "U7")
    for person in range(len(people)):
        index = np.flatnonzero(labels == person)
        if person in unseen:
            role[index] = "unseen"
            continue
        probes = rng.choice(index, max(1, round(probe_fraction * len(index))), replace=False)
        role[index] = "train"
        role[probes] = "probe"
    train_people = [p for i, p in enumerate(people) if i not in unseen]
    return IdentityData(images, labels, [str(p) for p, _ in items], people, train_people, role)


def split_record(data: IdentityData) -> dict[str, Any]:
    """What the run was trained and measured on, for the history and the model card."""
    return {"people": len(data.people), "images": len(data.paths), "train_people": data.train_people,
            "unseen_people": [p for p in data.people if p not in data.train_people],
            "train_images": int((data.role == "train").sum()), "probe_images": int((data.role == "probe").sum()),
            "unseen_images": int((data.role == "unseen").sum())}


def _files_key(paths: list[str]) -> str:
    return hashlib.sha1("\n".join(paths).encode()).hexdigest()[:16]


def landmarks_for(data: IdentityData, extractor: str, *, cache_dir: str | Path | None, threads: int = 1,
                  log: Any = print) -> tuple[np.ndarray, np.ndarray]:
    """(points [N,K,2|3] crop px, valid [N]) for every image; read from / written to ``cache_dir`` when given."""
    cache = Path(cache_dir) / f"landmarks_{extractor}.npz" if cache_dir else None
    key = _files_key(data.paths)
    if cache is not None and cache.exists():
        with np.load(cache) as z:
            if str(z["key"]) == key:
                log(f"landmarks: {cache} (cached, {int(z['valid'].sum())}/{len(z['valid'])} found)")
                return z["points"], z["valid"]
        log(f"landmarks: {cache} is for other files; extracting again")
    from ..face._crop_landmarks import open_extractor

    try:
        points, valid, scores = open_extractor(extractor, threads)(data.images)
    except Exception as exc:  # ModelError from a missing extra or model file
        raise TrainingError(str(exc).splitlines()[0]) from None
    log(f"landmarks ({extractor}): found on {int(valid.sum())}/{len(valid)} images")
    if cache is not None:
        cache.parent.mkdir(parents=True, exist_ok=True)
        np.savez_compressed(cache, key=key, points=points, valid=valid, scores=scores,
                            paths=np.array(data.paths))
    return points, valid


def heatmaps_for(points: np.ndarray, valid: np.ndarray, size: int, spec: dict[str, Any], source_size: int, *,
                 cache_dir: str | Path | None, paths: list[str], log: Any = print) -> np.ndarray:
    """float16 [N,C,size,size] heatmap channels (``face/_heatmaps.heatmaps``), cached when ``cache_dir`` is given."""
    from ..face._heatmaps import heatmaps

    tag = hashlib.sha1(json.dumps([spec, size, source_size, _files_key(paths),
                                   float(np.asarray(points, np.float64).sum())], sort_keys=True).encode())
    cache = Path(cache_dir) / f"heatmaps_{tag.hexdigest()[:16]}.npy" if cache_dir else None
    if cache is not None and cache.exists():
        maps = np.load(cache, mmap_mode="r")
        if maps.shape[0] == len(points):
            log(f"heatmaps: {cache} (cached)")
            return np.asarray(maps)
    out = np.concatenate([heatmaps(points[i:i + 256], valid[i:i + 256], size, spec, source_size).astype(np.float16)
                          for i in range(0, len(points), 256)])
    if cache is not None:
        cache.parent.mkdir(parents=True, exist_ok=True)
        np.save(cache, out)
        log(f"heatmaps: wrote {cache} ({out.nbytes / 1e6:.0f} MB)")
    return out
