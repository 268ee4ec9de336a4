"""A small IoU tracker: persistent track ids for face boxes across frames (pure numpy; scipy when present).

Each track remembers its last box and a smoothed per-frame velocity, so when the
detector runs only every N frames the track's box is predicted N frames ahead
before it is matched. Matching is optimal (Hungarian, scipy) on IoU with the
predicted box; detections left over are matched greedily by centre distance (a
fast-moving face can leave its old box entirely), the rest start new tracks. A
track that finds no detection survives ``max_age`` frames before its id retires,
so a face hidden for a moment (a hand, a blink of the detector) keeps its id.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ._nms import iou_matrix


@dataclass
class Track:
    track_id: int
    box: np.ndarray  # x1, y1, x2, y2 at frame ``frame``
    frame: int
    velocity: np.ndarray  # box change per frame
    hits: int = 1

    def predict(self, frame: int) -> np.ndarray:
        return self.box + self.velocity * float(frame - self.frame)


def _assign(similarity: np.ndarray, threshold: float) -> list[tuple[int, int]]:
    """Pairs (row, col) maximising total similarity, each pair ≥ threshold."""
    if similarity.size == 0:
        return []
    try:
        from scipy.optimize import linear_sum_assignment
    except ImportError:  # greedy: best pair first
        pairs, used_r, used_c = [], set(), set()
        for flat in np.argsort(-similarity, axis=None):
            r, c = divmod(int(flat), similarity.shape[1])
            if similarity[r, c] < threshold:
                break
            if r not in used_r and c not in used_c:
                pairs.append((r, c))
                used_r.add(r)
                used_c.add(c)
        return pairs
    rows, cols = linear_sum_assignment(-similarity)
    return [(int(r), int(c)) for r, c in zip(rows, cols, strict=True) if similarity[r, c] >= threshold]


class IoUTracker:
    """Assigns a persistent int id to each box of each frame.

    ``update(boxes, frame)`` returns the ids of ``boxes`` (int32 [N]); ``frame`` is a
    monotonic frame number (gaps allowed: the detector may skip frames).
    """

    def __init__(self, iou_threshold: float = 0.3, max_age: int = 30, max_center_shift: float = 0.6) -> None:
        self.iou_threshold = iou_threshold
        self.max_age = max_age
        self.max_center_shift = max_center_shift
        self.tracks: list[Track] = []
        self.next_id = 0

    def reset(self) -> None:
        self.tracks = []
        self.next_id = 0

    def update(self, boxes: np.ndarray, frame: int) -> np.ndarray:
        boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
        self.tracks = [t for t in self.tracks if frame - t.frame <= self.max_age]
        ids = np.full(len(boxes), -1, np.int32)
        predicted = np.array([t.predict(frame) for t in self.tracks]).reshape(-1, 4)
        pairs = _assign(iou_matrix(predicted, boxes), self.iou_threshold)
        free_t = set(range(len(self.tracks))) - {r for r, _ in pairs}
        free_d = set(range(len(boxes))) - {c for _, c in pairs}
        pairs += self._by_distance(predicted, boxes, sorted(free_t), sorted(free_d))
        for r, c in pairs:
            track = self.tracks[r]
            step = max(1, frame - track.frame)
            change = (boxes[c] - track.box) / step
            track.velocity = change if track.hits == 1 else 0.5 * track.velocity + 0.5 * change
            track.box, track.frame = boxes[c].copy(), frame
            track.hits += 1
            ids[c] = track.track_id
        for c in np.nonzero(ids < 0)[0]:
            self.tracks.append(Track(self.next_id, boxes[c].copy(), frame, np.zeros(4)))
            ids[c] = self.next_id
            self.next_id += 1
        return ids

    def _by_distance(
        self, predicted: np.ndarray, boxes: np.ndarray, tracks: list[int], dets: list[int]
    ) -> list[tuple[int, int]]:
        """Greedy matches by centre distance relative to box size, for boxes that moved off their IoU."""
        if not tracks or not dets:
            return []
        pc = (predicted[tracks, :2] + predicted[tracks, 2:]) / 2
        dc = (boxes[dets, :2] + boxes[dets, 2:]) / 2
        size = np.sqrt(np.prod(np.clip(predicted[tracks, 2:] - predicted[tracks, :2], 1e-6, None), axis=1))
        shift = np.linalg.norm(pc[:, None] - dc[None], axis=2) / size[:, None]
        pairs = _assign(-shift, -self.max_center_shift)
        return [(tracks[r], dets[c]) for r, c in pairs]
