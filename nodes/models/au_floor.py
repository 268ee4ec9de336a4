"""A person's AU floor, taken off after a video: OpenFace's offline offset, for the AU nets.

OpenFace's video post-processing shifts each person's AU intensities down by a low
percentile of their own values (0.2.x's source: the 25th, for every AU), so a face at
rest reads 0 whoever it is. A per-frame AU net cannot know a person's resting face, so
it carries each person's baseline into its values; taking the same floor off per track
after a file has been read removes it. Measured on the issue-16 teacher file: leave one
training video out over the six training videos, a ridge on FHOG + FER pooled r 0.461 →
0.501 at the 25th percentile (0.463 at the 5th, 0.480 at the 10th), and the shipped
``au_fhog_fer`` on the held-out videos 0.598 → 0.611 (benchmarks/README.md).
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable

import numpy as np

#: the percentile of a person's own values that becomes their 0 (OpenFace 0.2.x's offline offset)
FLOOR_QUANTILE = 0.25


def floor_of(values: np.ndarray, quantile: float = FLOOR_QUANTILE) -> np.ndarray:
    """Per column, the ``quantile`` of one person's values (N, A), NaN rows (unread faces) left out; 0 if none."""
    values = np.asarray(values, np.float64)
    read = ~np.isnan(values).any(axis=1)
    if not read.any():
        return np.zeros(values.shape[1])
    return np.quantile(values[read], quantile, axis=0)


def subtract_floors(values: np.ndarray, groups: Iterable[Hashable], quantile: float = FLOOR_QUANTILE,
                    top: float = 5.0) -> np.ndarray:
    """``values`` (N, A) with each group's (person's) floor taken off, clipped to [0, ``top``]."""
    values = np.asarray(values, np.float64)
    groups = np.asarray(list(groups))
    out = values.copy()
    for g in np.unique(groups):
        rows = groups == g
        out[rows] = np.clip(values[rows] - floor_of(values[rows], quantile), 0.0, top)
    return out


class FloorBook:
    """The AU values of every tracked face of a file, kept until the end to take each track's floor off."""

    def __init__(self, quantile: float = FLOOR_QUANTILE) -> None:
        self.quantile = quantile
        self.frames: list[int] = []
        self.tracks: list[int] = []
        self.values: list[np.ndarray] = []

    def add(self, frame_id: int, track_ids: np.ndarray, intensity: np.ndarray) -> None:
        for t, row in zip(np.asarray(track_ids).tolist(), np.asarray(intensity, np.float32), strict=True):
            self.frames.append(int(frame_id))
            self.tracks.append(int(t))
            self.values.append(row)

    def revised(self, n_aus: int) -> dict[str, np.ndarray]:
        """frame_id, track_id, intensity (floors off), success: the rows the table sinks rewrite."""
        if not self.values:
            return {"frame_id": np.zeros(0, np.int64), "track_id": np.zeros(0, np.int64),
                    "intensity": np.zeros((0, n_aus), np.float32), "success": np.zeros(0, bool)}
        values = np.stack(self.values)
        return {"frame_id": np.asarray(self.frames, np.int64), "track_id": np.asarray(self.tracks, np.int64),
                "intensity": subtract_floors(values, self.tracks, self.quantile).astype(np.float32),
                "success": ~np.isnan(values).any(axis=1)}
