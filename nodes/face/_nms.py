"""Box overlap and non-maximum suppression, shared by every detector decoder (pure numpy).

Two flavours: hard NMS (insightface's SCRFD keeps the best box of a cluster) and
weighted NMS (MediaPipe's BlazeFace averages a cluster's boxes and keypoints,
weighted by score, which steadies the box from frame to frame).
"""

from __future__ import annotations

import numpy as np


def iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Intersection over union of every box in ``a`` [N,4] with every box in ``b`` [M,4] (x1, y1, x2, y2)."""
    a = np.asarray(a, dtype=np.float64).reshape(-1, 4)
    b = np.asarray(b, dtype=np.float64).reshape(-1, 4)
    if len(a) == 0 or len(b) == 0:
        return np.zeros((len(a), len(b)))
    x1 = np.maximum(a[:, None, 0], b[None, :, 0])
    y1 = np.maximum(a[:, None, 1], b[None, :, 1])
    x2 = np.minimum(a[:, None, 2], b[None, :, 2])
    y2 = np.minimum(a[:, None, 3], b[None, :, 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    area_a = np.clip(a[:, 2] - a[:, 0], 0, None) * np.clip(a[:, 3] - a[:, 1], 0, None)
    area_b = np.clip(b[:, 2] - b[:, 0], 0, None) * np.clip(b[:, 3] - b[:, 1], 0, None)
    union = area_a[:, None] + area_b[None, :] - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-12), 0.0)


def nms(boxes: np.ndarray, scores: np.ndarray, iou_threshold: float) -> np.ndarray:
    """Indices of the boxes kept by greedy hard NMS, best score first."""
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    order = np.argsort(-np.asarray(scores, dtype=np.float64), kind="stable")
    keep: list[int] = []
    while order.size:
        best = order[0]
        keep.append(int(best))
        if order.size == 1:
            break
        overlap = iou_matrix(boxes[best : best + 1], boxes[order[1:]])[0]
        order = order[1:][overlap <= iou_threshold]
    return np.asarray(keep, dtype=np.int64)


def weighted_nms(
    boxes: np.ndarray, scores: np.ndarray, points: np.ndarray, iou_threshold: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """MediaPipe's weighted NMS: each cluster (IoU > threshold with its best box) becomes one detection
    whose box and keypoints are the score-weighted mean of the cluster and whose score is the best one.

    ``points`` is [N,K,2]. Returns (boxes [M,4], scores [M], points [M,K,2]), best first.
    """
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    points = np.asarray(points, dtype=np.float64)
    points = points.reshape(len(boxes), points.shape[-2] if points.ndim == 3 else 0, 2)
    order = np.argsort(-scores, kind="stable")
    out_boxes, out_scores, out_points = [], [], []
    while order.size:
        best = order[0]
        overlap = iou_matrix(boxes[best : best + 1], boxes[order])[0]
        member = overlap > iou_threshold
        member[0] = True
        group = order[member]
        weights = scores[group][:, None]
        total = float(weights.sum())
        out_boxes.append((boxes[group] * weights).sum(0) / total)
        out_points.append((points[group] * weights[:, :, None]).sum(0) / total)
        out_scores.append(scores[best])
        order = order[~member]
    k = points.shape[1]
    if not out_boxes:
        return np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros((0, k, 2), np.float32)
    return (
        np.asarray(out_boxes, np.float32),
        np.asarray(out_scores, np.float32),
        np.asarray(out_points, np.float32),
    )
