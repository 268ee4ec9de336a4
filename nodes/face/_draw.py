"""Drawing primitives for the overlay: boxes with ids, landmarks, pose axes, bar panels, a readout.

Every function draws in place on a BGR uint8 image the caller owns (the overlay node
copies the frame first). :func:`layout_panels` places one panel per face so that no
two panels overlap, whatever the faces' positions (the overlay's per-face bars).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

Rect = tuple[int, int, int, int]  # x, y, w, h

_PALETTE = [
    (255, 128, 0), (0, 200, 255), (80, 220, 60), (255, 60, 200), (60, 60, 255),
    (200, 200, 0), (0, 140, 255), (180, 100, 255), (120, 255, 180), (255, 255, 255),
]
FONT_SCALE = 0.4
LINE_H = 13  # pixels per text or bar row at FONT_SCALE
LABEL_H = 18  # height of a box's id label, drawn above the box


def _px(v: float) -> int:
    """Nearest integer pixel coordinate."""
    return int(np.floor(float(v) + 0.5))


def track_color(track_id: int | None) -> tuple[int, int, int]:
    """A stable colour per track (white-ish for untracked faces)."""
    if track_id is None or track_id < 0:
        return (220, 220, 220)
    return _PALETTE[int(track_id) % len(_PALETTE)]


def draw_box(img: np.ndarray, box: Sequence[float], color: tuple[int, int, int], label: str = "") -> None:
    import cv2

    x1, y1, x2, y2 = (_px(v) for v in box[:4])
    cv2.rectangle(img, (x1, y1), (x2, y2), color, 2, cv2.LINE_AA)
    if label:
        (tw, th), _ = cv2.getTextSize(label, cv2.FONT_HERSHEY_SIMPLEX, FONT_SCALE + 0.1, 1)
        top = max(0, y1 - th - 6)
        cv2.rectangle(img, (x1, top), (x1 + tw + 6, top + th + 6), color, -1)
        cv2.putText(img, label, (x1 + 3, top + th + 2), cv2.FONT_HERSHEY_SIMPLEX, FONT_SCALE + 0.1, (0, 0, 0), 1,
                    cv2.LINE_AA)


def draw_points(img: np.ndarray, points: np.ndarray, color: tuple[int, int, int], radius: int = 1) -> None:
    import cv2

    xy = np.asarray(points)[:, :2].astype(np.float64)
    xy = xy[np.isfinite(xy).all(axis=1)]
    for x, y in np.floor(xy + 0.5).astype(np.int64).tolist():  # _px of every point at once
        cv2.circle(img, (x, y), radius, color, -1, cv2.LINE_AA)


def axes_endpoints(rotation: np.ndarray, origin: Sequence[float], length: float) -> np.ndarray:
    """Image end points (3, 2) of the head's X (red), Y (green), Z (blue) axes drawn from ``origin``.

    Orthographic: the columns of OpenFace's R = Rx·Ry·Rz are the head axes in camera
    coordinates (X right, Y down, Z away); their x, y parts are their image directions.
    The Z axis is drawn pointing out of the face (towards the camera when frontal).
    """
    from ._headpose import euler_to_matrix

    rot = euler_to_matrix(np.asarray(rotation, np.float64))
    dirs = rot[:2, :].T.copy()  # (3 axes, xy)
    dirs[2] *= -1  # out of the face
    return np.asarray(origin, np.float64)[None, :2] + length * dirs


def draw_axes(img: np.ndarray, rotation: np.ndarray, origin: Sequence[float], length: float) -> None:
    import cv2

    o = tuple(_px(v) for v in origin[:2])
    colors = ((0, 0, 255), (0, 255, 0), (255, 0, 0))  # X red, Y green, Z blue
    for end, color in zip(axes_endpoints(rotation, origin, length), colors, strict=True):
        if np.all(np.isfinite(end)):
            cv2.arrowedLine(img, o, (_px(end[0]), _px(end[1])), color, 2, cv2.LINE_AA, tipLength=0.15)


def _overlaps(a: Rect, b: Rect) -> bool:
    return a[0] < b[0] + b[2] and b[0] < a[0] + a[2] and a[1] < b[1] + b[3] and b[1] < a[1] + a[3]


def layout_panels(
    boxes: Sequence[Sequence[float]], sizes: Sequence[tuple[int, int]], image_wh: tuple[int, int], gap: int = 4
) -> list[Rect | None]:
    """Place one panel (w, h) per face box so that no two panels overlap.

    Faces are handled left to right; each panel tries, in order, the right of its box,
    the left, below and above (each slid along that side), avoiding the panels already
    placed and, where it can, every face box; then any free spot in the image. A panel
    that fits nowhere gets None (it is not drawn) rather than covering another one.
    """
    width, height = image_wh
    faces = [tuple(_px(v) for v in b[:4]) for b in boxes]
    # each face keeps its box and the id label band above it (LABEL_H) free of panels where it can
    face_rects: list[Rect] = [
        (x1, y1 - LABEL_H, max(1, x2 - x1), max(1, y2 - y1 + LABEL_H)) for x1, y1, x2, y2 in faces
    ]
    placed: list[Rect | None] = [None] * len(boxes)
    done: list[Rect] = []
    order = sorted(range(len(boxes)), key=lambda i: (faces[i][0], faces[i][1]))
    for i in order:
        w, h = (int(v) for v in sizes[i])
        if w <= 0 or h <= 0 or w > width or h > height:
            continue
        x1, y1, x2, y2 = faces[i]
        step = max(4, h // 2)
        candidates: list[tuple[int, int]] = []
        for dy in range(0, max(height, 1), step):  # slide along the side, nearest first
            for sign in (1, -1) if dy else (1,):
                y = y1 + sign * dy
                candidates += [(x2 + gap, y), (x1 - gap - w, y)]
        for dx in range(0, max(width, 1), max(4, w // 2)):
            for sign in (1, -1) if dx else (1,):
                candidates += [(x1 + sign * dx, y2 + gap), (x1 + sign * dx, y1 - gap - h)]
        rect = None
        for strict in (True, False):
            for cx, cy in candidates:
                r = (cx, cy, w, h)
                if cx < 0 or cy < 0 or cx + w > width or cy + h > height:
                    continue
                if any(_overlaps(r, d) for d in done):
                    continue
                if strict and any(_overlaps(r, f) for f in face_rects):
                    continue
                rect = r
                break
            if rect is not None:
                break
        if rect is None:  # anywhere free
            for cy in range(0, height - h + 1, 4):
                for cx in range(0, width - w + 1, 4):
                    r = (cx, cy, w, h)
                    if not any(_overlaps(r, d) for d in done):
                        rect = r
                        break
                if rect is not None:
                    break
        if rect is not None:
            placed[i] = rect
            done.append(rect)
    return placed


def panel_size(labels: Sequence[str], title: bool, bar_w: int = 60) -> tuple[int, int]:
    """(w, h) of a panel with one row per label (label, bar, value) and an optional title row."""
    label_w = max((len(s) for s in labels), default=0) * 7 + 6
    rows = len(labels) + (1 if title else 0)
    return (max(label_w + bar_w + 36, 90), rows * LINE_H + 6) if rows else (0, 0)


def draw_panel(
    img: np.ndarray,
    rect: Rect,
    rows: Sequence[tuple[str, float, str]],
    vmax: float,
    color: tuple[int, int, int],
    title: str = "",
) -> None:
    """A translucent box of bars: rows of (label, value, value text), bar length value/vmax."""
    import cv2

    x, y, w, h = rect
    roi = img[y : y + h, x : x + w]
    roi[:] = (roi.astype(np.uint16) * 2 // 5).astype(np.uint8)  # darken: text stays legible
    cv2.rectangle(img, (x, y), (x + w - 1, y + h - 1), color, 1)
    font = cv2.FONT_HERSHEY_SIMPLEX
    row_y = y + 3
    if title:
        cv2.putText(img, title, (x + 3, row_y + LINE_H - 3), font, FONT_SCALE, color, 1, cv2.LINE_AA)
        row_y += LINE_H
    label_w = max((len(r[0]) for r in rows), default=0) * 7 + 6
    bar_x0, bar_x1 = x + label_w, x + w - 34
    for label, val, text in rows:
        cv2.putText(img, label, (x + 3, row_y + LINE_H - 3), font, FONT_SCALE, (255, 255, 255), 1, cv2.LINE_AA)
        frac = 0.0 if not np.isfinite(val) or vmax <= 0 else float(np.clip(val / vmax, 0, 1))
        cv2.rectangle(img, (bar_x0, row_y + 3), (bar_x1, row_y + LINE_H - 2), (90, 90, 90), 1)
        if frac > 0:
            end = bar_x0 + _px(frac * (bar_x1 - bar_x0))
            cv2.rectangle(img, (bar_x0, row_y + 3), (end, row_y + LINE_H - 2), color, -1)
        cv2.putText(img, text, (bar_x1 + 3, row_y + LINE_H - 3), font, FONT_SCALE, (255, 255, 255), 1, cv2.LINE_AA)
        row_y += LINE_H


def draw_readout(img: np.ndarray, lines: Sequence[str]) -> None:
    """Text lines in the top-left corner on a dark band."""
    import cv2

    if not lines:
        return
    font = cv2.FONT_HERSHEY_SIMPLEX
    w = max(cv2.getTextSize(s, font, 0.5, 1)[0][0] for s in lines) + 10
    h = 18 * len(lines) + 6
    roi = img[0 : min(h, img.shape[0]), 0 : min(w, img.shape[1])]
    roi[:] = roi // 3
    for k, text in enumerate(lines):
        cv2.putText(img, text, (5, 17 + 18 * k), font, 0.5, (0, 255, 255), 1, cv2.LINE_AA)


def side_by_side(left: np.ndarray, right: np.ndarray) -> np.ndarray:
    """``right`` scaled to ``left``'s height and joined on its right side."""
    import cv2

    if right.shape[0] != left.shape[0]:
        scale = left.shape[0] / right.shape[0]
        right = cv2.resize(right, (max(1, _px(right.shape[1] * scale)), left.shape[0]))
    return np.ascontiguousarray(np.concatenate([left, right], axis=1))
