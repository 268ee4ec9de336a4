"""Per-track sliding windows over per-face vectors: ring buffers, stride, timeout and z-scoring.

Pure numpy, so the windowing rules are testable without models or a graph. The
``temporal`` node feeds one frame at a time; a track's window is emitted once it
holds ``length`` vectors and then every ``stride`` vectors after that. A track
unseen for longer than ``timeout`` (in the caller's clock: frames or seconds) is
forgotten, so its ring buffer is freed and a returning face starts afresh; a
track that returns sooner continues its window across the gap.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from facegraph import ModelError


def load_stats(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """``mean`` and ``std`` (float32 [D]) from a feature_stats.npz; ModelError naming the file otherwise."""
    path = Path(path).expanduser()
    try:
        with np.load(path) as data:
            mean = np.asarray(data["mean"], dtype=np.float32).reshape(-1)
            std = np.asarray(data["std"], dtype=np.float32).reshape(-1)
    except FileNotFoundError:
        raise ModelError(f"{path}: feature stats file not found") from None
    except KeyError as exc:
        raise ModelError(f"{path}: feature stats need arrays 'mean' and 'std' (missing {exc})") from None
    except (OSError, ValueError) as exc:
        raise ModelError(f"{path}: unreadable feature stats ({exc})") from None
    if mean.shape != std.shape:
        raise ModelError(f"{path}: mean has {mean.size} values but std has {std.size}")
    return mean, std


def stats_from_metadata(meta: dict, model_path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Feature stats recorded in a temporal model's metadata: inline mean/std, or a path beside the model."""
    stats = meta.get("feature_stats")
    if not isinstance(stats, dict):
        raise ModelError(f"{model_path}: its metadata records no feature_stats")
    if "mean" in stats and "std" in stats:
        mean = np.asarray(stats["mean"], np.float32).reshape(-1)
        std = np.asarray(stats["std"], np.float32).reshape(-1)
        if mean.shape != std.shape:
            raise ModelError(f"{model_path}: feature_stats mean has {mean.size} values but std has {std.size}")
        return mean, std
    if "path" in stats:
        return load_stats(Path(model_path).parent / stats["path"])
    raise ModelError(f"{model_path}: feature_stats needs mean and std, or a path")


def zscore(x: np.ndarray, mean: np.ndarray, std: np.ndarray, eps: float = 1e-6) -> np.ndarray:
    """(x − mean) / std over the last axis, std floored at ``eps`` so constant features stay finite."""
    return ((x - mean) / np.maximum(std, eps)).astype(np.float32, copy=False)


@dataclass
class _Track:
    buffer: np.ndarray  # [T, D] ring
    count: int = 0  # vectors pushed since the track (re)started
    last_seen: float = 0.0

    def push(self, vec: np.ndarray, now: float) -> None:
        self.buffer[self.count % len(self.buffer)] = vec
        self.count += 1
        self.last_seen = now

    def window(self) -> np.ndarray:
        """The last T vectors, oldest first."""
        start = self.count % len(self.buffer)
        return np.roll(self.buffer, -start, axis=0)


class TrackWindows:
    """Ring buffers per track id; ``push`` one frame's vectors, get the windows that are due."""

    def __init__(
        self,
        length: int,
        stride: int = 1,
        timeout: float = 30.0,
        mean: np.ndarray | None = None,
        std: np.ndarray | None = None,
    ) -> None:
        if length < 1 or stride < 1:
            raise ValueError(f"length and stride must be >= 1, got {length} and {stride}")
        self.length = int(length)
        self.stride = int(stride)
        self.timeout = float(timeout)
        self.mean = None if mean is None else np.asarray(mean, dtype=np.float32)
        self.std = None if std is None else np.asarray(std, dtype=np.float32)
        self.dim: int | None = None if self.mean is None else int(self.mean.size)
        self.tracks: dict[int, _Track] = {}

    def expire(self, now: float) -> list[int]:
        """Forget tracks last seen more than ``timeout`` ago; return their ids."""
        gone = [tid for tid, t in self.tracks.items() if now - t.last_seen > self.timeout]
        for tid in gone:
            del self.tracks[tid]
        return gone

    def push(self, now: float, vectors: np.ndarray, track_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Add one frame's vectors [N, D] for ``track_ids`` [N] at time ``now``.

        Returns (seq float32 [M, T, D], track_id int32 [M]) for the tracks whose
        window is due at this frame, in the order the tracks appear in the input.
        """
        vectors = np.asarray(vectors, dtype=np.float32)
        track_ids = np.asarray(track_ids).reshape(-1)
        if vectors.ndim != 2 or len(vectors) != len(track_ids):
            raise ValueError(f"expected vectors [N, D] and track ids [N], got {vectors.shape} and {track_ids.shape}")
        self.expire(now)
        dim = vectors.shape[1]
        if self.dim is None:
            self.dim = dim
        elif dim != self.dim and len(vectors):
            source = "feature stats" if self.mean is not None else "earlier frames"
            raise ValueError(f"vectors have D={dim} but {source} have D={self.dim}")
        if self.mean is not None and len(vectors):
            vectors = zscore(vectors, self.mean, self.std)
        due: list[int] = []
        seen: set[int] = set()
        for vec, tid in zip(vectors, track_ids.tolist(), strict=True):
            tid = int(tid)
            if tid in seen:  # a tracker should never repeat an id within a frame; keep the first
                continue
            seen.add(tid)
            track = self.tracks.get(tid)
            if track is None:
                track = self.tracks[tid] = _Track(np.zeros((self.length, dim), np.float32))
            track.push(vec, now)
            if track.count >= self.length and (track.count - self.length) % self.stride == 0:
                due.append(tid)
        if not due:
            return np.zeros((0, self.length, self.dim or dim), np.float32), np.zeros(0, np.int32)
        seq = np.stack([self.tracks[t].window() for t in due]).astype(np.float32, copy=False)
        return seq, np.asarray(due, dtype=np.int32)
