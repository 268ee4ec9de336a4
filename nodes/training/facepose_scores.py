"""The bars' measures, torch-free: landmark NME / MAE / r, head-rotation r in the frame, per-AU r / CCC / MAE."""

from __future__ import annotations

import numpy as np

from ..face._pdm_params import params_to_frame


def pearson(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pearson r per column; NaN where either side is constant."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    a, b = a - a.mean(0), b - b.mean(0)
    den = np.sqrt((a * a).sum(0) * (b * b).sum(0))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 1e-12, (a * b).sum(0) / np.where(den > 0, den, 1.0), np.nan)


def ccc_np(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    cov = ((a - a.mean(0)) * (b - b.mean(0))).mean(0)
    den = a.var(0) + b.var(0) + (a.mean(0) - b.mean(0)) ** 2
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 1e-12, 2 * cov / np.where(den > 0, den, 1.0), np.nan)


def landmark_scores(pred_lm: np.ndarray, true_lm: np.ndarray, pred_gp: np.ndarray, true_gp: np.ndarray,
                    matrices: np.ndarray) -> dict[str, float]:
    """NME (inter-ocular: outer eye corners 36-45), MAE px, landmark r, and head-rotation r in the frame."""
    err = np.linalg.norm(pred_lm - true_lm, axis=-1)  # (N, 68)
    iod = np.linalg.norm(true_lm[:, 36] - true_lm[:, 45], axis=-1)
    r_lm = pearson(pred_lm.reshape(-1, 1), true_lm.reshape(-1, 1))[0]
    frame_pred = np.array([params_to_frame(g, m) for g, m in zip(pred_gp, matrices, strict=True)])
    frame_true = np.array([params_to_frame(g, m) for g, m in zip(true_gp, matrices, strict=True)])
    r_pose = pearson(frame_pred[:, 1:4], frame_true[:, 1:4])
    return {"val_nme": float((err.mean(1) / np.maximum(iod, 1e-6)).mean()),
            "val_mae_px": float(np.abs(pred_lm - true_lm).mean()), "val_point_error_px": float(err.mean()),
            "val_landmark_r": float(r_lm), "val_pose_r": float(np.nanmean(r_pose)),
            "val_pose_r_rx": float(r_pose[0]), "val_pose_r_ry": float(r_pose[1]), "val_pose_r_rz": float(r_pose[2]),
            "val_pose_mae_deg": float(np.degrees(np.abs(frame_pred[:, 1:4] - frame_true[:, 1:4])).mean())}


def au_scores(pred: np.ndarray, true: np.ndarray, names: list[str]) -> dict[str, float]:
    """Mean r / CCC / MAE over AUs (r, CCC: over those that vary in the held-out data), and each AU's."""
    r, c = pearson(pred, true), ccc_np(pred, true)
    mae = np.abs(pred - true).mean(0)
    out = {"val_mean_r": float(np.nanmean(r)) if np.isfinite(r).any() else float("nan"),
           "val_mean_ccc": float(np.nanmean(c)) if np.isfinite(c).any() else float("nan"),
           "val_mae": float(mae.mean()), "val_aus_scored": float(np.isfinite(r).sum())}
    for i, name in enumerate(names):
        out[f"val_r_{name}"] = float(r[i])
        out[f"val_ccc_{name}"] = float(c[i])
        out[f"val_mae_{name}"] = float(mae[i])
    return out



def within_video_r(pred: np.ndarray, true: np.ndarray, groups: np.ndarray, names: list[str]) -> dict[str, float]:
    """Pearson r inside each video, averaged over the videos per AU (where the AU varies), then over AUs.

    How well a face's changes are followed apart from each person's level, which the pooled r
    of :func:`au_scores` over a few held-out people mostly measures.
    """
    import warnings

    groups = np.asarray(groups)
    per_video = np.array([pearson(pred[groups == g], true[groups == g]) for g in dict.fromkeys(groups.tolist())])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # an AU constant in every video: NaN, left out
        per_au = np.nanmean(per_video, 0)
        mean = float(np.nanmean(per_au)) if np.isfinite(per_au).any() else float("nan")
    return {"within_video_mean_r": mean, **{f"within_video_r_{n}": float(v) for n, v in zip(names, per_au,
                                                                                            strict=True)}}
