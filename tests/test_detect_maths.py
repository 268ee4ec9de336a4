"""Detector maths without models: BlazeFace anchors and decoding, SCRFD decoding, NMS."""

from __future__ import annotations

import numpy as np
import pytest
from facegraph.nodes.face import _blazeface as bf
from facegraph.nodes.face import _scrfd
from facegraph.nodes.face._nms import iou_matrix, nms, weighted_nms


@pytest.mark.parametrize(("cfg", "count"), [(bf.SHORT_RANGE, 896), (bf.FULL_RANGE, 2304)])
def test_anchor_counts_match_the_models(cfg, count):
    anchors = bf.anchors(cfg)
    assert anchors.shape == (count, 2)
    assert anchors.min() > 0 and anchors.max() < 1


def test_short_range_anchor_layout():
    anchors = bf.anchors(bf.SHORT_RANGE)
    # stride 8: 16×16 cells × 2 anchors, first cell centred at (0.5/16, 0.5/16)
    np.testing.assert_allclose(anchors[0], [0.5 / 16, 0.5 / 16])
    np.testing.assert_allclose(anchors[1], anchors[0])
    np.testing.assert_allclose(anchors[2], [1.5 / 16, 0.5 / 16])
    # stride 16: 8×8 cells × 6 anchors
    np.testing.assert_allclose(anchors[512], [0.5 / 8, 0.5 / 8])
    np.testing.assert_allclose(anchors[512:518], np.repeat(anchors[512:513], 6, axis=0))


def test_blazeface_decodes_a_known_box():
    cfg = bf.SHORT_RANGE
    anchors = bf.anchors(cfg)
    raw = np.zeros((len(anchors), 16), np.float32)
    logits = np.full(len(anchors), -10.0, np.float32)
    i = 600
    raw[i, :4] = [6.4, -12.8, 32.0, 64.0]  # centre offset (+0.05, -0.1), size (0.25, 0.5) of 128
    raw[i, 4:6] = [12.8, 0.0]
    logits[i] = 3.0
    boxes, scores, kps = bf.decode(raw, logits, anchors, cfg)
    assert len(boxes) == 1
    cx, cy = anchors[i] + [0.05, -0.1]
    np.testing.assert_allclose(boxes[0], [cx - 0.125, cy - 0.25, cx + 0.125, cy + 0.25], atol=1e-6)
    np.testing.assert_allclose(scores[0], 1 / (1 + np.exp(-3.0)), rtol=1e-6)
    np.testing.assert_allclose(kps[0, 0], anchors[i] + [0.1, 0.0], atol=1e-6)


def test_blazeface_letterbox_round_trip():
    # a 640×480 frame: scale 0.2 to 128×96, padded 16 rows top and bottom
    _, _, px, py, nw, nh = bf.letterbox(480, 640, 128)
    assert (nw, nh, px, py) == (128, 96, 0, 16)
    cfg = bf.SHORT_RANGE
    anchors = bf.anchors(cfg)
    raw = np.zeros((len(anchors), 16), np.float32)
    logits = np.full(len(anchors), -10.0, np.float32)
    logits[0] = 5.0
    boxes, _, kps6 = bf.postprocess(raw, logits, anchors, cfg, (480, 640))
    # a zero-size box at the first anchor's centre (4, 4) in input pixels → (20, -60) in the frame
    np.testing.assert_allclose(boxes[0], [20, -60, 20, -60], atol=1e-4)
    np.testing.assert_allclose(kps6[0, 0], [20, -60], atol=1e-4)


def test_arcface_kps_from_blazeface():
    kps6 = np.array([[[40, 50], [80, 50], [60, 70], [60, 90], [20, 55], [100, 55]]], np.float32)
    kps5 = bf.arcface_kps(kps6)
    assert kps5.shape == (1, 5, 2)
    np.testing.assert_allclose(kps5[0, :3], kps6[0, :3])
    np.testing.assert_allclose(kps5[0, 3], [60 - 0.414 * 40, 90], atol=1e-4)
    np.testing.assert_allclose(kps5[0, 4], [60 + 0.414 * 40, 90], atol=1e-4)


