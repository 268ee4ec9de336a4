"""Overlay: panel layout never overlaps, the input frame stays untouched, every layer draws."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from facegraph.nodes.face import _draw
from facegraph.nodes.face import _headpose as hp
from facegraph.nodes.face.overlay import Overlay

from facegraph.testing import run_node, run_node_frames


def _overlap(a, b) -> bool:
    return a[0] < b[0] + b[2] and b[0] < a[0] + a[2] and a[1] < b[1] + b[3] and b[1] < a[1] + a[3]


def test_layout_of_no_faces_is_empty():
    assert _draw.layout_panels([], [], (640, 480)) == []


@pytest.mark.parametrize("seed", range(30))
def test_panels_never_overlap_and_stay_inside(seed):
    rng = np.random.default_rng(seed)
    width, height = 640, 480
    n = int(rng.integers(1, 10))
    x1 = rng.uniform(0, width - 40, n)
    y1 = rng.uniform(0, height - 40, n)
    side = rng.uniform(30, 160, n)
    boxes = np.stack([x1, y1, np.minimum(x1 + side, width), np.minimum(y1 + side, height)], 1)
    if seed % 3 == 0:  # faces crowded into one corner, panels must still find room
        boxes[:, :2] = rng.uniform(0, 60, (n, 2))
        boxes[:, 2:] = boxes[:, :2] + 50
    sizes = [(int(rng.integers(80, 160)), int(rng.integers(20, 140))) for _ in range(n)]
    rects = _draw.layout_panels(boxes, sizes, (width, height))
    placed = [r for r in rects if r is not None]
    for a, b in itertools.combinations(placed, 2):
        assert not _overlap(a, b), (a, b)
    for r, size in zip(rects, sizes, strict=True):
        if r is not None:
            assert r[2:] == size and r[0] >= 0 and r[1] >= 0 and r[0] + r[2] <= width and r[1] + r[3] <= height
    assert len(placed) == n  # there is room for all of these in a 640×480 frame


def test_panel_goes_beside_its_face_when_there_is_room():
    rects = _draw.layout_panels([(100, 100, 200, 220), (300, 100, 400, 220)], [(90, 60), (90, 60)], (640, 480))
    assert rects[0] == (204, 100, 90, 60)  # right of the first face, not over the second
    assert rects[1] == (404, 100, 90, 60)


def test_panels_too_big_for_the_image_are_skipped_not_overlapped():
    rects = _draw.layout_panels([(0, 0, 10, 10), (20, 0, 30, 10)], [(60, 40), (60, 40)], (64, 48))
    assert rects[0] is not None and rects[1] is None


def test_axes_point_the_way_the_head_turns():
    origin = (100.0, 100.0)
    frontal = _draw.axes_endpoints(np.zeros(3), origin, 50)
    np.testing.assert_allclose(frontal[0], [150, 100])  # X to the right
    np.testing.assert_allclose(frontal[1], [100, 150])  # Y down
    np.testing.assert_allclose(frontal[2], [100, 100], atol=1e-9)  # Z straight at the camera
    yawed = _draw.axes_endpoints(np.radians([0, 30, 0]), origin, 50)
    assert yawed[2, 0] < 100 - 20  # positive yaw: the face (and its Z axis) turns to the image's left


def _inputs(n: int = 2) -> dict:
    image = np.full((240, 320, 3), 90, np.uint8)
    image.setflags(write=False)  # like a shared-memory view
    boxes = np.array([[40, 60, 120, 150], [180, 50, 260, 140]], np.float32)[:n]
    tracks = np.array([5, 2], np.int32)[:n]
    pts = np.zeros((n, 68, 2))
    for i, b in enumerate(boxes):
        pts[i] = hp.MODEL_68_MM[:, :2] * 0.5 + [(b[0] + b[2]) / 2, (b[1] + b[3]) / 2]
    return {
        "frame": {"image": image, "timestamp": 1.5, "fps": 30.0},
        "faces": {"boxes": boxes, "scores": np.ones(n, np.float32), "kps": np.zeros((n, 5, 2), np.float32),
                  "track_id": tracks},
        "landmarks": {"points": pts.astype(np.float32), "track_id": tracks},
        "pose": {"rotation": np.radians([[0, 20, 0], [10, -20, 5]])[:n].astype(np.float32),
                 "translation": np.tile([0, 0, 600], (n, 1)).astype(np.float32), "track_id": tracks[::-1].copy()},
        "aus": {"intensity": np.array([[0.5, 4.0], [2.0, 1.0]], np.float32)[:n], "names": ["AU12", "AU45"],
                "track_id": tracks},
        "probs": {"p": np.array([[0.7, 0.2, 0.1, 0.0], [0.1, 0.1, 0.3, 0.5]], np.float32)[:n],
                  "labels": ["happy", "sad", "neutral", "angry"], "track_id": tracks},
        "identities": {"names": ["ada", ""][:n], "scores": np.array([0.8, 0.1], np.float32)[:n], "track_id": tracks},
    }


def test_draws_every_layer_on_a_copy_and_keeps_frame_fields():
    inputs = _inputs()
    out = run_node(Overlay(), inputs)["frame"]
    img = out["image"]
    assert img.shape == (240, 320, 3) and img.dtype == np.uint8
    assert (inputs["frame"]["image"] == 90).all()  # input untouched
    assert (img != 90).any(axis=2).mean() > 0.05  # something was drawn
    assert out["timestamp"] == 1.5 and out["fps"] == 30.0
    # each layer changes the picture on its own
    plain = run_node(Overlay(boxes=False, points=False, axes=False, au_bars=False, prob_bars=False, names=False,
                             readout=False), inputs)["frame"]["image"]
    assert (plain == 90).all()
    for layer in ("boxes", "points", "axes", "au_bars", "prob_bars", "names"):
        flags = {k: k == layer for k in ("boxes", "points", "axes", "au_bars", "prob_bars", "names")}
        drawn = run_node(Overlay(readout=False, **flags), inputs)["frame"]["image"]
        assert (drawn != 90).any(), layer


def test_frame_only_zero_faces_and_a_side_image():
    frame = {"image": np.zeros((100, 120, 3), np.uint8)}
    out = run_node(Overlay(), {"frame": frame})["frame"]["image"]
    assert out.shape == (100, 120, 3)
    empty = _inputs(0)
    out = run_node(Overlay(), empty)["frame"]["image"]
    assert out.shape == (240, 320, 3)
    side = {"image": np.full((120, 80, 3), 200, np.uint8)}
    out = run_node(Overlay(readout=False), {"frame": frame, "image": side})["frame"]["image"]
    assert out.shape == (100, 120 + 67, 3) and (out[:, 120:] == 200).all()


def test_readout_shows_rate_and_latency_from_capture_time():
    import time

    node = Overlay(boxes=False, points=False, axes=False, au_bars=False, prob_bars=False, names=False)
    frames = [{"frame": {"image": np.zeros((80, 200, 3), np.uint8)}} for _ in range(3)]
    outs = run_node_frames(node, frames, t_capture=time.monotonic_ns())
    assert (outs[0]["frame"]["image"][:20, :120] != 0).any()  # latency line already on the first frame
    assert node._fps is not None and node._fps > 0
    assert node._latency_ms is not None and 0 <= node._latency_ms < 10_000
