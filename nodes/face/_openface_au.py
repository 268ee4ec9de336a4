"""OpenFace 2.2's action-unit stage in numpy/OpenCV, run on OpenFace's own model files.

Why a reimplementation: OpenFace's CSV is the field's reference, and its AU models are
plain linear SVR/SVM weights over features that can be recomputed exactly: the FHOG of
the similarity-aligned face (``_fhog``) and the parameters of a 3-D point distribution
model (PDM) fitted to the 68 landmarks. The steps follow OpenFace's C++ (FaceAnalyser,
PDM, Face_utils):

1. ``Pdm.fit`` — CalcParams: Gauss–Newton on scale, rotation (Euler, updated through a
   small-angle rotation), translation and the 34 local parameters, Tikhonov-regularised
   by the inverse eigenvalues, step × 0.75, stop after 5 steps without a 0.1 % gain.
2. ``align_face`` — AlignFaceMask: similarity transform of the 24 rigid landmarks onto
   the PDM mean shape × 0.7, centred on the fit's translation, 112×112, masked by the
   68-point triangulation with the brows raised 30 px.
3. features: 4464 FHOG values + 238 geometry values (the 204 shape offsets
   ``components · p_local`` and the 34 ``p_local``).
4. linear models: ``(x − means [− person median]) · w + b``; SVR intensities clipped to
   0–5, SVM presences ``w·x + b > 0``.
5. per person (``Person``): running medians of both feature groups from histograms
   (HOG 1000 bins over [−0.005, 1], geometry 10000 over [−60, 60]) updated every other
   frame; live, each AU's prediction is shifted down by its running 10th percentile
   (CorrectOnlineAUs); for files, ``Person.offline`` re-predicts every stored frame with
   the final median, subtracts each dynamic AU's cutoff percentile, clips, and smooths
   (3-frame mean for intensities, 7-frame vote for presences).

The model files are OpenFace's (academic licence): read from a folder laid out as
OpenFace's ``lib/local/FaceAnalyser/AU_predictors``; never bundled.
"""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from . import _fhog

#: OpenFace's intensity and presence AUs, in its CSV order
INTENSITY_AUS = ("AU01", "AU02", "AU04", "AU05", "AU06", "AU07", "AU09", "AU10", "AU12", "AU14", "AU15", "AU17",
                 "AU20", "AU23", "AU25", "AU26", "AU45")
PRESENCE_AUS = ("AU01", "AU02", "AU04", "AU05", "AU06", "AU07", "AU09", "AU10", "AU12", "AU14", "AU15", "AU17",
                "AU20", "AU23", "AU25", "AU26", "AU28", "AU45")
#: the landmarks OpenFace aligns on (face outline sides, nose, eye corners and lids): they move little with expression
RIGID = np.array([1, 2, 3, 4, 12, 13, 14, 15, 27, 28, 29, 31, 32, 33, 34, 35, 36, 39, 40, 41, 42, 45, 46, 47])
BROWS_AND_TEMPLES = np.array([0, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 26])
ALIGN_SCALE, ALIGN_SIZE = 0.7, 112
N_HOG = 4464
HOG_BINS, HOG_RANGE = 1000, (-0.005, 1.0)
GEOM_BINS, GEOM_RANGE = 10000, (-60.0, 60.0)
MAX_INIT_FRAMES = 3000  # OpenFace re-predicts at most this many early frames with the final median
#: files every index needs besides the .dat models
SUPPORT_FILES = ("In-the-wild_aligned_PDM_68.txt", "tris_68_full.txt")

_MARKERS = {0: ("svr", False), 1: ("svr", True), 4: ("svm", False), 5: ("svm", True)}


# ---------------------------------------------------------------------------------------------- file readers


def read_text_matrices(path: str | Path) -> list[np.ndarray]:
    """OpenFace's text matrices: '# comment' lines, then rows, cols, OpenCV type, then the values."""
    tokens = [t for line in Path(path).read_text().splitlines() if not line.lstrip().startswith("#")
              for t in line.split()]
    out, i = [], 0
    while i + 3 <= len(tokens):
        rows, cols, kind = int(tokens[i]), int(tokens[i + 1]), int(tokens[i + 2])
        i += 3
        values = np.array(tokens[i:i + rows * cols], dtype=np.float64 if kind in (5, 6) else np.int64)
        if values.size != rows * cols:
            raise ValueError(f"{path}: a {rows}×{cols} matrix is cut short")
        out.append(values.reshape(rows, cols))
        i += rows * cols
    return out


