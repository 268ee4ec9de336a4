"""Labelled face images from class folders, read once into memory, split by group when people repeat.

Layouts: ``DIR/train/<class>/…`` + ``DIR/val/<class>/…`` (a ``test`` folder is
taken as ``val`` when there is no ``val``), or ``DIR/<class>/…`` split by
``val_split``. With ``group_by`` (a regular expression on file names whose first
group, or whole match, names the group: CK+'s ``^S\\d+`` is the subject) no
group lands on both sides of the split, and classes stay as balanced as the
groups allow (scikit-learn's StratifiedGroupKFold).

Small face images (48×48 FER, 112×112 crops) fit in memory many thousands at a
time, so they are decoded once with a thread pool (OpenCV releases the GIL) and
batches are then sliced from one array: no per-epoch decoding for 2 cores to wait on.
"""

from __future__ import annotations

import re
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import TrainingError

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".pgm", ".ppm", ".tif", ".tiff", ".webp"}


@dataclass
class LabelledImages:
    """uint8 images [N, size, size, C] (C = 1 gray or 3 RGB), int64 labels, their files and class names."""

    images: np.ndarray
    labels: np.ndarray
    paths: list[str]
    classes: list[str]

    def __len__(self) -> int:
        return len(self.labels)

    def subset(self, index: np.ndarray) -> LabelledImages:
        return LabelledImages(self.images[index], self.labels[index], [self.paths[i] for i in index], self.classes)

    def counts(self) -> list[int]:
        return np.bincount(self.labels, minlength=len(self.classes)).tolist()


def _images_in(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def has_images(folder: Path) -> bool:
    return any(p.suffix.lower() in IMAGE_SUFFIXES for p in folder.iterdir() if p.is_file())


def scan(root: str | Path, classes: list[str] | None = None) -> tuple[list[str], list[tuple[Path, int]]]:
    """Class names (sorted folder names, or ``classes`` in that order) and (file, label) pairs, checked."""
    root = Path(root).expanduser()
    if not root.is_dir():
        raise TrainingError(f"--data {root}: no such folder")
    folders = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not folders:
        raise TrainingError(f"--data {root}: no class folders (expected {root}/<class>/<image>)")
    names = [p.name for p in folders]
    if classes is not None:
        extra = sorted(set(names) - set(classes))
        if extra:
            raise TrainingError(f"--data {root}: class folder '{extra[0]}' is not one of the model's classes "
                                f"({', '.join(classes)})")
    else:
        classes = names
    items: list[tuple[Path, int]] = []
    for folder in folders:
        files = _images_in(folder)
        if not files:
            raise TrainingError(f"--data {folder}: class '{folder.name}' holds no images "
                                f"({', '.join(sorted(IMAGE_SUFFIXES))})")
        items += [(f, classes.index(folder.name)) for f in files]
    return list(classes), items


def _read(path: Path, size: int, color: str) -> np.ndarray:
    import cv2

    flag = cv2.IMREAD_GRAYSCALE if color == "gray" else cv2.IMREAD_COLOR
    data = np.fromfile(str(path), np.uint8)
    image = cv2.imdecode(data, flag) if data.size else None
    if image is None:
        raise TrainingError(f"{path}: unreadable image (not a decodable {path.suffix or 'image'} file)")
    if image.shape[0] != size or image.shape[1] != size:
        shrink = image.shape[0] > size
        image = cv2.resize(image, (size, size), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)
    if color == "gray":
        return image[..., None]
    return image[..., ::-1] if color == "rgb" else image


def load(root: str | Path, *, size: int, color: str = "gray", classes: list[str] | None = None,
         threads: int = 4) -> LabelledImages:
    """Every image under ``root``'s class folders, resized to ``size``×``size`` in ``color`` (gray, rgb, bgr)."""
    names, items = scan(root, classes)
    with ThreadPoolExecutor(max(1, threads)) as pool:
        images = list(pool.map(lambda item: _read(item[0], size, color), items))
    return LabelledImages(np.stack(images), np.array([label for _, label in items], np.int64),
                          [str(p) for p, _ in items], names)


def groups_of(paths: list[str], pattern: str) -> list[str]:
    """The group of each file name under ``pattern`` (first group, or the whole match)."""
    try:
        regex = re.compile(pattern)
    except re.error as exc:
        raise TrainingError(f"--group-by {pattern!r}: not a regular expression ({exc})") from None
    out = []
    for path in paths:
        m = regex.search(Path(path).name)
        if m is None:
            raise TrainingError(f"--group-by {pattern!r}: does not match file name {Path(path).name!r}")
        out.append(m.group(1) if m.groups() else m.group(0))
    return out


def split(data: LabelledImages, fraction: float, *, group_by: str | None = None,
          seed: int = 0, fold: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Train and validation indices: about ``fraction`` held out, stratified by class, whole groups per side.

    With ``group_by`` the held-out part is fold ``fold`` of round(1 / fraction) folds, so
    ``fold`` 0…k-1 gives a k-fold cross-validation with every person held out once.
    """
    if not 0.0 < fraction < 1.0:
        raise TrainingError(f"--val-split must be between 0 and 1, got {fraction}")
    from sklearn.model_selection import StratifiedGroupKFold, StratifiedShuffleSplit

    index = np.arange(len(data))
    if group_by:
        groups = np.array(groups_of(data.paths, group_by))
        folds = max(2, round(1.0 / fraction))
        if len(set(groups)) < folds:
            raise TrainingError(f"--group-by {group_by!r}: only {len(set(groups))} groups, need ≥ {folds} "
                                f"for --val-split {fraction}")
        if not 0 <= fold < folds:
            raise TrainingError(f"--val-fold must be 0…{folds - 1} for --val-split {fraction}, got {fold}")
        splitter = StratifiedGroupKFold(n_splits=folds, shuffle=True, random_state=seed)
        train, val = list(splitter.split(index, data.labels, groups))[fold]
    else:
        splitter = StratifiedShuffleSplit(n_splits=1, test_size=fraction, random_state=seed)
        train, val = next(splitter.split(index, data.labels))
    return np.sort(train), np.sort(val)


def load_splits(root: str | Path, *, size: int, color: str, val_split: float = 0.2, group_by: str | None = None,
                seed: int = 0, threads: int = 4, fold: int = 0) -> tuple[LabelledImages, LabelledImages]:
    """(train, val) from either layout; class lists of both sides are the same and in the same order."""
    root = Path(root).expanduser()
    train_dir = root / "train"
    val_dir = next((root / n for n in ("val", "valid", "validation", "test") if (root / n).is_dir()), None)
    if train_dir.is_dir() and val_dir is not None:
        train = load(train_dir, size=size, color=color, threads=threads)
        val = load(val_dir, size=size, color=color, classes=train.classes, threads=threads)
        return train, val
    if train_dir.is_dir():
        root = train_dir
    data = load(root, size=size, color=color, threads=threads)
    train_idx, val_idx = split(data, val_split, group_by=group_by, seed=seed, fold=fold)
    return data.subset(train_idx), data.subset(val_idx)
