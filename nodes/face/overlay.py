"""Annotates a copy of the frame: boxes with track ids, landmarks, head-pose axes, AU and top-k bars, FPS/latency."""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from facegraph import FRAME, Input, Node, Output, Param, register

from ..types import AUS, FACES, IDENTITIES, LANDMARKS, POSE, PROBS
from . import _draw


@register("overlay")
class Overlay(Node):
    """Draws whatever per-face results are connected onto a copy of the frame.

    Per-face inputs are matched to faces by track_id when both carry one, else by row.
    Each face's bars (AUs, top-k probabilities, identity) share one panel, and the
    panels are laid out so they never overlap (``_draw.layout_panels``). The readout
    shows the processing rate and the latency from capture to this node.
    """

    frame = Input(FRAME)
    faces = Input(FACES, optional=True)
    landmarks = Input(LANDMARKS, optional=True)
    pose = Input(POSE, optional=True)
    aus = Input(AUS, optional=True)
    probs = Input(PROBS, optional=True, doc="class probabilities per face (top-k bars)")
    identities = Input(IDENTITIES, optional=True)
    image = Input(FRAME, optional=True, doc="a second picture shown on the right (e.g. a reconstruction)")
    out = Output(FRAME, doc="an annotated copy of the frame", name="frame")
    boxes = Param(bool, True, doc="draw face boxes with track ids")
    points = Param(bool, True, doc="draw landmarks")
    axes = Param(bool, True, doc="draw head-pose axes")
    gaze = Param(bool, True, doc="draw gaze lines from the eyes (when the AUs carry OpenFace's gaze)")
    au_bars = Param(bool, True, doc="draw AU intensity bars")
    prob_bars = Param(bool, True, doc="draw top-k probability bars")
    names = Param(bool, True, doc="write identity names")
    readout = Param(bool, True, doc="write FPS and latency")
    top_k = Param(int, 3, ge=1, le=20, doc="probability bars per face")
    au_min = Param(float, 0.0, ge=0, le=5, doc="hide AUs below this intensity")

    cost = 0.8  # copy of the frame, 68 points, axes, an AU panel at 640×480 (one core)

    def open(self) -> None:
        import cv2

        cv2.setNumThreads(1)
        self._last_wall: float | None = None
        self._fps: float | None = None
        self._latency_ms: float | None = None

    def process(self, frame: Any, faces: Any = None, landmarks: Any = None, pose: Any = None, aus: Any = None,
                probs: Any = None, identities: Any = None, image: Any = None) -> dict[str, Any]:
        # the input may be a read-only shared-memory view: annotate a copy, made straight in the output's slot
        img = self.output_array("frame", frame.image.shape, frame.image.dtype)
        np.copyto(img, frame.image)
        keys, boxes = _face_keys_and_boxes(faces, landmarks, pose, aus, probs, identities)
        colors = [_draw.track_color(k if k is not None and k >= 0 else None) for k in keys]
        if self.boxes and faces is not None:
            for i, box in enumerate(faces.boxes):
                label = f"#{keys[i]}" if keys[i] is not None and keys[i] >= 0 else ""
                _draw.draw_box(img, box, colors[i], label)
        if self.points and landmarks is not None:
            rows = _match(keys, landmarks)
            for i, r in enumerate(rows):
                if r is not None:
                    _draw.draw_points(img, landmarks.points[r], colors[i])
        if self.axes and pose is not None:
            rows = _match(keys, pose)
            for i, r in enumerate(rows):
                if r is None or boxes[i] is None:
                    continue
                origin = _axis_origin(boxes[i], landmarks, keys[i], i)
                length = 0.5 * max(boxes[i][2] - boxes[i][0], 1.0)
                _draw.draw_axes(img, pose.rotation[r], origin, length)
        if self.gaze and aus is not None and aus.get("gaze") is not None and landmarks is not None:
            self._draw_gaze(img, keys, boxes, landmarks, aus)
        self._draw_panels(img, keys, boxes, colors, aus, probs, identities)
        if image is not None:
            img = _draw.side_by_side(img, image.image)
        if self.readout:
            _draw.draw_readout(img, self._readout(frame))
        fields: dict[str, Any] = {"image": img}
        for name in ("timestamp", "fps"):
            if frame.get(name) is not None:
                fields[name] = frame.get(name)
        return {"frame": fields}

    def _draw_gaze(self, img: np.ndarray, keys: list, boxes: list, landmarks: Any, aus: Any) -> None:
        """A line from each eye's centre along its gaze vector's image-plane direction."""
        import cv2

        l_rows, g_rows = _match(keys, landmarks), _match(keys, aus)
        for i, (lr, gr) in enumerate(zip(l_rows, g_rows, strict=True)):
            pts = landmarks.points[lr] if lr is not None else None
            if pts is None or gr is None or pts.shape[0] != 68 or boxes[i] is None:
                continue
            length = 0.4 * max(boxes[i][2] - boxes[i][0], 1.0)
            for e, sl in enumerate((slice(36, 42), slice(42, 48))):
                g = aus.gaze[gr, e]
                if not np.all(np.isfinite(g)):
                    continue
                c = pts[sl, :2].mean(0)
                end = c + length * np.asarray(g[:2], np.float64)
                cv2.line(img, (int(c[0]), int(c[1])), (int(end[0]), int(end[1])), (0, 200, 255), 2, cv2.LINE_AA)

    def _draw_panels(self, img: np.ndarray, keys: list, boxes: list, colors: list, aus: Any, probs: Any,
                     identities: Any) -> None:
        panels: list[tuple[str, list[tuple[str, float, str]], float]] = []
        au_rows = _match(keys, aus) if aus is not None and self.au_bars else [None] * len(keys)
        p_rows = _match(keys, probs) if probs is not None and self.prob_bars else [None] * len(keys)
        id_rows = _match(keys, identities) if identities is not None and self.names else [None] * len(keys)
        for i in range(len(keys)):
            rows: list[tuple[str, float, str]] = []
            vmax = 5.0
            if au_rows[i] is not None:
                vals = aus.intensity[au_rows[i]]
                rows += [(str(n), float(v), f"{v:.1f}") for n, v in zip(aus.names, vals, strict=False)
                         if v >= self.au_min]
            if p_rows[i] is not None:
                p = probs.p[p_rows[i]]
                top = np.argsort(-p)[: self.top_k]
                prob_rows = [(str(probs.labels[j])[:10], float(p[j]) * 5.0, f"{p[j]:.2f}") for j in top]
                rows += prob_rows  # probabilities scaled onto the same 0-5 bar as AUs
            title = ""
            if id_rows[i] is not None:
                name = identities.names[id_rows[i]]
                title = f"{name or 'unknown'} {identities.scores[id_rows[i]]:.2f}"
            panels.append((title, rows, vmax))
        sizes = [_draw.panel_size([r[0] for r in rows], bool(title)) if rows or title else (0, 0)
                 for title, rows, _ in panels]
        if title_only := [i for i, (t, r, _) in enumerate(panels) if t and not r]:
            for i in title_only:
                sizes[i] = (max(90, 7 * len(panels[i][0]) + 8), _draw.LINE_H + 6)
        placeable = [b if b is not None else (0, 0, 1, 1) for b in boxes]
        rects = _draw.layout_panels(placeable, sizes, (img.shape[1], img.shape[0]))
        for i, rect in enumerate(rects):
            title, rows, vmax = panels[i]
            if rect is not None and (rows or title):
                _draw.draw_panel(img, rect, rows, vmax, colors[i], title)

    def _readout(self, frame: Any) -> list[str]:
        now = time.perf_counter()
        if self._last_wall is not None:
            dt = now - self._last_wall
            if dt > 0:
                rate = 1.0 / dt
                self._fps = rate if self._fps is None else 0.9 * self._fps + 0.1 * rate
        self._last_wall = now
        lines = []
        if self._fps is not None:
            lines.append(f"FPS {self._fps:5.1f}")
        t_capture = getattr(frame, "t_capture", 0)
        if t_capture:
            latency = (time.monotonic_ns() - t_capture) / 1e6
            if 0 <= latency < 1e6:
                self._latency_ms = latency if self._latency_ms is None else 0.8 * self._latency_ms + 0.2 * latency
                lines.append(f"latency {self._latency_ms:5.1f} ms")
        return lines