@dataclass(frozen=True)
class LinearModel:
    """One ``.dat`` file: a linear SVR (intensity) or SVM (presence), static or dynamic."""

    kind: str  # "svr" or "svm"
    dynamic: bool
    means: np.ndarray  # (4702,)
    weights: np.ndarray  # (4702,)
    bias: float
    cutoff: float = -1.0  # SVR dynamic: the share of a person's frames taken as neutral (offline offset)
    positive: float = 1.0  # SVM: the class values
    negative: float = 0.0


def _read_mat_bin(data: bytes, at: int) -> tuple[np.ndarray, int]:
    rows, cols, kind = struct.unpack_from("<iii", data, at)
    at += 12
    if kind != 6:
        raise ValueError(f"matrix of OpenCV type {kind}, expected 6 (float64)")
    n = rows * cols
    if at + 8 * n > len(data):
        raise ValueError("matrix data cut short")
    mat = np.frombuffer(data, "<f8", n, at).reshape(rows, cols).copy()
    return mat, at + 8 * n


def read_dat(path: str | Path) -> LinearModel:
    """Parse an OpenFace AU model: int32 marker (0/1 SVR static/dynamic, 4/5 SVM), [cutoff], means, weights, bias."""
    data = Path(path).read_bytes()
    try:
        (marker,) = struct.unpack_from("<i", data, 0)
        if marker not in _MARKERS:
            raise ValueError(f"unknown model marker {marker}")
        kind, dynamic = _MARKERS[marker]
        at, cutoff = 4, -1.0
        if kind == "svr" and dynamic:
            (cutoff,) = struct.unpack_from("<d", data, at)
            at += 8
        means, at = _read_mat_bin(data, at)
        weights, at = _read_mat_bin(data, at)
        (bias,) = struct.unpack_from("<d", data, at)
        at += 8
        pos, neg = 1.0, 0.0
        if kind == "svm":
            pos, neg = struct.unpack_from("<dd", data, at)
            at += 16
    except (struct.error, ValueError) as exc:
        raise ValueError(f"{path}: not an OpenFace AU model ({exc})") from None
    if at != len(data) or means.size != weights.size:
        raise ValueError(f"{path}: not an OpenFace AU model (size {len(data)} B does not fit its header)")
    return LinearModel(kind, dynamic, means.reshape(-1), weights.reshape(-1), float(bias), float(cutoff),
                       float(pos), float(neg))


def read_index(path: str | Path) -> list[tuple[str, str]]:
    """``AU_all_best.txt``-style index: (relative model path, AU name) per line."""
    out = []
    for line in Path(path).read_text().splitlines():
        parts = line.split()
        if len(parts) >= 2:
            out.append((parts[0], f"AU{int(parts[1][2:]):02d}"))
    return out


def model_files(index_names: tuple[str, ...] = ("AU_all_best.txt", "AU_all_static.txt"),
                folder: str | Path | None = None) -> list[str]:
    """Every file (relative to AU_predictors/) the given indices need, indices and PDM included."""
    files = set(index_names) | set(SUPPORT_FILES)
    if folder is not None:
        for name in index_names:
            files |= {rel for rel, _ in read_index(Path(folder) / name)}
    return sorted(files)


# ---------------------------------------------------------------------------------------------- the PDM


def _rotation(euler: np.ndarray) -> np.ndarray:
    """R = Rx(a) · Ry(b) · Rz(c), OpenFace's Euler2RotationMatrix (scalar math: numpy's per-call cost dominates 3×3)."""
    a, b, c = (float(v) for v in euler)
    s1, s2, s3 = math.sin(a), math.sin(b), math.sin(c)
    c1, c2, c3 = math.cos(a), math.cos(b), math.cos(c)
    return np.array([
        [c2 * c3, -c2 * s3, s2],
        [c1 * s3 + c3 * s1 * s2, c1 * c3 - s1 * s2 * s3, -c2 * s1],
        [s1 * s3 - c1 * c3 * s2, c3 * s1 + c1 * s2 * s3, c1 * c2],
    ])