def test_iou_and_nms():
    boxes = np.array([[0, 0, 10, 10], [1, 1, 11, 11], [20, 20, 30, 30], [0, 0, 10, 5]], np.float32)
    iou = iou_matrix(boxes, boxes)
    np.testing.assert_allclose(np.diag(iou), 1.0)
    assert iou[0, 2] == 0
    np.testing.assert_allclose(iou[0, 3], 0.5)
    keep = nms(boxes, np.array([0.9, 0.8, 0.7, 0.95]), 0.6)
    assert keep.tolist() == [3, 0, 2]
    assert nms(np.zeros((0, 4)), np.zeros(0), 0.5).tolist() == []


def test_weighted_nms_averages_a_cluster():
    boxes = np.array([[0, 0, 10, 10], [2, 0, 12, 10], [50, 50, 60, 60]], np.float32)
    points = np.array([[[0, 0]], [[2, 0]], [[50, 50]]], np.float32)
    out_boxes, out_scores, out_points = weighted_nms(boxes, np.array([0.75, 0.25, 0.5]), points, 0.3)
    assert out_scores.tolist() == [0.75, 0.5]
    np.testing.assert_allclose(out_boxes[0], [0.5, 0, 10.5, 10])
    np.testing.assert_allclose(out_points[0, 0], [0.5, 0])
    empty = weighted_nms(np.zeros((0, 4)), np.zeros(0), np.zeros((0, 6, 2)), 0.3)
    assert empty[2].shape == (0, 6, 2)


def test_scrfd_anchor_centres_and_distances():
    centres = _scrfd.anchor_centers(2, 3, 8, 2)
    assert centres.shape == (12, 2)
    np.testing.assert_allclose(centres[:4], [[0, 0], [0, 0], [8, 0], [8, 0]])
    np.testing.assert_allclose(centres[6], [0, 8])
    boxes = _scrfd.distance2bbox(np.array([[10.0, 20.0]]), np.array([[1.0, 2.0, 3.0, 4.0]]))
    np.testing.assert_allclose(boxes, [[9, 18, 13, 24]])
    kps = _scrfd.distance2kps(np.array([[10.0, 20.0]]), np.arange(10, dtype=float)[None])
    np.testing.assert_allclose(kps[0, 1], [12, 23])


def test_scrfd_decode_one_face_through_the_letterbox():
    in_hw = (64, 64)
    outs = []
    for stride in (8, 16, 32):
        n = (64 // stride) ** 2 * 2
        outs.append(np.zeros((n, 1), np.float32))
    boxes = [np.zeros(((64 // s) ** 2 * 2, 4), np.float32) for s in (8, 16, 32)]
    kps = [np.zeros(((64 // s) ** 2 * 2, 10), np.float32) for s in (8, 16, 32)]
    # stride 16, cell (x=1, y=2), anchor 1 → centre (16, 32); distances 1 stride each way
    idx = (2 * 4 + 1) * 2 + 1
    outs[1][idx] = 0.9
    outs[1][idx - 1] = 0.8  # the same cell's other anchor: a duplicate that NMS removes
    boxes[1][idx] = boxes[1][idx - 1] = [1, 1, 1, 1]
    kps[1][idx] = [0.5, 0] * 5
    b, s, k = _scrfd.decode(outs + boxes + kps, in_hw, 0.5, 0.4, scale=(0.5, 0.5))
    assert s.tolist() == pytest.approx([0.9])
    np.testing.assert_allclose(b[0], [0, 32, 64, 96])  # (16±16, 32±16) / 0.5
    np.testing.assert_allclose(k[0, 0], [48, 64])
    with pytest.raises(ValueError):
        _scrfd.layout(7)


def test_scrfd_letterbox_is_top_left_and_exact():
    sx, sy, nw, nh = _scrfd.letterbox(480, 640, 640, 640)
    assert (nw, nh) == (640, 480) and sx == sy == 1.0
    sx, sy, nw, nh = _scrfd.letterbox(886, 1280, 640, 640)
    assert nw == 640 and nh == 443 and sx == pytest.approx(0.5) and sy == pytest.approx(443 / 886)