def _keys_of(packet: Any) -> list[int | None] | None:
    if packet is None:
        return None
    tracks = packet.get("track_id")
    return [int(t) for t in tracks] if tracks is not None else None


def _count(packet: Any) -> int:
    for field in ("boxes", "points", "rotation", "intensity", "p", "scores"):
        value = packet.get(field)
        if isinstance(value, np.ndarray):
            return len(value)
    return len(packet.get("names") or [])


def _face_keys_and_boxes(faces: Any, landmarks: Any, *others: Any) -> tuple[list, list]:
    """The faces to annotate: (track id or None per face, box or None per face), from faces or landmarks."""
    if faces is not None:
        n = len(faces.boxes)
        keys = _keys_of(faces) or [None] * n
        return keys, [tuple(float(v) for v in b) for b in faces.boxes]
    if landmarks is not None:
        n = len(landmarks.points)
        keys = _keys_of(landmarks) or [None] * n
        boxes = []
        for pts in landmarks.points:
            xy = pts[:, :2]
            boxes.append((float(np.nanmin(xy[:, 0])), float(np.nanmin(xy[:, 1])),
                          float(np.nanmax(xy[:, 0])), float(np.nanmax(xy[:, 1]))))
        return keys, boxes
    for packet in others:
        if packet is not None:
            n = _count(packet)
            return _keys_of(packet) or [None] * n, [None] * n
    return [], []


def _match(keys: list, packet: Any) -> list[int | None]:
    """For each face, the row of ``packet`` that belongs to it: same track id, else same row."""
    n = _count(packet)
    other = _keys_of(packet)
    if other is not None and all(k is not None for k in keys):
        where = {k: r for r, k in enumerate(other)}
        return [where.get(k) for k in keys]
    return [i if i < n else None for i in range(len(keys))]


def _axis_origin(box: tuple, landmarks: Any, key: Any, index: int) -> tuple[float, float]:
    """Where to draw a face's axes: its nose tip when 68-point landmarks are there, else the box centre."""
    if landmarks is not None and landmarks.points.shape[1] == 68:
        row = _match([key], landmarks)[0] if key is not None else (index if index < len(landmarks.points) else None)
        if row is not None:
            x, y = landmarks.points[row, 30, :2]
            if np.isfinite(x) and np.isfinite(y):
                return float(x), float(y)
    return (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