def _euler(rot: np.ndarray) -> np.ndarray:
    (r00, r01, r02), (_, _, r12), (_, _, r22) = rot.tolist()
    return np.array([math.atan2(-r12, r22), math.asin(min(max(r02, -1.0), 1.0)), math.atan2(-r01, r00)])


def _small_rotation(w: np.ndarray) -> np.ndarray:
    """The rotation nearest I + [w]× (its polar factor, what OpenFace takes from an SVD), in closed form.

    For a skew W, (I + W)ᵀ(I + W) = I − W², whose inverse square root is 1 along w and (1 + |w|²)^−½ across it.
    """
    wx, wy, wz = (float(v) for v in w)
    t2 = wx * wx + wy * wy + wz * wz
    m = np.array([[1.0, -wz, wy], [wz, 1.0, -wx], [-wy, wx, 1.0]])
    if t2 < 1e-300:
        return m
    k = 1.0 / math.sqrt(1.0 + t2)
    n = np.array([wx, wy, wz]) / math.sqrt(t2)
    return m @ (k * np.eye(3) + (1.0 - k) * np.outer(n, n))


@dataclass
class Fit:
    """A PDM fit: global (scale, rx, ry, rz, tx, ty), local (34,), RMS residual in pixels."""

    scale: float
    rotation: np.ndarray
    translation: np.ndarray
    local: np.ndarray
    rms: float
    iterations: int
    centre: np.ndarray | None = None  # bounding-box centre of the points fitted (moves a warm start with the face)

    @property
    def params_global(self) -> np.ndarray:
        return np.concatenate([[self.scale], self.rotation, self.translation])


