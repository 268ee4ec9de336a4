"""Felzenszwalb's 31-channel HOG ("FHOG") exactly as dlib's ``extract_fhog_features`` computes it.

Why by hand: OpenFace 2.2's AU models were trained on dlib's FHOG of the 112×112 aligned
face, and no maintained Python library computes that variant (scikit-image's and OpenCV's
HOG are Dalal–Triggs: 9 unsigned bins, block-normalised vectors, no 31-channel layout).

dlib's algorithm (``dlib/image_transforms/fhog.h``, derived from voc-release's features.cc):

* per pixel (rows/cols 1 … visible−2), central differences per colour channel; the
  channel with the largest squared gradient wins (red, then green, then blue on ties);
* the gradient snaps to one of 18 signed orientations (9 unit vectors and their
  negatives), weight = gradient magnitude, spread bilinearly over the 4 nearest
  cells' histograms (cell centres at ``(i + 0.5)·cell − 0.5``);
* each cell's energy = Σ over 9 unsigned bins of (h[o] + h[o+9])²; each output cell
  (the border cells are dropped: 14×14 cells → 12×12) is normalised by the 4 blocks of
  2×2 cells around it: ``N_i = 0.2·sqrt(Σ energy + 1e-4)``;
* channels 0–17: Σ_i min(h[o], N_i)·0.1/N_i (contrast-sensitive); 18–26: the same on
  h[o] + h[o+9] (insensitive); 27–30: 0.4714·Σ_o min(h[o], N_i)·0.1/N_i per block i
  (texture: the gradient energy of each normalisation).

``fhog`` is the vectorised version used at run time; ``fhog_reference`` is the
straightforward per-pixel, per-cell transcription that the tests check it against.
OpenFace flattens the (rows, cols, 31) array row by row, then column, then channel
(``descriptor``).
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

#: dlib's 9 orientation unit vectors (x, y), y pointing down
DIRECTIONS = np.array([
    [1.0000, 0.0000], [0.9397, 0.3420], [0.7660, 0.6428], [0.500, 0.8660], [0.1736, 0.9848],
    [-0.1736, 0.9848], [-0.5000, 0.8660], [-0.7660, 0.6428], [-0.9397, 0.3420],
])
EPS = 0.0001


def _gradients(image: np.ndarray, cell: int) -> tuple[np.ndarray, np.ndarray, int, int, int, int]:
    """(gx, gy) of the strongest channel over the visible interior, and the cell grid size."""
    img = np.asarray(image)
    if img.ndim == 2:
        img = img[..., None]
    elif img.shape[2] == 3:
        img = img[..., ::-1]  # BGR → RGB: dlib prefers red, then green, then blue on ties
    img = img.astype(np.int32)
    nr, nc = img.shape[:2]
    cells_r, cells_c = int(nr / cell + 0.5), int(nc / cell + 0.5)
    vis_r, vis_c = min(cells_r * cell, nr) - 1, min(cells_c * cell, nc) - 1
    gx = img[1:vis_r, 2:vis_c + 1] - img[1:vis_r, 0:vis_c - 1]
    gy = img[2:vis_r + 1, 1:vis_c] - img[0:vis_r - 1, 1:vis_c]
    if gx.shape[2] > 1:  # the strongest channel; a later one must be strictly stronger (compares, not argmax: faster)
        mag = gx * gx + gy * gy
        pick_x, pick_y, top = gx[..., 0], gy[..., 0], mag[..., 0]
        for ch in range(1, gx.shape[2]):
            better = mag[..., ch] > top
            pick_x = np.where(better, gx[..., ch], pick_x)
            pick_y = np.where(better, gy[..., ch], pick_y)
            top = np.maximum(top, mag[..., ch])
        gx, gy = pick_x, pick_y
    else:
        gx, gy = gx[..., 0], gy[..., 0]
    return gx, gy, cells_r, cells_c, vis_r, vis_c


@lru_cache(maxsize=1)
def _orientation_table() -> np.ndarray:
    """dlib's signed orientation bin (0–17) of each integer gradient (gx, gy) in [−255, 255]², at [gx+255, gy+255].

    uint8 images give integer gradients, so a 511×511 table (built once, 0.26 MB) replaces the 9 dot products and
    the argmax per pixel, with exactly the same answer.
    """
    g = np.arange(-255, 256, dtype=np.float64)
    gx, gy = np.meshgrid(g, g, indexing="ij")
    dots = gx[..., None] * DIRECTIONS[:, 0] + gy[..., None] * DIRECTIONS[:, 1]
    best = np.abs(dots).argmax(-1)  # the first of equal |dot|s, as dlib's loop keeps the first
    table = best + 9 * (np.take_along_axis(dots, best[..., None], -1)[..., 0] < 0)
    table = table.astype(np.uint8)
    table.setflags(write=False)
    return table


def _features(hist: np.ndarray) -> np.ndarray:
    """Padded cell histograms (cells_r+2, cells_c+2, 18) → FHOG (cells_r−2, cells_c−2, 31)."""
    h = hist[1:-1, 1:-1]
    energy = ((h[..., :9] + h[..., 9:]) ** 2).sum(-1)  # (cells_r, cells_c)
    r, c = energy.shape[0] - 2, energy.shape[1] - 2
    if r <= 0 or c <= 0:
        return np.zeros((0, 0, 31), np.float32)
    # 2×2 block sums: block[y, x] = energy[y:y+2, x:x+2].sum()
    block = energy[:-1, :-1] + energy[1:, :-1] + energy[:-1, 1:] + energy[1:, 1:]
    # the 4 blocks that hold cell (y+1, x+1): bottom-right, top-right, bottom-left, top-left (dlib's lanes)
    sums = np.stack([block[1:, 1:], block[:-1, 1:], block[1:, :-1], block[:-1, :-1]], axis=-1)  # (r, c, 4)
    nn = 0.2 * np.sqrt(sums + EPS)
    n = 0.1 / nn
    cellh = h[1:-1, 1:-1]  # (r, c, 18)
    sens = np.minimum(cellh[..., None], nn[:, :, None, :]) * n[:, :, None, :]  # (r, c, 18, 4)
    unsigned = cellh[..., :9] + cellh[..., 9:]
    insens = np.minimum(unsigned[..., None], nn[:, :, None, :]) * n[:, :, None, :]
    out = np.empty((r, c, 31), np.float64)
    out[..., :18] = sens.sum(-1)
    out[..., 18:27] = insens.sum(-1)
    out[..., 27:] = 2 * 0.2357 * sens.sum(2)
    return out.astype(np.float32)


@lru_cache(maxsize=8)
def _spread(n: int, cells: int, cell: int) -> np.ndarray:
    """(cells + 2, n) bilinear weights of pixels 1 … n onto the padded cell grid (cell centres at (i + 0.5)·cell − 0.5).

    dlib adds each pixel's vote to the 4 nearest cells with weights (1 − v)·(1 − u) …; along one axis that is
    this matrix, so once the votes are spread across the columns (``_pairs``, one bincount) the rows take one
    matrix product instead of a scatter per pixel.
    """
    pos = (np.arange(1, n + 1) + 0.5) / cell - 0.5
    i = np.floor(pos).astype(np.int64)
    v = pos - i
    w = np.zeros((cells + 2, n))
    cols = np.arange(n)
    np.add.at(w, (i + 1, cols), 1.0 - v)
    np.add.at(w, (i + 2, cols), v)
    w.setflags(write=False)
    return w


@lru_cache(maxsize=8)
def _pairs(n: int, cells: int, cell: int) -> tuple[np.ndarray, np.ndarray]:
    """The two non-zero rows of ``_spread``'s columns: (cell index, weight), each (2, n)."""
    pos = (np.arange(1, n + 1) + 0.5) / cell - 0.5
    i = np.floor(pos).astype(np.int64)
    v = pos - i
    col, wgt = np.stack([i + 1, i + 2]), np.stack([1.0 - v, v])
    col.setflags(write=False)
    wgt.setflags(write=False)
    return col, wgt


