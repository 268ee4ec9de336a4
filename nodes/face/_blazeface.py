"""BlazeFace (MediaPipe face detection) maths: SSD anchors, letterbox, decoding, keypoints (pure numpy).

The constants are those of MediaPipe's own graphs
(``face_detection_short_range.pbtxt`` / ``face_detection_full_range.pbtxt``):
SsdAnchorsCalculator and TensorsToDetectionsCalculator options, so the bundled
``.tflite`` files decode exactly as MediaPipe decodes them.

BlazeFace gives 6 keypoints: right eye, left eye (the subject's; in an unmirrored
image the subject's right eye is on the viewer's left), nose tip, mouth centre,
right ear tragion, left ear tragion. ArcFace order wants 5: left eye, right eye
(viewer's), nose, left and right mouth corner. The mouth corners are not
predicted, so :func:`arcface_kps` places them at the mouth centre ± 0.414 × the
eye-to-eye vector: in insightface's 112×112 ArcFace template the mouth is 0.828
eye distances wide and its corners sit level with each other, parallel to the
eye line; using the eye vector keeps that true under roll.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ._nms import weighted_nms


@dataclass(frozen=True)
class BlazeFaceConfig:
    """One BlazeFace variant: anchors and decoding constants from MediaPipe's graph."""

    input_size: int
    strides: tuple[int, ...]
    interpolated_scale_aspect_ratio: float
    min_score: float
    num_layers: int
    min_scale: float = 0.1484375
    max_scale: float = 0.75
    anchor_offset: float = 0.5
    score_clip: float = 100.0
    nms_iou: float = 0.3
    filename: str = ""


SHORT_RANGE = BlazeFaceConfig(128, (8, 16, 16, 16), 1.0, 0.5, 4, filename="face_detection_short_range.tflite")
FULL_RANGE = BlazeFaceConfig(192, (4,), 0.0, 0.6, 1, filename="face_detection_full_range_sparse.tflite")
CONFIGS = {"short": SHORT_RANGE, "full": FULL_RANGE}

#: ArcFace template: mouth width / eye distance = (70.73 - 41.55) / (73.53 - 38.29)
MOUTH_HALF_WIDTH = 0.414


def _scale(min_scale: float, max_scale: float, index: int, count: int) -> float:
    return min_scale + (max_scale - min_scale) * index / (count - 1) if count > 1 else (min_scale + max_scale) / 2


def anchors(cfg: BlazeFaceConfig) -> np.ndarray:
    """Anchor centres [A,2] in normalised (0..1) input coordinates, MediaPipe's SsdAnchorsCalculator order.

    With ``fixed_anchor_size`` (true for both face models) every anchor is 1×1, so only
    the centres matter; layers that share a stride share a feature map.
    """
    out = []
    layer = 0
    while layer < cfg.num_layers:
        per_cell = 0
        last = layer
        while last < cfg.num_layers and cfg.strides[last] == cfg.strides[layer]:
            per_cell += 1  # aspect ratio 1.0
            if cfg.interpolated_scale_aspect_ratio > 0:
                per_cell += 1
            last += 1
        side = math.ceil(cfg.input_size / cfg.strides[layer])
        ys, xs = np.meshgrid(np.arange(side), np.arange(side), indexing="ij")
        centres = np.stack([(xs + cfg.anchor_offset) / side, (ys + cfg.anchor_offset) / side], -1).reshape(-1, 1, 2)
        out.append(np.repeat(centres, per_cell, axis=1).reshape(-1, 2))
        layer = last
    return np.concatenate(out).astype(np.float32)


def letterbox(height: int, width: int, size: int) -> tuple[float, float, int, int, int, int]:
    """Fit a height×width frame centred in a size×size square, keeping its aspect (MediaPipe's
    keep_aspect_ratio): (scale_x, scale_y, pad_x, pad_y, new_w, new_h) with input = frame × scale + pad.
    Integer sizes and pads, so the resize is exact; the scales are per axis for the same reason."""
    scale = size / max(height, width)
    new_w = max(1, min(size, round(width * scale)))
    new_h = max(1, min(size, round(height * scale)))
    pad_x, pad_y = (size - new_w) // 2, (size - new_h) // 2
    return new_w / width, new_h / height, pad_x, pad_y, new_w, new_h


def decode(
    regressors: np.ndarray,
    logits: np.ndarray,
    anchor_xy: np.ndarray,
    cfg: BlazeFaceConfig,
    min_score: float | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Raw outputs ([A,16], [A] or [A,1]) → (boxes [M,4], scores [M], keypoints [M,6,2]) in normalised
    input coordinates, before NMS. Box layout is (x_centre, y_centre, w, h, 6 × (x, y)) in input pixels
    relative to the anchor (reverse_output_order)."""
    raw = np.asarray(regressors, np.float32).reshape(len(anchor_xy), -1)
    score = np.clip(np.asarray(logits, np.float64).reshape(-1), -cfg.score_clip, cfg.score_clip)
    score = 1.0 / (1.0 + np.exp(-score))
    keep = score >= (cfg.min_score if min_score is None else min_score)
    raw, score, anc = raw[keep], score[keep], anchor_xy[keep]
    s = float(cfg.input_size)
    cx = raw[:, 0] / s + anc[:, 0]
    cy = raw[:, 1] / s + anc[:, 1]
    w = raw[:, 2] / s
    h = raw[:, 3] / s
    boxes = np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], -1)
    kps = raw[:, 4:16].reshape(-1, 6, 2) / s + anc[:, None, :]
    return boxes.astype(np.float32), score.astype(np.float32), kps.astype(np.float32)


def postprocess(
    regressors: np.ndarray,
    logits: np.ndarray,
    anchor_xy: np.ndarray,
    cfg: BlazeFaceConfig,
    frame_hw: tuple[int, int],
    *,
    min_score: float | None = None,
    nms_iou: float | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Decode, weighted-NMS and undo the letterbox: (boxes [M,4] px, scores [M], 6 keypoints [M,6,2] px)."""
    boxes, scores, kps = decode(regressors, logits, anchor_xy, cfg, min_score)
    boxes, scores, kps = weighted_nms(boxes, scores, kps, cfg.nms_iou if nms_iou is None else nms_iou)
    sx, sy, pad_x, pad_y, _, _ = letterbox(frame_hw[0], frame_hw[1], cfg.input_size)
    s = float(cfg.input_size)
    pad = np.array([pad_x, pad_y], np.float32)
    scale = np.array([sx, sy], np.float32)
    boxes = ((boxes.reshape(-1, 2, 2) * s - pad) / scale).reshape(-1, 4)
    kps = (kps * s - pad) / scale
    return boxes.astype(np.float32), scores, kps.astype(np.float32)


def arcface_kps(kps6: np.ndarray) -> np.ndarray:
    """BlazeFace's 6 keypoints [N,6,2] → ArcFace's 5 [N,5,2] (mouth corners estimated, see module doc)."""
    kps6 = np.asarray(kps6, np.float32).reshape(-1, 6, 2)
    eye_a, eye_b, nose, mouth = kps6[:, 0], kps6[:, 1], kps6[:, 2], kps6[:, 3]
    eye_vec = eye_b - eye_a
    out = np.stack(
        [eye_a, eye_b, nose, mouth - MOUTH_HALF_WIDTH * eye_vec, mouth + MOUTH_HALF_WIDTH * eye_vec], axis=1
    )
    return out.astype(np.float32)