class Pdm:
    """OpenFace's 3-D point distribution model (mean 68×3 mm, 34 modes, their eigenvalues)."""

    def __init__(self, mean: np.ndarray, components: np.ndarray, eigenvalues: np.ndarray) -> None:
        self.mean = np.asarray(mean, np.float64).reshape(-1)  # (204,): x0..x67, y0.., z0..
        self.components = np.asarray(components, np.float64)  # (204, 34)
        self.eigenvalues = np.asarray(eigenvalues, np.float64).reshape(-1)  # (34,)
        self.n = self.mean.size // 3
        xy = self.mean.reshape(3, self.n)
        self._model_wh = (np.ptp(xy[0]), np.ptp(xy[1]))

    @classmethod
    def load(cls, path: str | Path) -> Pdm:
        mean, comps, eig = read_text_matrices(path)[:3]
        return cls(mean, comps, eig)

    def shape3d(self, local: np.ndarray) -> np.ndarray:
        """(68, 3) points of the model with these local parameters."""
        return (self.mean + self.components @ local).reshape(3, self.n).T

    def project(self, scale: float, rotation: np.ndarray, translation: np.ndarray, local: np.ndarray) -> np.ndarray:
        """Weak-perspective 2-D points (68, 2)."""
        return scale * self.shape3d(local) @ _rotation(rotation)[:2].T + translation

    def fit(self, points: np.ndarray, rotation: np.ndarray | None = None, max_iter: int = 1000,
            init: Fit | None = None) -> Fit:
        """CalcParams: the global and local parameters that best explain the 2-D points (68, 2).

        ``init``: start from this fit (the same face's previous frame) instead of the bounding-box guess: the same
        optimum in about half the steps, since the stop rule then only waits out its 5 steps without gain.
        """
        pts = np.asarray(points, np.float64)[:, :2]
        target = np.concatenate([pts[:, 0], pts[:, 1]])  # OpenFace's layout: all x, then all y
        n, m = self.n, self.components.shape[1]
        lo, hi = pts.min(0), pts.max(0)
        width, height = hi - lo
        scale = (width / self._model_wh[0] + height / self._model_wh[1]) / 2.0
        rot = np.zeros(3) if rotation is None else np.asarray(rotation, np.float64).copy()
        trans = (lo + hi) / 2.0
        local = np.zeros(m)
        if init is not None:
            scale, rot = float(init.scale), np.asarray(init.rotation, np.float64).copy()
            moved = 0.0 if init.centre is None else (lo + hi) / 2.0 - init.centre
            trans = np.asarray(init.translation, np.float64) + moved
            local = np.asarray(init.local, np.float64).copy()
        reg = np.zeros(6 + m)
        reg[6:] = 1.0 / self.eigenvalues
        reg_diag = np.diag(reg)
        comps = self.components.reshape(3, n * m)
        mean = self.mean.reshape(3, n)
        target = target.reshape(2, n)

        def evaluate(s: float, r: np.ndarray, t: np.ndarray, p: np.ndarray) -> tuple:
            """(rotation matrix, 3-D shape (3, n), residual (2, n)) of one parameter set."""
            rmat = _rotation(r)
            shape = mean + (self.components @ p).reshape(3, n)
            return rmat, shape, target - (s * (rmat[:2] @ shape) + t[:, None])

        rmat, shape, res = evaluate(scale, rot, trans, local)
        error = float(np.sqrt((res**2).sum()))
        jac = np.empty((2, n, 6 + m))
        jac[0, :, 4], jac[1, :, 4], jac[0, :, 5], jac[1, :, 5] = 1.0, 0.0, 0.0, 1.0
        worse, it = 0, 0
        for it in range(1, max_iter + 1):  # noqa: B007 - the count is reported
            r2 = rmat[:2]  # (2, 3): the rows that project
            x, y, z = shape
            jac[:, :, 0] = r2 @ shape
            # rotation terms of the small-angle update R·(I + [w]×): s · (shape × r) per projected row
            jac[:, :, 1] = scale * (y * r2[:, 2:3] - z * r2[:, 1:2])
            jac[:, :, 2] = -scale * (x * r2[:, 2:3] - z * r2[:, 0:1])
            jac[:, :, 3] = scale * (x * r2[:, 1:2] - y * r2[:, 0:1])
            jac[:, :, 6:] = scale * (r2 @ comps).reshape(2, n, m)
            j2 = jac.reshape(2 * n, 6 + m)
            grad = j2.T @ res.reshape(-1)
            grad[6:] -= reg[6:] * local
            try:
                delta = 0.75 * np.linalg.solve(j2.T @ j2 + reg_diag, grad)
            except np.linalg.LinAlgError:
                break
            scale += delta[0]
            trans = trans + delta[4:6]
            rot = _euler(rmat @ _small_rotation(delta[1:4]))
            local = local + delta[6:]
            rmat, shape, res = evaluate(scale, rot, trans, local)
            new_error = float(np.sqrt((res**2).sum()))
            if 0.999 * error < new_error:
                worse += 1
                if worse == 5:
                    error = new_error
                    break
            error = new_error
        return Fit(float(scale), rot, trans, local, error / np.sqrt(n), it, (lo + hi) / 2.0)


# ---------------------------------------------------------------------------------------------- alignment


