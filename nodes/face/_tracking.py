"""A small IoU tracker: persistent track ids for face boxes across frames (pure numpy; scipy when present).

Each track remembers its last box and a smoothed per-frame velocity, so when the
detector runs only every N frames the track's box is predicted N frames ahead
before it is matched. Matching is optimal (Hungarian, scipy) on IoU with the
predicted box; detections left over are matched greedily by centre distance (a
fast-moving face can leave its old box entirely), the rest start new tracks. A
track that finds no detection survives ``max_age`` frames before its id retires,
so a face hidden for a moment (a hand, a blink of the detector) keeps its id.

``FaceTracks`` is the identity book of the ``landmarks`` node, which follows every face from
its own previous-frame landmarks and so knows where each face is *now*, even when the
detector runs only every N frames. On a detection frame it matches detections in two stages:
first against the faces followed on the previous frame (Hungarian on IoU, centre shift and
size ratio, gated), then what is left against faces lost recently (kept ``max_age`` frames
for re-identification: a gate on the shift that widens with the time lost, and an HSV
histogram of the face as a cheap appearance cue), so a face that turns away and comes back
gets its old id rather than a new one. The detector's own track id is only a hint (a small
bonus when it agrees with the last match). A detection extends a followed face only when its
colour histogram is near the face's (``follow_appearance``), so a detection of someone else who
stepped into the same place starts a new track instead.

Shot cuts (``ShotCuts``): a frame whose colour histogram is far from the previous frame's (or
whose size changed, or whose ``shot`` number says it does not continue the previous frame, as
decode says of unrelated images) starts a new shot. Both trackers then end every track
(``cut``): nobody in the new shot inherits an id, and since ids are never reused, per-track
state downstream (AU baselines, temporal windows, identity smoothing) starts afresh too.
Gradual transitions (fades, dissolves) are not cuts to it; the appearance gate is what guards them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

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

    def cut(self) -> None:
        """A shot cut: every track ends; new ids continue after the old ones (never reused)."""
        self.tracks = []

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


def _centres(boxes: np.ndarray) -> np.ndarray:
    return (boxes[:, :2] + boxes[:, 2:]) / 2


def _sizes(boxes: np.ndarray) -> np.ndarray:
    return np.sqrt(np.prod(np.clip(boxes[:, 2:] - boxes[:, :2], 1e-6, None), axis=1))


def hsv_histogram(image: np.ndarray, box: np.ndarray, bins: tuple[int, int] = (16, 8)) -> np.ndarray | None:
    """Hue-saturation histogram (sums to 1) of the centre of a face box in a BGR image; None when the
    box lies outside the image. Cheap (~0.1 ms) and tolerant of pose and brightness changes."""
    import cv2

    x1, y1, x2, y2 = (float(v) for v in box)
    w, h = x2 - x1, y2 - y1
    c0, r0 = int(max(0.0, x1 + 0.15 * w)), int(max(0.0, y1 + 0.1 * h))
    c1, r1 = int(min(image.shape[1], x2 - 0.15 * w)), int(min(image.shape[0], y2))
    if c1 - c0 < 2 or r1 - r0 < 2:
        return None
    hsv = cv2.cvtColor(np.ascontiguousarray(image[r0:r1, c0:c1]), cv2.COLOR_BGR2HSV)
    hist = cv2.calcHist([hsv], [0, 1], None, list(bins), [0, 180, 0, 256]).ravel()
    return (hist / max(float(hist.sum()), 1.0)).astype(np.float32)


def hist_distance(a: np.ndarray | None, b: np.ndarray | None) -> float:
    """Bhattacharyya distance of two normalised histograms (0 same, 1 disjoint); 0.5 when one is unknown."""
    if a is None or b is None:
        return 0.5
    return float(np.sqrt(max(0.0, 1.0 - float(np.sum(np.sqrt(a * b))))))


def frame_histogram(image: np.ndarray) -> np.ndarray:
    """HSV histogram (8×4×4 bins, sums to 1) of a 64×36 thumbnail of a BGR frame: a shot's colour
    signature, ~0.1 ms at 640×480 (strided before the resize, so 1080p costs little more)."""
    import cv2

    h, w = image.shape[:2]
    step = max(1, min(h // 72, w // 128))
    if h % step or w % step:
        strided = np.ascontiguousarray(image[::step, ::step])
    else:  # the same pixels (every step-th row and column), picked by OpenCV in a third less time
        strided = cv2.resize(image, (w // step, h // step), interpolation=cv2.INTER_NEAREST)
    small = cv2.resize(strided, (64, 36), interpolation=cv2.INTER_AREA)
    hsv = cv2.cvtColor(small, cv2.COLOR_BGR2HSV)
    hist = cv2.calcHist([hsv], [0, 1, 2], None, [8, 4, 4], [0, 180, 0, 256, 0, 256]).ravel()
    return (hist / max(float(hist.sum()), 1.0)).astype(np.float32)


class ShotCuts:
    """Tells frames that start a new shot: the Bhattacharyya distance of consecutive frames' colour
    histograms above ``threshold``, a change of frame size, or a new ``shot`` number from the source.

    On the shared videos a cut measured 0.36-0.96 and consecutive frames of one shot at most
    0.16 (head turns, a hand over the face, a crowd walking), hence the default 0.25.
    ``threshold`` 0 turns the histogram test off (size and ``shot`` changes still count).
    """

    def __init__(self, threshold: float = 0.25) -> None:
        self.threshold = threshold
        self._last: np.ndarray | None = None
        self._shape: tuple[int, ...] | None = None
        self._shot: Any = None

    def __call__(self, image: np.ndarray, shot: Any = None) -> bool:
        """Whether ``image`` starts a new shot (never the first frame)."""
        first = self._shape is None
        cut = not first and (tuple(image.shape) != self._shape or shot != self._shot)
        self._shape, self._shot = tuple(image.shape), shot
        if self.threshold > 0:
            hist = frame_histogram(image)
            if not first and not cut and self._last is not None:
                cut = hist_distance(self._last, hist) > self.threshold
            self._last = hist
        return cut


def _known_distance(a: np.ndarray | None, b: np.ndarray | None) -> float:
    """``hist_distance``, but 0 when either side is unknown: no evidence never vetoes a match."""
    return 0.0 if a is None or b is None else hist_distance(a, b)


@dataclass
class FaceTrack:
    """One face's identity: where it was last seen, how it moves, what it looks like."""

    track_id: int
    box: np.ndarray  # x1, y1, x2, y2 at frame ``frame`` (the landmarks' extent, or the seeding detection)
    frame: int
    velocity: np.ndarray = field(default_factory=lambda: np.zeros(2))  # centre px per frame
    lost: bool = False  # following failed: kept for re-identification only
    det_id: int = -1  # the detector's id at the last match
    appearance: np.ndarray | None = None
    hits: int = 1  # detections matched

    def predict(self, frame: int, horizon: int) -> np.ndarray:
        """The box moved on by its velocity, at most ``horizon`` frames ahead (old velocities lie)."""
        step = self.velocity * float(min(max(0, frame - self.frame), horizon))
        return self.box + np.concatenate([step, step])


