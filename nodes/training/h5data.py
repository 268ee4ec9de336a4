"""The teacher HDF5 layout the landmark/pose and AU nets train on: a chunked, appendable writer and a checked reader.

Layout (one row per face sample)::

    images          (N, 112, 112, 3) uint8 RGB   aligned crops
    hog_features    (N, 4464) float32            FHOG of the OpenFace-aligned crop (12×12 cells × 31)
    landmarks       (N, 68, 2) float32           the teacher's 68 points in crop pixels
    global_params   (N, 6) float32               [scale, rx, ry, rz, tx, ty] in crop pixels (OpenFace's PDM)
    local_params    (N, 34) float32              the teacher's PDM shape coefficients
    au_intensities  (N, 17) float32              the teacher's AU*_r, 0-5
    bboxes          (N, 4) float32               x1, y1, x2, y2 of the teacher's landmarks in the frame
    metadata/video_names (N,) str, metadata/frame_indices (N,) int64, metadata/quality_scores (N,) float32,
    metadata/matrices (N, 2, 3) float32          frame → crop transform (maps crop results back)

Only h5py (no torch), so ``facegraph data hdf5`` runs on a plain install with the extra.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .errors import TrainingError

SIZE = 112
NUM_LANDMARKS, NUM_GLOBAL, NUM_LOCAL, NUM_AUS, HOG_DIM = 68, 6, 34, 17, 4464

#: dataset name → (per-row shape, dtype)
ARRAYS: dict[str, tuple[tuple[int, ...], Any]] = {
    "images": ((SIZE, SIZE, 3), np.uint8),
    "hog_features": ((HOG_DIM,), np.float32),
    "landmarks": ((NUM_LANDMARKS, 2), np.float32),
    "global_params": ((NUM_GLOBAL,), np.float32),
    "local_params": ((NUM_LOCAL,), np.float32),
    "au_intensities": ((NUM_AUS,), np.float32),
    "bboxes": ((4,), np.float32),
    "metadata/frame_indices": ((), np.int64),
    "metadata/quality_scores": ((), np.float32),
    "metadata/matrices": ((2, 3), np.float32),
}
NAMES = "metadata/video_names"
CHUNK = 64


def _h5py() -> Any:
    try:
        import h5py
    except ImportError:
        raise TrainingError("HDF5 training data needs h5py: pip install 'facegraph[train]'") from None
    return h5py


class H5Writer:
    """Appends samples to a training file; an existing file of this layout is extended, never overwritten.

    ``expected`` (a count hint) sizes the first allocation so a long run does not resize
    every chunk; the datasets are trimmed to the rows written on :meth:`close`.
    """

    def __init__(self, path: str | Path, *, expected: int = 0, attrs: dict[str, Any] | None = None) -> None:
        h5py = _h5py()
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        existed = self.path.exists()
        try:
            self.file = h5py.File(self.path, "a")
        except OSError as exc:
            raise TrainingError(f"{self.path}: cannot open for writing ({exc})") from None
        if existed and "images" in self.file:
            check_layout(self.file, self.path)
            self.rows = int(self.file["images"].shape[0])
        else:
            self.rows = 0
            start = max(0, int(expected))
            for name, (shape, dtype) in ARRAYS.items():
                self.file.create_dataset(name, shape=(start, *shape), maxshape=(None, *shape), dtype=dtype,
                                         chunks=(CHUNK, *shape), compression="lzf" if name == "images" else None)
            self.file.create_dataset(NAMES, shape=(start,), maxshape=(None,), dtype=h5py.string_dtype(),
                                     chunks=(CHUNK,))
            self.file.attrs["layout"] = "facegraph-teacher-v1"
        for key, value in (attrs or {}).items():
            self.file.attrs[key] = value
        self.start = self.rows

    def append(self, batch: dict[str, np.ndarray], video_names: list[str]) -> None:
        """Add ``len(video_names)`` rows; ``batch`` holds every array of the layout."""
        n = len(video_names)
        if n == 0:
            return
        end = self.rows + n
        for name, (shape, dtype) in ARRAYS.items():
            data = np.asarray(batch[name], dtype)
            if data.shape != (n, *shape):
                raise TrainingError(f"{self.path}: {name} of shape {data.shape}, expected {(n, *shape)}")
            ds = self.file[name]
            if ds.shape[0] < end:
                ds.resize(max(end, ds.shape[0] + CHUNK * 4), axis=0)
            ds[self.rows:end] = data
        ds = self.file[NAMES]
        if ds.shape[0] < end:
            ds.resize(max(end, ds.shape[0] + CHUNK * 4), axis=0)
        ds[self.rows:end] = np.asarray(video_names, dtype=object)
        self.rows = end

    def close(self) -> None:
        if self.file:
            for name in (*ARRAYS, NAMES):
                self.file[name].resize(self.rows, axis=0)
            self.file.close()

    def __enter__(self) -> H5Writer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def check_layout(f: Any, path: Path) -> None:
    missing = [name for name in (*ARRAYS, NAMES) if name not in f]
    if missing:
        raise TrainingError(f"{path}: not a facegraph teacher file (missing {', '.join(missing)})")
    for name, (shape, _) in ARRAYS.items():
        if f[name].shape[1:] != shape:
            raise TrainingError(f"{path}: {name} has rows of shape {f[name].shape[1:]}, expected {shape}")


@dataclass
class TeacherData:
    """A teacher file in memory (the shared videos make a few thousand rows: ≈ 40 MB per thousand)."""

    images: np.ndarray
    landmarks: np.ndarray
    global_params: np.ndarray
    local_params: np.ndarray
    au_intensities: np.ndarray
    video_names: np.ndarray
    frame_indices: np.ndarray
    quality_scores: np.ndarray
    matrices: np.ndarray
    au_names: list[str]

    def __len__(self) -> int:
        return len(self.images)

    def subset(self, index: np.ndarray) -> TeacherData:
        return TeacherData(*(getattr(self, k)[index] for k in (
            "images", "landmarks", "global_params", "local_params", "au_intensities", "video_names",
            "frame_indices", "quality_scores", "matrices")), au_names=self.au_names)

    def videos(self) -> list[str]:
        return sorted(set(self.video_names.tolist()))


def read(path: str | Path, *, min_quality: float = 0.0) -> TeacherData:
    """Load a teacher file (rows below ``min_quality`` dropped); a missing or foreign file is a one-line error."""
    h5py = _h5py()
    path = Path(path)
    if not path.is_file():
        raise TrainingError(f"--data {path}: no such file")
    try:
        f = h5py.File(path, "r")
    except OSError as exc:
        raise TrainingError(f"--data {path}: not an HDF5 file ({exc})") from None
    with f:
        check_layout(f, path)
        if f["images"].shape[0] == 0:
            raise TrainingError(f"--data {path}: the file holds no samples")
        quality = f["metadata/quality_scores"][:]
        keep = np.flatnonzero(quality >= min_quality)
        names = np.array([n.decode() if isinstance(n, bytes) else str(n) for n in f[NAMES][:]])
        au_names = [str(a) for a in f.attrs.get("au_names", [])] or [f"AU{i}" for i in range(NUM_AUS)]
        return TeacherData(
            images=f["images"][:][keep], landmarks=f["landmarks"][:][keep], global_params=f["global_params"][:][keep],
            local_params=f["local_params"][:][keep], au_intensities=f["au_intensities"][:][keep],
            video_names=names[keep], frame_indices=f["metadata/frame_indices"][:][keep],
            quality_scores=quality[keep], matrices=f["metadata/matrices"][:][keep], au_names=au_names)


def split_by_video(names: np.ndarray, val_videos: list[str] | None = None, val_split: float = 0.2,
                   seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Row indices (train, val) with every video wholly on one side.

    ``val_videos`` names the held-out videos (each must exist); otherwise whole videos are
    drawn at random (``seed``) until they hold about ``val_split`` of the rows.
    """
    names = np.asarray(names)
    videos = sorted(set(names.tolist()))
    if val_videos:
        unknown = [v for v in val_videos if v not in videos]
        if unknown:
            raise TrainingError(f"--val-videos {unknown[0]}: not in the data (videos: {', '.join(videos)})")
        held = set(val_videos)
    else:
        if len(videos) < 2:
            raise TrainingError(f"the data holds one video ({videos[0]}): a split by video needs two or more")
        order = np.random.default_rng(seed).permutation(len(videos))
        held, rows = set(), 0
        for i in order:
            if rows >= val_split * len(names) and held:
                break
            held.add(videos[i])
            rows += int((names == videos[i]).sum())
        if len(held) == len(videos):
            held.discard(videos[order[-1]])
    val = np.flatnonzero(np.isin(names, sorted(held)))
    train = np.flatnonzero(~np.isin(names, sorted(held)))
    if len(train) == 0:
        raise TrainingError("every video is held out: nothing is left to train on")
    return train, val