def fhog(image: np.ndarray, cell: int = 8) -> np.ndarray:
    """dlib's FHOG of a uint8 image (H, W) or BGR (H, W, 3): (H/cell − 2, W/cell − 2, 31) float32."""
    gx, gy, cells_r, cells_c, _, _ = _gradients(image, cell)
    if np.asarray(image).dtype == np.uint8:
        orient = _orientation_table()[gx + 255, gy + 255]  # the signed bin
    else:  # gradients beyond the table: the dot products themselves
        dots = gx[..., None] * DIRECTIONS[:, 0] + gy[..., None] * DIRECTIONS[:, 1]
        best = np.abs(dots).argmax(-1)
        orient = best + 9 * (np.take_along_axis(dots, best[..., None], -1)[..., 0] < 0)
    mag = np.sqrt((gx * gx + gy * gy).astype(np.float64))
    h, w = mag.shape
    # across the columns first: each pixel votes into its 2 nearest cell columns of its own pixel row (one bincount
    # into (h, cells_c + 2, 18)), then down the rows as one matrix product
    col, wgt = _pairs(w, cells_c, cell)  # (2, w) cell column and weight of each pixel column
    width = cells_c + 2
    idx = (np.arange(h)[None, :, None] * width + col[:, None, :]) * 18 + orient[None]
    across = np.bincount(idx.ravel(), (wgt[:, None, :] * mag[None]).ravel(), minlength=h * width * 18)
    hist = (_spread(h, cells_r, cell) @ across.reshape(h, width * 18)).reshape(cells_r + 2, width, 18)
    return _features(hist)


