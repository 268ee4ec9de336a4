"""Exports of the landmark/pose and AU nets: ``<name>.onnx`` (checked against torch) + ``<name>.json``, ``.mlpackage``.

The metadata says how to feed the file (RGB, size, normalisation, the crop template) and
what it scored on the held-out videos as exported, so the predictor and a card need nothing else.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ..nets._export import export as export_onnx
from .exporting import export_coreml, onnx_parity
from .facepose import MEAN, STD, AUTask, LandmarkPoseTask, au_scores, landmark_scores, to_input
from .h5data import SIZE
from .teacher import ZOOM, crop_template

PARITY = 1e-4
NAMES = {"landmark-pose": "landmark_pose", "au-net": "au_net"}
OUTPUTS = {"landmark-pose": ["landmarks", "global_params", "local_params"], "au-net": ["au_intensities"]}


def metadata(task: LandmarkPoseTask | AUTask, *, data: str, command: str, seconds: float,
             best: dict[str, float]) -> dict[str, Any]:
    return {
        "kind": task.kind, "model_config": task.model_config(), "input": "image", "layout": "NCHW", "color": "rgb",
        "input_size": task.image_size, "crop_size": SIZE, "mean": MEAN, "std": STD, "scale": 1 / 255,
        "crop": {"template": crop_template(SIZE).round(4).tolist(), "zoom": ZOOM,
                 "how": "similarity from 5 points (eye centres, nose tip, mouth corners) to the template"},
        "outputs": OUTPUTS[task.kind],
        "units": ("landmarks and global scale/tx/ty in input pixels (× crop_size/input_size for the crop)"
                  if task.kind == "landmark-pose" else "AU intensities 0-5, OpenFace's scale"),
        "au_names": list(task.train.au_names) if task.kind == "au-net" else None,
        "data": {"path": data, "train_videos": task.train.videos(), "val_videos": task.val.videos(),
                 "train_samples": len(task.train), "val_samples": len(task.val)},
        "teacher": "OpenFace 0.2.x FeatureExtraction CSVs (../shared/data/openface_0.2)",
        "licence": "trained to mimic OpenFace: OpenFace's academic, non-commercial licence applies; not in the wheel",
        "command": command, "train_seconds": round(seconds, 1), "best_epoch_torch": best,
    }


def _onnx_scores(path: Path, task: LandmarkPoseTask | AUTask) -> dict[str, float]:
    """Held-out scores of the exported file itself (ONNX Runtime, CPU)."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    outs: list[list[np.ndarray]] = []
    for i in range(0, len(task.val), 128):
        outs.append(session.run(None, {"image": to_input(task.val.images[i:i + 128], task.image_size).numpy()}))
    parts = [np.concatenate([o[j] for o in outs]) for j in range(len(outs[0]))]
    if task.kind == "au-net":
        return au_scores(parts[0], task.val.au_intensities, task.train.au_names)
    k = SIZE / task.image_size
    gp = parts[1].copy()
    gp[:, [0, 4, 5]] *= k
    scores = landmark_scores(parts[0] * k, task.val.landmarks, gp, task.val.global_params, task.val.matrices)
    scores["val_local_l1"] = float(np.abs(parts[2] - task.val.local_params).mean())
    return scores


def export_all(model: nn.Module, out: Path, task: LandmarkPoseTask | AUTask, targets: list[str], *, data: str,
               command: str, seconds: float, best: dict[str, float], weights: str = "checkpoint_best.pt") -> list[Path]:
    model = model.cpu().eval()
    name = NAMES[task.kind]
    meta = metadata(task, data=data, command=command, seconds=seconds, best=best)
    meta["weights"] = weights
    sample = to_input(task.val.images[:8] if len(task.val) else task.train.images[:8], task.image_size).numpy()
    written = []
    if "onnx" in targets:
        path = export_onnx(model, (torch.from_numpy(sample),), out / f"{name}.onnx", ["image"], OUTPUTS[task.kind])
        meta["onnx_max_abs_diff"] = onnx_parity(path, model, [sample], tolerance=PARITY)
        meta["scores"] = _onnx_scores(path, task) if len(task.val) else {}
        meta["exported"] = time.strftime("%Y-%m-%d %H:%M:%S")
        written.append(path)
    path = out / f"{name}.json"
    path.write_text(json.dumps(meta, indent=2) + "\n")
    written.append(path)
    if "coreml" in targets:
        coreml_meta = {k: meta[k] for k in ("kind", "input_size", "crop_size", "mean", "std", "outputs", "au_names")}
        written.append(export_coreml(model, sample[:1], out / name, metadata=coreml_meta))
    return written
