"""A person's reference for a person-normalised AU net: the running mean of the net's features over their frames.

OpenFace's dynamic AU models subtract a running median of each person's FHOG so that they see
expression, not identity; the person-normalised :class:`~facegraph.nodes.nets.facepose.AUPredictionNet`
does the same with its backbone features. A mean, not a median: it is exact and O(features)
per frame (a median over a few hundred 1280-wide rows costs more than the net itself), and
the net is trained against the mean of the person's frames.

Causal: frame t's reference is the mean of frames 0…t of the same person (track), the frame
itself included, so the first frame is its own reference. That is what the ``au.nn`` node does
per track and what ``facegraph eval au`` scores.
"""

from __future__ import annotations

import numpy as np


class RunningReference:
    """Running mean of one person's feature vectors; ``update`` returns the reference for the frame just added."""

    def __init__(self) -> None:
        self.count = 0
        self.total: np.ndarray | None = None

    def reset(self) -> None:
        self.count, self.total = 0, None

    def update(self, features: np.ndarray) -> np.ndarray:
        f = np.asarray(features, np.float64).reshape(-1)
        if self.total is None:
            self.total = np.zeros_like(f)
        elif self.total.shape != f.shape:
            raise ValueError(f"features of size {f.size} after {self.total.size}")
        self.total += f
        self.count += 1
        return self.value()

    def value(self) -> np.ndarray:
        if self.total is None:
            raise ValueError("no frame seen yet")
        return (self.total / self.count).astype(np.float32)


def causal_references(features: np.ndarray) -> np.ndarray:
    """(N, F) features of one person in frame order → (N, F): row t is the mean of rows 0…t."""
    f = np.asarray(features, np.float64)
    return (np.cumsum(f, 0) / np.arange(1, len(f) + 1)[:, None]).astype(np.float32)


def references_by_group(features: np.ndarray, groups: np.ndarray, mode: str = "causal") -> np.ndarray:
    """Each row's reference within its group (video or track), rows taken in the given order.

    ``causal``: the mean of the group's rows so far (what a live graph has); ``all``: of all its rows.
    """
    if mode not in ("causal", "all"):
        raise ValueError(f"reference mode {mode!r}: causal or all")
    features = np.asarray(features, np.float32)
    out = np.empty_like(features)
    groups = np.asarray(groups)
    for g in dict.fromkeys(groups.tolist()):
        idx = np.flatnonzero(groups == g)
        out[idx] = causal_references(features[idx]) if mode == "causal" else features[idx].mean(0)
    return out


class TrackReferences:
    """One :class:`RunningReference` per track id; a track id not seen before starts a fresh one.

    Tracks absent for more than ``forget_after`` calls are dropped, so ids a tracker reuses
    after a long gap start again.
    """

    def __init__(self, forget_after: int = 300) -> None:
        self.forget_after = forget_after
        self.refs: dict[int, RunningReference] = {}
        self.last_seen: dict[int, int] = {}
        self.calls = 0

    def update(self, track_ids: np.ndarray, features: np.ndarray) -> np.ndarray:
        """(N,) ids and (N, F) features of one frame's faces → (N, F) references."""
        self.calls += 1
        out = np.empty((len(track_ids), np.asarray(features).shape[-1]), np.float32)
        for i, tid in enumerate(np.asarray(track_ids).tolist()):
            ref = self.refs.get(tid)
            if ref is None or self.calls - self.last_seen.get(tid, self.calls) > self.forget_after:
                ref = self.refs[tid] = RunningReference()
            self.last_seen[tid] = self.calls
            out[i] = ref.update(features[i])
        for tid in [t for t, seen in self.last_seen.items() if self.calls - seen > self.forget_after]:
            self.refs.pop(tid, None)
            self.last_seen.pop(tid, None)
        return out