def fhog_reference(image: np.ndarray, cell: int = 8) -> np.ndarray:
    """The same features, computed pixel by pixel and cell by cell as dlib's scalar loop does (slow; for tests)."""
    img = np.asarray(image)
    if img.ndim == 2:
        img = img[..., None]
    chans = [img[..., 2], img[..., 1], img[..., 0]] if img.shape[2] == 3 else [img[..., 0]]
    chans = [c.astype(np.int64) for c in chans]
    nr, nc = img.shape[:2]
    cells_r, cells_c = int(nr / cell + 0.5), int(nc / cell + 0.5)
    hist = np.zeros((cells_r + 2, cells_c + 2, 18))
    vis_r, vis_c = min(cells_r * cell, nr) - 1, min(cells_c * cell, nc) - 1
    for y in range(1, vis_r):
        for x in range(1, vis_c):
            best_len, gx, gy = -1, 0, 0
            for ch in chans:  # red, green, blue: a later channel must be strictly stronger
                cx = int(ch[y, x + 1] - ch[y, x - 1])
                cy = int(ch[y + 1, x] - ch[y - 1, x])
                if cx * cx + cy * cy > best_len:
                    best_len, gx, gy = cx * cx + cy * cy, cx, cy
            best_dot, best_o = 0.0, 0
            for o in range(9):
                dot = DIRECTIONS[o, 0] * gx + DIRECTIONS[o, 1] * gy
                if dot > best_dot:
                    best_dot, best_o = dot, o
                elif -dot > best_dot:
                    best_dot, best_o = -dot, o + 9
            v = np.sqrt(best_len)
            yp = (y + 0.5) / cell - 0.5
            xp = (x + 0.5) / cell - 0.5
            iyp, ixp = int(np.floor(yp)), int(np.floor(xp))
            vy0, vx0 = yp - iyp, xp - ixp
            vy1, vx1 = 1 - vy0, 1 - vx0
            hist[iyp + 1, ixp + 1, best_o] += vy1 * vx1 * v
            hist[iyp + 2, ixp + 1, best_o] += vy0 * vx1 * v
            hist[iyp + 1, ixp + 2, best_o] += vy1 * vx0 * v
            hist[iyp + 2, ixp + 2, best_o] += vy0 * vx0 * v
    norm = np.zeros((cells_r, cells_c))
    for r in range(cells_r):
        for c in range(cells_c):
            for o in range(9):
                s = hist[r + 1, c + 1, o] + hist[r + 1, c + 1, o + 9]
                norm[r, c] += s * s
    out = np.zeros((max(cells_r - 2, 0), max(cells_c - 2, 0), 31))
    for y in range(cells_r - 2):
        for x in range(cells_c - 2):
            sums = [
                norm[y + 1, x + 1] + norm[y + 1, x + 2] + norm[y + 2, x + 1] + norm[y + 2, x + 2],
                norm[y, x + 1] + norm[y, x + 2] + norm[y + 1, x + 1] + norm[y + 1, x + 2],
                norm[y + 1, x] + norm[y + 1, x + 1] + norm[y + 2, x] + norm[y + 2, x + 1],
                norm[y, x] + norm[y, x + 1] + norm[y + 1, x] + norm[y + 1, x + 1],
            ]
            h = hist[y + 2, x + 2]
            texture = [0.0] * 4
            for i, s in enumerate(sums):
                nn = 0.2 * np.sqrt(s + EPS)
                n = 0.1 / nn
                for o in range(18):
                    val = min(h[o], nn) * n
                    out[y, x, o] += val
                    texture[i] += val
                for o in range(9):
                    out[y, x, 18 + o] += min(h[o] + h[o + 9], nn) * n
            for i in range(4):
                out[y, x, 27 + i] = 2 * 0.2357 * texture[i]
    return out.astype(np.float32)


def descriptor(features: np.ndarray) -> np.ndarray:
    """OpenFace's flat HOG vector: row by row, then column, then channel (12·12·31 = 4464 for 112×112)."""
    return np.ascontiguousarray(features, np.float64).reshape(-1)