class FaceTracks:
    """Identities of faces followed frame to frame and re-found on detection frames (see the module doc).

    ``associate`` (detection frames) gives each detection an id; ``follow`` / ``lose`` report
    what the follower saw on each frame. Ids are the detector's where it is free, else new.
    """

    def __init__(
        self,
        max_age: int = 60,
        max_shift: float = 1.0,
        reid_speed: float = 0.35,
        reid_shift: float = 3.0,
        max_size_ratio: float = 2.0,
        max_appearance: float = 0.65,
        follow_appearance: float = 1.0,
    ) -> None:
        self.max_age = max_age
        self.max_shift = max_shift  # followed faces: centre shift gate, in face sizes
        self.reid_speed = reid_speed  # lost faces: the gate widens this much per frame lost...
        self.reid_shift = reid_shift  # ...up to this many face sizes
        self.max_log_ratio = float(np.log(max_size_ratio))
        self.max_appearance = max_appearance  # lost faces: histogram distance gate
        self.follow_appearance = follow_appearance  # followed faces: the same, 1.0 = off
        self.tracks: list[FaceTrack] = []
        self._used: set[int] = set()
        self._next = 0

    def cut(self) -> None:
        """A shot cut: every face is gone, none can be re-identified; ids stay used (never reused)."""
        self.tracks = []

    def get(self, track_id: int) -> FaceTrack | None:
        return next((t for t in self.tracks if t.track_id == track_id), None)

    def active(self) -> list[FaceTrack]:
        return [t for t in self.tracks if not t.lost]

    def associate(
        self,
        boxes: np.ndarray,
        frame: int,
        det_ids: np.ndarray | None = None,
        appearance: list[np.ndarray | None] | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Ids for the detections of ``frame`` and whether each continues a face followed until the
        previous frame (False: re-identified or new). Matched lost faces become active again."""
        boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
        n = len(boxes)
        det_ids = np.full(n, -1) if det_ids is None else np.asarray(det_ids).reshape(n)
        appearance = appearance if appearance is not None else [None] * n
        self.tracks = [t for t in self.tracks if not (t.lost and frame - t.frame > self.max_age)]
        ids = np.full(n, -1, np.int32)
        followed = np.zeros(n, bool)
        active = self.active()
        for r, c in self._match(active, boxes, frame, det_ids, appearance, reid=False):
            self._hit(active[r], boxes[c], frame, int(det_ids[c]), appearance[c], reseed=False)
            ids[c], followed[c] = active[r].track_id, True
        left = [int(c) for c in np.nonzero(ids < 0)[0]]
        taken = set(ids[ids >= 0].tolist())
        spare = [t for t in self.tracks if t.track_id not in taken]
        pairs = self._match(spare, boxes[left], frame, det_ids[left], [appearance[c] for c in left], reid=True)
        for r, j in pairs:
            c = left[j]
            self._hit(spare[r], boxes[c], frame, int(det_ids[c]), appearance[c], reseed=True)
            ids[c] = spare[r].track_id
        for c in np.nonzero(ids < 0)[0]:
            ids[c] = self._new(boxes[c], frame, int(det_ids[c]), appearance[c])
        return ids, followed

    def follow(self, track_id: int, box: np.ndarray, frame: int) -> None:
        """The follower found the face at ``box`` on ``frame``."""
        track = self.get(track_id)
        if track is None:
            return
        box = np.asarray(box, np.float64)
        if frame > track.frame and not track.lost:
            change = (_centres(box[None]) - _centres(track.box[None]))[0] / (frame - track.frame)
            track.velocity = 0.5 * track.velocity + 0.5 * change
        track.box, track.frame, track.lost = box.copy(), frame, False

    def lose(self, track_id: int) -> None:
        """The follower lost the face: keep its id for re-identification, ``max_age`` frames from when
        it was last seen."""
        track = self.get(track_id)
        if track is not None and not track.lost:
            track.lost = True

    def _hit(self, track: FaceTrack, box: np.ndarray, frame: int, det_id: int, appearance, reseed: bool) -> None:
        if reseed:  # a face re-found far from where it was lost: restart its motion there
            track.box, track.frame, track.velocity = box.copy(), frame, np.zeros(2)
        track.lost = False
        track.det_id = det_id
        track.hits += 1
        if appearance is not None:
            old = track.appearance
            track.appearance = appearance if old is None else 0.7 * old + 0.3 * appearance

    def _new(self, box: np.ndarray, frame: int, det_id: int, appearance) -> int:
        tid = det_id if det_id >= 0 and det_id not in self._used else self._next
        while tid in self._used:
            tid += 1
        self._used.add(tid)
        self._next = max(self._next, tid + 1)
        self.tracks.append(FaceTrack(tid, box.copy(), frame, det_id=det_id, appearance=appearance))
        return tid

    def _match(self, tracks: list[FaceTrack], boxes: np.ndarray, frame: int, det_ids: np.ndarray,
               appearance: list, reid: bool) -> list[tuple[int, int]]:
        """Hungarian pairs (track row, detection col) on a gated cost (lower is better)."""
        if not tracks or not len(boxes):
            return []
        predicted = np.stack([t.predict(frame, 3 if reid else 1) for t in tracks])
        size = _sizes(predicted)
        shift = np.linalg.norm(_centres(predicted)[:, None] - _centres(boxes)[None], axis=2) / size[:, None]
        log_ratio = np.abs(np.log(_sizes(boxes)[None] / size[:, None]))
        hint = np.array([[t.det_id >= 0 and t.det_id == d for d in det_ids.tolist()] for t in tracks])
        if reid:
            age = np.array([max(1, frame - t.frame) for t in tracks], np.float64)
            gate = np.minimum(self.max_shift + self.reid_speed * age, self.reid_shift)[:, None]
            look = np.array([[hist_distance(t.appearance, a) for a in appearance] for t in tracks])
            ok = (shift <= gate) & (log_ratio <= self.max_log_ratio) & (look <= self.max_appearance)
            cost = shift / gate + log_ratio + look - 0.25 * hint
        else:
            iou = iou_matrix(predicted, boxes)
            ok = ((iou >= 0.1) | (shift <= self.max_shift)) & (log_ratio <= self.max_log_ratio)
            if self.follow_appearance < 1.0:  # someone else in the same place is not this face
                look = np.array([[_known_distance(t.appearance, a) for a in appearance] for t in tracks])
                ok &= look <= self.follow_appearance
            cost = (1.0 - iou) + shift + log_ratio - 0.25 * hint
        return _assign(np.where(ok, -cost, -1e6), -1e5)
