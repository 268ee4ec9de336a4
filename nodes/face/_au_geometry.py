"""Action-unit intensities from 68-point landmark geometry, against a per-track neutral baseline.

Why geometry: FACS defines most AUs by how facial features move, and the 68 iBUG points
track brows, lids, lip corners and jaw well enough to measure the AUs that move them.
AUs that show mainly as skin texture (AU06 cheek raiser, AU09 nose wrinkler, AU10,
AU14 dimpler, AU17, AU23 lip tightener) or that landmarks cannot tell apart from
another AU (AU07 lid tightener vs. a blink, AU20 lip stretcher vs. a smile) are left
out: ``ESTIMATED`` lists what this module reports, and nothing else is invented.

Features (``features()``): the landmarks are rotated about the eye midpoint so the
eyes are level (in-plane roll removed); horizontal distances are divided by the
inter-ocular distance (eye centres, IOD). Given the head pose, the landmarks are first
frontalised (:func:`frontalise`): each point is put at the mean face's depth and
rotated back to a frontal view, so a turned or tipped head does not read as an
expression (without it, a head tilted back 18° raised the brows by 5 AU points).

==========  =======================================================================
feature     what it measures (iBUG indices, 0-based)
==========  =======================================================================
brow_in     inner brow above inner eye corners: y(39)−y(21), y(42)−y(22)
brow_out    outer brow above outer eye corners: y(36)−y(17), y(45)−y(26)
brow_gap    horizontal gap between inner brow ends 21↔22 / IOD
eye_open    eye aperture (mean lid distance 37↔41, 38↔40 / eye width 36↔39), both eyes
mouth_w     mouth width 48↔54 / IOD
corner_dy   lip corners 48, 54 below the upper-lip centre 51
lip_gap     inner lip gap 61↔67, 62↔66, 63↔65
jaw         chin 8 below the nose base 33
==========  =======================================================================

AUs (``intensities()``), each ``clip(gain · change from neutral, 0, 5)``:

* AU01 inner brow raiser: ``brow_in`` rises;  AU02 outer brow raiser: ``brow_out`` rises;
* AU04 brow lowerer: mean of ``brow_in`` falling and ``brow_gap`` narrowing;
* AU05 upper lid raiser: ``eye_open`` above neutral;  AU45 blink: ``eye_open`` below
  neutral (relative change, so a naturally narrow eye is not read as closing), less a
  share of AU12 because a smile's cheek raise narrows the eyes too;
* AU12 lip corner puller: mean of ``mouth_w`` widening and ``corner_dy`` rising;
* AU15 lip corner depressor: ``corner_dy`` falling, damped while the jaw drops (an
  open mouth pulls the corners down without AU15);
* AU25 lips part: ``lip_gap`` opens beyond a small dead zone;  AU26 jaw drop: ``jaw`` grows.

Neutral baseline (:class:`NeutralBaseline`): OpenFace normalises each person by the
median of their features over the video; online, each track keeps its last
``window`` feature vectors and takes, per feature, a percentile of them (the median
for features that move both ways, a low percentile for ones an AU only increases,
e.g. mouth width and lip gap: a person smiles or talks for long stretches but rests
at their narrowest). A new track's first frame is its first neutral, so a face that
enters mid-expression reads low until its history fills (OpenFace's offline median has
the same blind spot at the start of a video).
"""

from __future__ import annotations

import numpy as np

from ._headpose import MODEL_68_MM, RIGID_68, euler_to_matrix

FEATURES = ("brow_in", "brow_out", "brow_gap", "eye_open", "mouth_w", "corner_dy", "lip_gap", "jaw")
#: the AUs this module estimates, in OpenFace's column order
ESTIMATED = ("AU01", "AU02", "AU04", "AU05", "AU12", "AU15", "AU25", "AU26", "AU45")
#: all 17 OpenFace intensity AUs
OPENFACE_AUS = (
    "AU01", "AU02", "AU04", "AU05", "AU06", "AU07", "AU09", "AU10", "AU12",
    "AU14", "AU15", "AU17", "AU20", "AU23", "AU25", "AU26", "AU45",
)
#: which percentile of a track's history is its neutral value, per feature
BASELINE_PERCENTILE = np.array([50, 50, 50, 50, 25, 50, 20, 30], dtype=np.float64)


