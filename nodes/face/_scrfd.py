"""SCRFD (insightface) decoding: letterbox, anchor centres, distance → box / keypoints, NMS (pure numpy).

Follows insightface's ``model_zoo/scrfd.py``: the frame is resized to fit the
input keeping its aspect ratio and placed at the top-left corner of a zero
canvas; the net predicts, per anchor centre of strides 8/16/32 (2 anchors per
cell), a score, the distances (left, top, right, bottom) to the box edges and 5
keypoint offsets, all in units of the stride. Models with 5 strides (64, 128
too) have one anchor per cell. Outputs come grouped: all scores, then all
boxes, then all keypoints, each in stride order.
"""

from __future__ import annotations

import numpy as np

from ._nms import nms


def layout(num_outputs: int) -> tuple[tuple[int, ...], int, bool]:
    """(strides, anchors per cell, has keypoints) for an SCRFD model with this many outputs."""
    if num_outputs in (6, 9):
        return (8, 16, 32), 2, num_outputs == 9
    if num_outputs in (10, 15):
        return (8, 16, 32, 64, 128), 1, num_outputs == 15
    raise ValueError(f"an SCRFD model has 6, 9, 10 or 15 outputs, this one has {num_outputs}")


def letterbox(height: int, width: int, in_h: int, in_w: int) -> tuple[float, float, int, int]:
    """(scale_x, scale_y, new_w, new_h): the frame resized to new_w×new_h fits in_w×in_h keeping its
    aspect, top-left aligned; per-axis scales because the sizes are rounded to whole pixels."""
    scale = min(in_h / height, in_w / width)
    new_h = max(1, min(in_h, round(height * scale)))
    new_w = max(1, min(in_w, round(width * scale)))
    return new_w / width, new_h / height, new_w, new_h


def anchor_centers(height: int, width: int, stride: int, num_anchors: int) -> np.ndarray:
    """Anchor centres [height*width*num_anchors, 2] in input pixels, row-major, anchors innermost."""
    ys, xs = np.mgrid[:height, :width]
    centres = np.stack([xs, ys], -1).reshape(-1, 2).astype(np.float32) * stride
    return np.repeat(centres, num_anchors, axis=0) if num_anchors > 1 else centres


def distance2bbox(points: np.ndarray, distance: np.ndarray) -> np.ndarray:
    """Centres [N,2] and distances [N,4] (left, top, right, bottom) → boxes [N,4] x1, y1, x2, y2."""
    return np.concatenate([points - distance[:, 0:2], points + distance[:, 2:4]], axis=1)


def distance2kps(points: np.ndarray, distance: np.ndarray) -> np.ndarray:
    """Centres [N,2] and offsets [N,2K] → keypoints [N,K,2]."""
    return points[:, None, :] + distance.reshape(len(distance), -1, 2)


def decode(
    outputs: list[np.ndarray],
    input_hw: tuple[int, int],
    min_score: float,
    nms_iou: float,
    scale: tuple[float, float] = (1.0, 1.0),
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """SCRFD outputs → (boxes [M,4], scores [M], kps [M,5,2]) in frame pixels (divided by the letterbox
    ``scale`` x, y), after NMS, best first. Faces without keypoints get their box centre for all five."""
    strides, num_anchors, with_kps = layout(len(outputs))
    fmc = len(strides)
    all_boxes, all_scores, all_kps = [], [], []
    for i, stride in enumerate(strides):
        scores = np.asarray(outputs[i], np.float32).reshape(-1)
        keep = np.nonzero(scores >= min_score)[0]
        if keep.size == 0:
            continue
        centres = anchor_centers(input_hw[0] // stride, input_hw[1] // stride, stride, num_anchors)[keep]
        dist = np.asarray(outputs[i + fmc], np.float32).reshape(-1, 4)[keep] * stride
        boxes = distance2bbox(centres, dist)
        if with_kps:
            kps = distance2kps(centres, np.asarray(outputs[i + 2 * fmc], np.float32).reshape(-1, 10)[keep] * stride)
        else:
            mid = (boxes[:, 0:2] + boxes[:, 2:4]) / 2
            kps = np.repeat(mid[:, None, :], 5, axis=1)
        all_boxes.append(boxes)
        all_scores.append(scores[keep])
        all_kps.append(kps)
    if not all_boxes:
        return np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros((0, 5, 2), np.float32)
    sxy = np.asarray(scale, np.float32)
    boxes = np.concatenate(all_boxes) / np.tile(sxy, 2)
    scores = np.concatenate(all_scores)
    kps = np.concatenate(all_kps) / sxy
    keep = nms(boxes, scores, nms_iou)
    return boxes[keep].astype(np.float32), scores[keep].astype(np.float32), kps[keep].astype(np.float32)