def similarity(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """AlignShapesWithScale: the 2×2 scale·rotation (no reflection) taking src (N, 2) onto dst (N, 2)."""
    s = src - src.mean(0)
    d = dst - dst.mean(0)
    ss, sd = np.sqrt((s**2).sum() / len(s)), np.sqrt((d**2).sum() / len(d))
    s, d = s / ss, d / sd
    u, _, vt = np.linalg.svd(s.T @ d)
    corr = np.eye(2)
    corr[1, 1] = 1.0 if np.linalg.det(vt.T @ u.T) > 0 else -1.0
    return (sd / ss) * (vt.T @ corr @ u.T)


#: mean offset of FaceMesh-mapped iBUG points from OpenFace's own (CLNF) points, in the 112-px aligned face
#: (x, y per point); subtracted before the fit so the PDM and the alignment see OpenFace's conventions
#: (FaceMesh's jaw line runs higher and its brows lower). Measured by ``benchmarks/au_agreement.py
#: --fit-offsets`` on the OpenFace sample video only (near-frontal frames); the other shared videos stay held out.
FACEMESH_OFFSETS = np.array([
    [0.7, 0.8], [0.7, -1.8], [-0.6, -4.3], [-1.8, -5.5], [-3.2, -5.9], [-6.0, -7.3],
    [-3.1, -3.2], [-2.3, -2.2], [1.4, -0.9], [5.1, -3.2], [5.5, -5.0], [7.0, -9.8],
    [4.0, -8.7], [2.5, -8.6], [1.2, -7.0], [-0.3, -4.2], [-0.9, -1.1], [4.1, 0.5],
    [2.1, 3.5], [-0.8, 4.1], [-1.8, 3.4], [0.1, 3.4], [0.6, 4.1], [1.9, 4.5],
    [1.2, 5.0], [-1.5, 4.4], [-3.5, 1.7], [0.4, 5.0], [0.3, 1.4], [0.3, 2.9],
    [0.3, 5.1], [-1.5, 2.0], [0.3, 1.3], [0.5, -0.3], [0.4, 1.1], [2.2, 1.6],
    [-0.6, -0.7], [-1.3, -0.2], [-0.2, -0.6], [1.6, 0.3], [0.9, 0.3], [-0.0, 0.0],
    [-1.1, 0.6], [0.4, -0.1], [1.7, 0.0], [1.5, -0.2], [0.2, 0.4], [-1.0, 0.7],
    [1.9, 0.2], [2.1, -0.8], [0.5, -0.2], [0.5, -0.8], [-0.2, -0.4], [-2.1, -1.2],
    [-1.1, -0.1], [-2.8, 0.6], [-0.4, 0.2], [0.5, 0.0], [1.0, 0.3], [3.1, 0.7],
    [0.7, -0.8], [2.2, 0.0], [0.5, -0.3], [-1.7, 0.1], [-0.4, -1.1], [-1.1, 0.6],
    [0.7, 0.2], [1.9, 0.7],
])


def undo_offsets(points: np.ndarray, offsets: np.ndarray, dest: np.ndarray) -> np.ndarray:
    """Landmarks (68, 2) less a table of offsets given in aligned-face pixels, mapped back into the frame."""
    a = similarity(points[RIGID], dest)
    return points - offsets @ np.linalg.inv(a).T


class Aligner:
    """AlignFaceMask at 112×112: the warp and the triangulated face mask."""

    def __init__(self, pdm: Pdm, triangles: np.ndarray) -> None:
        self.dest = (pdm.mean.reshape(3, pdm.n)[:2].T * ALIGN_SCALE)[RIGID]
        self.triangles = np.asarray(triangles, np.int64)

    def matrix(self, points: np.ndarray, translation: np.ndarray) -> np.ndarray:
        """2×3 warp from the frame to the aligned face."""
        a = similarity(np.asarray(points, np.float64)[RIGID, :2], self.dest)
        t = a @ np.asarray(translation, np.float64)
        return np.hstack([a, (np.array([ALIGN_SIZE / 2, ALIGN_SIZE / 2]) - t)[:, None]])

    def align(self, image: np.ndarray, points: np.ndarray, translation: np.ndarray) -> np.ndarray:
        """The masked aligned face (112, 112[, 3]) uint8."""
        import cv2

        warp = self.matrix(points, translation)
        face = cv2.warpAffine(image, warp, (ALIGN_SIZE, ALIGN_SIZE), flags=cv2.INTER_LINEAR)
        dst = np.asarray(points, np.float64)[:, :2] @ warp[:, :2].T + warp[:, 2]
        dst[BROWS_AND_TEMPLES, 1] -= 30.0 / 0.7 * ALIGN_SCALE
        mask = np.zeros((ALIGN_SIZE, ALIGN_SIZE), np.uint8)
        tris = np.round(dst[self.triangles] * 16).astype(np.int32)  # 4 fractional bits
        for tri in tris:
            cv2.fillConvexPoly(mask, tri, 1, lineType=cv2.LINE_8, shift=4)
        return face * (mask[..., None] if face.ndim == 3 else mask)


# ---------------------------------------------------------------------------------------------- running median


class RunningMedian:
    """OpenFace's histogram median of each feature over a person's frames, kept up to date incrementally.

    OpenFace rescans the whole histogram after each update (4464 × 1000 bins); here each
    dimension keeps its median bin and the count below it, which move by a few bins per
    update, so an update costs O(dims) instead of O(dims × bins). The value reported is
    the centre of the bin holding the ``(count+1)//2``-th smallest sample (the lower
    median), and the first sample itself while there is only one — exactly OpenFace's.
    """

    def __init__(self, dims: int, bins: int, lo: float, hi: float, floor: float | None = None) -> None:
        self.bins, self.lo, self.hi = bins, lo, hi
        self.width = (hi - lo) / bins
        self.hist = np.zeros((dims, bins), np.uint16)  # 13.7 MB per person for HOG + geometry, not 27
        self.count = 0
        self.bin = np.zeros(dims, np.int64)  # current median bin per dimension
        self.below = np.zeros(dims, np.int64)  # samples in bins below it
        self.value: np.ndarray | None = None
        self.floor = floor
        self._rows = np.arange(dims)

    def to_bins(self, x: np.ndarray) -> np.ndarray:
        b = (np.asarray(x, np.float64) - self.lo) * (self.bins / (self.hi - self.lo))
        return np.clip(b, 0, self.bins - 1).astype(np.int64)  # truncation toward zero, as OpenFace's (int) cast

    def update(self, x: np.ndarray) -> np.ndarray:
        """Add one sample (dims,); return the median (dims,)."""
        b = self.to_bins(x)
        rows = self._rows
        if self.count >= 60000:  # uint16 bins: after ~33 h at 1 update / 2 frames, halve all counts
            self._halve()
        self.hist[rows, b] += 1
        self.count += 1
        if self.count == 1:
            self.bin[:] = b
            self.below[:] = 0
            self.value = np.asarray(x, np.float64).copy()
        else:
            self.below += b < self.bin
            cutoff = (self.count + 1) // 2
            while True:  # move each median bin until below < cutoff <= below + hist[bin]
                down = self.below >= cutoff
                up = ~down & (self.below + self.hist[rows, self.bin] < cutoff)
                if not (down.any() or up.any()):
                    break
                if down.any():  # to the nearest non-empty bin below (the median moves by one sample at most)
                    r = rows[down]
                    self.bin[r] = self._nonempty(r, self.bin[r] - 1, -1)
                    self.below[r] -= self.hist[r, self.bin[r]]
                if up.any():
                    r = rows[up]
                    self.below[r] += self.hist[r, self.bin[r]]
                    self.bin[r] = self._nonempty(r, self.bin[r] + 1, 1)
            self.value = self.lo + (self.bin + 0.5) * self.width
        if self.floor is not None:
            self.value = np.maximum(self.value, self.floor)
        return self.value

    def _nonempty(self, rows: np.ndarray, start: np.ndarray, step: int, window: int = 16) -> np.ndarray:
        """Per row, the first bin from ``start`` on (step +1 up, −1 down) that holds a sample.

        Looks ``window`` bins ahead at once; rows with nothing there (sparse early histograms) scan their whole
        remaining row. A row with no sample that way keeps the last bin in range (cannot happen while the walk's
        invariant holds; the clip only keeps indices valid).
        """
        offs = np.arange(window) * step
        idx = np.clip(start[:, None] + offs, 0, self.bins - 1)
        hit = self.hist[rows[:, None], idx] > 0
        found = hit.any(1)
        out = idx[np.arange(len(rows)), hit.argmax(1)]
        miss = np.flatnonzero(~found)
        if len(miss):  # the rest of each such row at once
            s = np.clip(start[miss] + window * step, 0, self.bins - 1)
            cols = np.arange(self.bins)
            beyond = (cols >= s[:, None]) if step > 0 else (cols <= s[:, None])
            cand = (self.hist[rows[miss]] > 0) & beyond
            if step > 0:
                j = np.where(cand.any(1), cand.argmax(1), self.bins - 1)
            else:
                j = np.where(cand.any(1), self.bins - 1 - cand[:, ::-1].argmax(1), 0)
            out[miss] = j
        return out

    def _halve(self) -> None:
        self.hist //= 2
        self.count = int(self.hist[0].sum())
        cum = np.cumsum(self.hist, axis=1, dtype=np.int64)
        self.bin = np.argmax(cum >= (self.count + 1) // 2, axis=1).astype(np.int64)
        self.below = cum[self._rows, self.bin] - self.hist[self._rows, self.bin]

    def brute_force(self) -> np.ndarray:
        """The median as OpenFace computes it, from the whole histogram (for tests)."""
        cum = np.cumsum(self.hist, axis=1, dtype=np.int64)
        j = np.argmax(cum >= (self.count + 1) // 2, axis=1)
        return self.lo + (j + 0.5) * self.width


# ---------------------------------------------------------------------------------------------- the models


@dataclass
class ModelSet:
    """The linear models of one index stacked for one matrix product: pred = (x − med·dyn)·W + c."""

    names: list[str]
    weights: np.ndarray  # (4702, K)
    offsets: np.ndarray  # (K,) bias − means·w
    dynamic: np.ndarray  # (K,) bool
    cutoffs: np.ndarray  # (K,)
    positive: np.ndarray
    negative: np.ndarray

    @classmethod
    def build(cls, models: list[tuple[str, LinearModel]], order: tuple[str, ...]) -> ModelSet:
        by_name = dict(models)
        names = [n for n in order if n in by_name]
        ms = [by_name[n] for n in names]
        w = np.stack([m.weights for m in ms], axis=1)
        c = np.array([m.bias - m.means @ m.weights for m in ms])
        return cls(names, w, c, np.array([m.dynamic for m in ms]), np.array([m.cutoff for m in ms]),
                   np.array([m.positive for m in ms]), np.array([m.negative for m in ms]))

    def raw(self, x: np.ndarray, median: np.ndarray | None) -> np.ndarray:
        """Decision values (N, K) for features (N, 4702) and the person's median (N, 4702) or None."""
        out = x @ self.weights + self.offsets
        if median is not None and self.dynamic.any():
            out = out - np.where(self.dynamic, median @ self.weights, 0.0)
        return out

    def classes(self, raw: np.ndarray) -> np.ndarray:
        return np.where(raw > 0, self.positive, self.negative)


class OpenFaceModels:
    """Everything read from an AU_predictors folder: PDM, triangulation, SVR and SVM sets."""

    def __init__(self, folder: str | Path, static: bool = False) -> None:
        folder = Path(folder)
        self.folder = folder
        self.pdm = Pdm.load(folder / "In-the-wild_aligned_PDM_68.txt")
        tris = read_text_matrices(folder / "tris_68_full.txt")[0]
        self.aligner = Aligner(self.pdm, tris)
        index = read_index(folder / ("AU_all_static.txt" if static else "AU_all_best.txt"))
        svr, svm = [], []
        for rel, au in index:
            model = read_dat(folder / rel)
            (svr if model.kind == "svr" else svm).append((au, model))
        self.svr = ModelSet.build(svr, INTENSITY_AUS)
        self.svm = ModelSet.build(svm, PRESENCE_AUS)
        self.any_dynamic = bool(self.svr.dynamic.any() or self.svm.dynamic.any())

    def features(self, image: np.ndarray, points: np.ndarray,
                 init: Fit | None = None) -> tuple[np.ndarray, Fit, np.ndarray]:
        """(4702 features, the PDM fit, the aligned face) of one face (``init``: a warm start, see ``Pdm.fit``)."""
        fit = self.pdm.fit(points, init=init)
        face = self.aligner.align(image, points, fit.translation)
        hog = _fhog.descriptor(_fhog.fhog(face))
        geom = np.concatenate([self.pdm.components @ fit.local, fit.local])
        return np.concatenate([hog, geom]), fit, face


# ---------------------------------------------------------------------------------------------- per person


@dataclass
class Person:
    """One tracked face's state: feature medians, the online correction, and the frames kept for offline use."""

    dims: int = N_HOG + 238
    frames: int = 0
    hog: RunningMedian = field(init=False)
    geom: RunningMedian = field(init=False)
    corr_hist: np.ndarray | None = None
    corr_count: int = 0
    kept: list = field(default_factory=list)  # (frame key, features float32) per successful frame
    keys: list = field(default_factory=list)  # frame key of every frame the person was seen (success or not)
    success: list = field(default_factory=list)

    def __post_init__(self) -> None:
        self.hog = RunningMedian(N_HOG, HOG_BINS, *HOG_RANGE, floor=0.0)
        self.geom = RunningMedian(self.dims - N_HOG, GEOM_BINS, *GEOM_RANGE)

    def observe(self, x: np.ndarray | None) -> np.ndarray | None:
        """Count a frame (x None: failed); every other frame (1st, 3rd, ...) updates the medians. The median."""
        self.frames += 1
        if x is not None and self.frames % 2 == 1:
            self.hog.update(x[:N_HOG])
            self.geom.update(x[N_HOG:])
        return self.median()

    def median(self) -> np.ndarray | None:
        if self.hog.value is None or self.geom.value is None:
            return None
        return np.concatenate([self.hog.value, self.geom.value])

    def correct(self, raw: np.ndarray, ratio: float = 0.10, bins: int = 200, lo: float = -3.0, hi: float = 5.0,
                min_frames: int = 10) -> np.ndarray:
        """CorrectOnlineAUs: subtract each AU's running ``ratio`` quantile (histogram) once 10 frames are in."""
        if self.corr_hist is None:
            self.corr_hist = np.zeros((raw.size, bins), np.int32)
        idx = np.clip(((raw - lo) * bins / (hi - lo)).astype(np.int64), 0, bins - 1)
        self.corr_hist[np.arange(raw.size), idx] += 1
        self.corr_count += 1
        if self.corr_count < min_frames:
            return raw
        cum = np.cumsum(self.corr_hist, axis=1)
        j = np.argmax(cum > int(ratio * self.corr_count), axis=1)
        return raw - (lo + j * (hi - lo) / bins)


def offline(models: OpenFaceModels, person: Person) -> tuple[list, np.ndarray, np.ndarray, np.ndarray]:
    """OpenFace's post-processing of one person's video: (frame keys, intensities, presences, success).

    Every kept frame is re-predicted with the final medians; each dynamic SVR AU is shifted
    down by its value at the model's cutoff quantile over the person's successful frames;
    values are clipped to 0–5, then smoothed over consecutive frames (3-frame mean,
    7-frame vote for presences), failed frames counting as 0 as in OpenFace.
    """
    keys = list(person.keys)
    ok = np.asarray(person.success, bool)
    n = len(keys)
    reg = np.zeros((n, len(models.svr.names)))
    cls = np.zeros((n, len(models.svm.names)))
    if person.kept:
        x = np.stack([f for _, f in person.kept]).astype(np.float64)
        med = person.median()
        med_b = None if med is None else np.broadcast_to(med, x.shape)
        rows = np.flatnonzero(ok)[: len(x)]
        r = models.svr.raw(x, med_b)
        reg[rows] = r
        cls[rows] = models.svm.classes(models.svm.raw(x, med_b))
        good = reg[ok]
        for k in range(reg.shape[1]):
            cut = models.svr.cutoffs[k]
            if models.svr.dynamic[k] and cut != -1 and len(good):
                srt = np.sort(good[:, k])
                reg[ok, k] -= srt[int(len(srt) * cut)]
    reg = np.where(ok[:, None], np.clip(reg, 0.0, 5.0), 0.0)
    if n >= 3:
        sm = reg.copy()
        sm[1:-1] = (reg[:-2] + reg[1:-1] + reg[2:]) / 3.0
        reg = sm
    if n > 6:  # 7-frame majority vote; the first and last 3 frames keep their own value, as in OpenFace
        csum = np.concatenate([np.zeros((1, cls.shape[1])), np.cumsum(cls, 0)])
        vote = cls.copy()
        for i in range(3, n - 3):
            vote[i] = (csum[i + 4] - csum[i - 3]) / 7.0 >= 0.5
        cls = vote
    return keys, reg, cls.astype(np.float64), ok
