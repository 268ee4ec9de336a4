"""``temporal``: a per-track sliding window over per-face vectors, for temporal models such as ``gru``.

Every frame's vectors are appended to their track's ring buffer (z-scored with a
feature_stats.npz when given); a track's window is emitted once it is full and then
every ``stride`` frames. Frames where no window is due emit nothing. Without track
ids (no tracker upstream) faces are keyed by their row, which is only right for a
single face.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from facegraph import Input, ModelError, Node, Output, Param, PortValueError, register

from ..types import AUS, EMBEDDINGS, WINDOW
from ._modelparams import missing_models
from ._windows import TrackWindows, load_stats, stats_from_metadata


def _ids(packet: Any) -> np.ndarray:
    ids = packet.get("track_id")
    n = len(packet.vec if "vec" in packet else packet.intensity)
    return np.arange(n, dtype=np.int32) if ids is None else np.asarray(ids, dtype=np.int32)


def join_features(vectors: Any, aus: Any | None) -> tuple[np.ndarray, np.ndarray]:
    """Embedding rows, with the AU intensities of the same track appended when ``aus`` is given."""
    vec = np.asarray(vectors.vec, dtype=np.float32)
    ids = _ids(vectors)
    if aus is None:
        return vec, ids
    intensity = np.asarray(aus.intensity, dtype=np.float32)
    if vectors.get("track_id") is not None and aus.get("track_id") is not None:
        rows = {int(t): i for i, t in enumerate(aus.track_id)}
        missing = [int(t) for t in ids if int(t) not in rows]
        if missing:
            raise ValueError(f"AUs lack track {missing[0]} that the embeddings have")
        intensity = intensity[[rows[int(t)] for t in ids]] if len(ids) else intensity[:0]
    elif len(intensity) != len(vec):
        raise ValueError(f"{len(vec)} embeddings but {len(intensity)} AU rows and no track ids to match them")
    return np.concatenate([vec, intensity.reshape(len(vec), -1)], axis=1), ids


@register("temporal")
class Temporal(Node):
    """Sliding windows of length T per track over embeddings (and optionally AUs), z-scored."""

    vectors = Input(EMBEDDINGS, doc="one vector per face, keyed by track_id")
    aus = Input(AUS, optional=True, doc="AU intensities appended to each face's vector")
    window = Output(WINDOW, doc="seq [N, T, D] for the tracks whose window is due at this frame")

    length = Param(int, 16, ge=1, le=10_000, doc="window length T in frames")
    stride = Param(int, 1, ge=1, doc="emit a track's window every `stride` frames once it is full")
    stats = Param(str, None, doc="z-score with: a feature_stats.npz (mean, std), or the temporal model (path or "
                  "name) whose metadata records its feature stats; none: raw vectors")
    timeout = Param(float, 30.0, ge=0, doc="drop a track unseen for longer than this")
    timeout_unit = Param(str, "frames", choices=("frames", "seconds"), doc="unit of `timeout`")

    @classmethod
    def requirements(cls, values: dict[str, Any]) -> list[str]:
        stats = values.get("stats")
        if not stats:
            return []
        if str(stats).endswith(".npz"):
            if not Path(stats).expanduser().is_file():
                return [f"needs feature stats file {stats} (a feature_stats.npz with mean and std)"]
            return []
        from .gru import _trainable

        return [_trainable(line) for line in missing_models({"stats": stats}, ["stats"])]

    def open(self) -> None:
        mean = std = None
        if self.stats and str(self.stats).endswith(".npz"):
            mean, std = load_stats(self.stats)
        elif self.stats:
            from ._onnx import load_metadata, resolve_model

            path = resolve_model(self.stats, what="temporal model (for its feature stats)")
            mean, std = stats_from_metadata(load_metadata(path), path)
        self.windows = TrackWindows(self.length, self.stride, self.timeout, mean, std)

    def process(self, vectors: Any, aus: Any = None) -> dict[str, Any] | None:
        now = vectors.frame_id if self.timeout_unit == "frames" else vectors.t_capture / 1e9
        try:
            features, ids = join_features(vectors, aus)
            seq, due = self.windows.push(now, features, ids)
        except ValueError as exc:
            if self.stats and "stats" in str(exc):
                raise ModelError(f"{self.stats}: {exc}") from None
            raise PortValueError(f"temporal '{self.id}': {exc}") from None
        if len(due) == 0:
            return None
        return {"window": {"seq": seq, "track_id": due}}