def frontalise(points: np.ndarray, rotation: np.ndarray) -> np.ndarray:
    """Undo the head's rotation: 68 landmarks (N, 68, 2|3) + Euler angles (N, 3) → frontal x, y (N, 68, 2).

    Scaled orthographic model: each landmark is taken to lie at the mean face's depth for
    that point, the face's scale and offset are fitted on the rigid points, and the 2×2
    system ``s·R[:2, :2]·(x, y) = p − t − s·R[:2, 2]·z`` is solved per point. The result
    is in (arbitrary-scale) head coordinates, X right, Y down, as if seen from the front.
    """
    p = np.asarray(points, np.float64)[..., :2]
    out = np.empty_like(p)
    model = MODEL_68_MM
    for n in range(p.shape[0]):
        rot = euler_to_matrix(rotation[n])
        q = model @ rot[:2].T  # the model posed and projected orthographically (68, 2)
        qr, pr = q[RIGID_68], p[n, RIGID_68]
        qc, pc = qr - qr.mean(0), pr - pr.mean(0)
        s = max(float((qc * pc).sum() / max((qc**2).sum(), 1e-9)), 1e-9)
        t = pr.mean(0) - s * qr.mean(0)
        rhs = (p[n] - t) / s - np.outer(model[:, 2], rot[:2, 2])
        (a, b), (c, d) = rot[:2, :2]
        det = a * d - b * c
        if abs(det) < 1e-3:  # seen edge-on: fall back to the image plane
            out[n] = (p[n] - t) / s
        else:  # closed-form 2×2 inverse: np.linalg.inv costs ~100× more (BLAS dispatch) for this size
            inv = np.array([[d, -b], [-c, a]]) / det
            out[n] = rhs @ inv.T
    return out


def features(points: np.ndarray, rotation: np.ndarray | None = None) -> np.ndarray:
    """Scale-normalised geometric features (N, len(FEATURES)) of 68-point faces (N, 68, 2|3).

    With ``rotation`` (Euler angles per face, as the pose node gives) the landmarks are
    frontalised first; without it only the in-plane roll is removed.
    """
    p = np.asarray(points, np.float64)[..., :2]
    if p.ndim == 2:
        p = p[None]
    if rotation is not None and len(p):
        p = frontalise(p, np.asarray(rotation, np.float64).reshape(-1, 3))
    eye_r = p[:, 36:42].mean(1)  # the subject's right eye: on the image's left
    eye_l = p[:, 42:48].mean(1)
    d = eye_l - eye_r
    iod = np.maximum(np.hypot(d[:, 0], d[:, 1]), 1e-6)
    cos, sin = d[:, 0] / iod, d[:, 1] / iod
    centre = (eye_r + eye_l) / 2
    q = p - centre[:, None]
    x = (q[..., 0] * cos[:, None] + q[..., 1] * sin[:, None]) / iod[:, None]  # rotate by −roll, IOD units
    y = (-q[..., 0] * sin[:, None] + q[..., 1] * cos[:, None]) / iod[:, None]

    def dist(a: int, b: int) -> np.ndarray:
        return np.hypot(x[:, a] - x[:, b], y[:, a] - y[:, b])

    brow_in = ((y[:, 39] - y[:, 21]) + (y[:, 42] - y[:, 22])) / 2
    brow_out = ((y[:, 36] - y[:, 17]) + (y[:, 45] - y[:, 26])) / 2
    brow_gap = x[:, 22] - x[:, 21]
    eye_r_open = (dist(37, 41) + dist(38, 40)) / 2 / np.maximum(dist(36, 39), 1e-6)
    eye_l_open = (dist(43, 47) + dist(44, 46)) / 2 / np.maximum(dist(42, 45), 1e-6)
    eye_open = (eye_r_open + eye_l_open) / 2
    mouth_w = dist(48, 54)
    corner_dy = (y[:, 48] + y[:, 54]) / 2 - y[:, 51]
    lip_gap = (np.maximum(y[:, 67] - y[:, 61], 0) + np.maximum(y[:, 66] - y[:, 62], 0)
               + np.maximum(y[:, 65] - y[:, 63], 0)) / 3
    jaw = y[:, 8] - y[:, 33]
    return np.stack([brow_in, brow_out, brow_gap, eye_open, mouth_w, corner_dy, lip_gap, jaw], axis=1)


def intensities(feat: np.ndarray, base: np.ndarray) -> np.ndarray:
    """AU intensities (N, len(ESTIMATED)) on OpenFace's 0–5 scale from features and their neutral values."""
    f = np.atleast_2d(feat)
    b = np.atleast_2d(base)
    delta = f - b
    rel = f / np.maximum(np.abs(b), 1e-6) - 1.0
    i = {name: k for k, name in enumerate(FEATURES)}
    au01 = 40.0 * delta[:, i["brow_in"]]
    au02 = 40.0 * delta[:, i["brow_out"]]
    au04 = 0.5 * (54.0 * -delta[:, i["brow_in"]] + 50.0 * -delta[:, i["brow_gap"]])
    au05 = 12.0 * rel[:, i["eye_open"]]
    au12 = 14.0 * rel[:, i["mouth_w"]] + 27.0 * -delta[:, i["corner_dy"]]
    # a smile narrows the eyes (cheek raiser), so a smile takes part of the eye closure
    au45 = 20.0 * (-rel[:, i["eye_open"]] - 0.08) - 0.4 * np.clip(au12, 0, 5)
    au26 = 16.0 * (delta[:, i["jaw"]] - 0.022)
    au15 = 54.0 * delta[:, i["corner_dy"]] - 27.0 * np.maximum(delta[:, i["jaw"]], 0)
    au25 = 40.0 * (delta[:, i["lip_gap"]] - 0.022)
    out = np.stack([au01, au02, au04, au05, au12, au15, au25, au26, au45], axis=1)
    return np.clip(out, 0.0, 5.0)


class NeutralBaseline:
    """Per-track running neutral features: a per-feature percentile of the track's last ``window`` frames."""

    def __init__(self, window: int = 300, forget_after: int | None = None) -> None:
        self.window = max(1, int(window))
        self.forget_after = forget_after if forget_after is not None else self.window
        self._hist: dict[int, np.ndarray] = {}
        self._count: dict[int, int] = {}
        self._seen: dict[int, int] = {}
        self._tick = 0

    def update(self, keys: list[int], feat: np.ndarray) -> np.ndarray:
        """Add one frame's features (N, F) for tracks ``keys``; return each track's neutral values (N, F)."""
        self._tick += 1
        out = np.empty(feat.shape, dtype=np.float64)
        for row, key in enumerate(keys):
            hist = self._hist.get(key)
            if hist is None:
                hist = self._hist[key] = np.empty((self.window, feat.shape[1]), np.float64)
                self._count[key] = 0
            n = self._count[key]
            if np.all(np.isfinite(feat[row])):
                hist[n % self.window] = feat[row]
                n = self._count[key] = n + 1
            self._seen[key] = self._tick
            out[row] = self.neutral(hist[: min(n, self.window)]) if n else feat[row]
        stale = [k for k, t in self._seen.items() if self._tick - t > self.forget_after]
        for key in stale:
            del self._hist[key], self._count[key], self._seen[key]
        return out

    @staticmethod
    def neutral(hist: np.ndarray) -> np.ndarray:
        """Each feature's neutral value: its ``BASELINE_PERCENTILE`` over the history (M, F)."""
        qs, which = np.unique(BASELINE_PERCENTILE, return_inverse=True)
        per_q = np.percentile(hist, qs, axis=0)  # (Q, F): one sort per feature for all percentiles
        return per_q[which, np.arange(hist.shape[1])]

    def tracks(self) -> list[int]:
        return list(self._hist)
