"""Exports of the landmark/pose and AU nets: ``<name>.onnx`` (checked against torch) + ``<name>.json``, ``.mlpackage``.

A person-normalised AU net is two files, because the person's reference is the running mean
of the backbone's features, the current frame's included: ``au_net.onnx`` (image → features)
and ``au_head.onnx`` ((features, reference) → AU intensities); the caller keeps the reference
between them (:mod:`facegraph.nodes.models.person_reference`).

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
from ..nets.facepose import AUFeatures, AUHead
from .exporting import export_coreml, onnx_parity
from .facepose import MEAN, STD, AUTask, LandmarkPoseTask, au_scores, landmark_scores, to_input
from .h5data import SIZE
from .teacher import ZOOM, crop_template

PARITY = 1e-4
NAMES = {"landmark-pose": "landmark_pose", "au-net": "au_net"}
OUTPUTS = {"landmark-pose": ["landmarks", "global_params", "local_params"], "au-net": ["au_intensities"]}
HEAD = "au_head.onnx"


def metadata(task: LandmarkPoseTask | AUTask, *, data: str, command: str, seconds: float,
             best: dict[str, float]) -> dict[str, Any]:
    return {
        "kind": task.kind, "model_config": task.model_config(), "input": "image", "layout": "NCHW", "color": "rgb",
        "input_size": task.image_size, "crop_size": SIZE, "mean": MEAN, "std": STD, "scale": 1 / 255,
        "crop": {"template": crop_template(SIZE).round(4).tolist(), "zoom": ZOOM,
                 "how": "similarity from 5 points (eye centres, nose tip, mouth corners) to the template"},
        "outputs": ["features"] if _person_norm(task) else OUTPUTS[task.kind],
        "units": ("landmarks and global scale/tx/ty in input pixels (× crop_size/input_size for the crop)"
                  if task.kind == "landmark-pose" else "AU intensities 0-5, OpenFace's scale"),
        "au_names": list(task.train.au_names) if task.kind == "au-net" else None,
        "data": {"path": data, "train_videos": task.train.videos(), "val_videos": task.val.videos(),
                 "train_samples": len(task.train), "val_samples": len(task.val)},
        "teacher": "OpenFace 0.2.x FeatureExtraction CSVs (../shared/data/openface_0.2)",
        "licence": "trained to mimic OpenFace: OpenFace's academic, non-commercial licence applies; not in the wheel",
        "command": command, "train_seconds": round(seconds, 1), "best_epoch_torch": best,
        **({"person_norm": {"head": HEAD, "with_frame": task.with_frame, "reference": "mean",
                            "how": "au_net.onnx gives the features; the person's reference is the running mean of "
                                   "their frames' features, this frame's included (reset on a new track); "
                                   f"{HEAD} takes (features, reference) to the AU intensities"}}
           if _person_norm(task) else {}),
    }


def _person_norm(task: LandmarkPoseTask | AUTask) -> bool:
    return bool(getattr(task, "person_norm", False))


def _fhog_input(task: Any) -> bool:
    from ..face._aligned_hog import reads_fhog

    return reads_fhog(task.model_config())


def coreml_metadata(meta: dict[str, Any]) -> dict[str, Any]:
    """What a CoreML package carries of the export's JSON: how to feed it and what comes out."""
    keys = ("kind", "input_size", "crop_size", "mean", "std", "outputs", "au_names", "inputs")
    return {k: meta[k] for k in keys if k in meta}


def _export_fhog_fer(model: nn.Module, out: Path, task: Any, targets: list[str], meta: dict[str, Any],
                     sample: np.ndarray) -> list[Path]:
    """``au_net.onnx`` (and ``au_net.mlpackage``) with two inputs, (image, fhog) → clipped AUs; held-out scores."""
    import onnxruntime as ort

    from ..face._aligned_hog import FHOG_INPUT
    from ..nets.au_hybrid import ClippedAUs
    from .au_hybrid import fhog_of

    rows = task.val if len(task.val) else task.train
    hog = task.val_hog()[:len(sample)] if len(task.val) else fhog_of(rows.images[:len(sample)],
                                                                      rows.landmarks[:len(sample)])
    meta.update(input=FHOG_INPUT, inputs=["image", "fhog"], licence=FHOG_FER_LICENCE,
                fhog={"dim": int(hog.shape[1]), "landmarks": "the face's 68 iBUG landmarks in the crop's pixels",
                      "how": "FHOG (dlib's 31 channels, 8 px cells: 12×12×31) of the crop re-aligned OpenFace's way: "
                             "a similarity on the rigid points to the PDM-mean template at 112 px "
                             "(facegraph.nodes.face._aligned_hog.aligned_fhog)"},
                held_out_landmarks=task.val_landmarks_from)
    written: list[Path] = []
    if "coreml" in targets:
        example = (sample[:1], np.ascontiguousarray(hog[:1], np.float32))
        written.append(export_coreml(ClippedAUs(model).eval(), example, out / "au_net", ("image", "fhog"),
                                     metadata=coreml_metadata(meta), fp16=False))
        meta["coreml"] = ("au_net.mlpackage (float32): inputs image (1, 3, 112, 112) and fhog (1, 4464), one face "
                          "per call")
    if "onnx" in targets:
        wrapped = ClippedAUs(model).eval()
        args = (torch.from_numpy(sample), torch.from_numpy(np.ascontiguousarray(hog, np.float32)))
        path = export_onnx(wrapped, args, out / "au_net.onnx", ["image", "fhog"], ["au_intensities"])
        meta["onnx_max_abs_diff"] = onnx_parity(path, wrapped, [a.numpy() for a in args], tolerance=PARITY)
        if len(task.val):
            session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
            val_hog = task.val_hog()
            aus = np.concatenate([session.run(None, {"image": to_input(rows.images[i:i + 128]).numpy(),
                                                     "fhog": val_hog[i:i + 128]})[0]
                                  for i in range(0, len(rows), 128)])
            meta["scores"] = au_scores(aus, rows.au_intensities, task.train.au_names)
        meta["exported"] = time.strftime("%Y-%m-%d %H:%M:%S")
        written.append(path)
    path = out / "au_net.json"
    path.write_text(json.dumps(meta, indent=2) + "\n")
    return [*written, path]


FHOG_FER_LICENCE = ("trained to mimic OpenFace (academic, non-commercial licence) on the FER-2013 CNN's features "
                    "(FER-2013: research use only): both apply; not in the wheel")


def _onnx_scores(path: Path, task: LandmarkPoseTask | AUTask) -> dict[str, float]:
    """Held-out scores of the exported file itself (ONNX Runtime, CPU)."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    if _person_norm(task):
        from ..models.person_reference import references_by_group

        head = ort.InferenceSession(str(path.parent / HEAD), providers=["CPUExecutionProvider"])
        feats = np.concatenate([session.run(None, {"image": to_input(task.val.images[i:i + 128],
                                                                     task.image_size).numpy()})[0]
                                for i in range(0, len(task.val), 128)])
        ref = references_by_group(feats, task.val.video_names)
        aus = head.run(None, {"features": feats, "reference": ref})[0]
        return au_scores(aus, task.val.au_intensities, task.train.au_names)
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
    if _fhog_input(task):
        return _export_fhog_fer(model, out, task, targets, meta, sample)
    if "onnx" in targets and _person_norm(task):
        features, head = AUFeatures(model), AUHead(model)
        path = export_onnx(features, (torch.from_numpy(sample),), out / f"{name}.onnx", ["image"], ["features"])
        meta["onnx_max_abs_diff"] = onnx_parity(path, features, [sample], tolerance=PARITY)
        with torch.no_grad():
            f = features(torch.from_numpy(sample)).numpy()
        ref = np.repeat(f.mean(0, keepdims=True), len(f), 0)
        head_path = export_onnx(head, (torch.from_numpy(f), torch.from_numpy(ref)), out / HEAD,
                                ["features", "reference"], OUTPUTS[task.kind])
        meta["onnx_head_max_abs_diff"] = onnx_parity(head_path, head, [f, ref], tolerance=PARITY)
        meta["scores"] = _onnx_scores(path, task) if len(task.val) else {}
        meta["exported"] = time.strftime("%Y-%m-%d %H:%M:%S")
        written += [path, head_path]
    elif "onnx" in targets:
        path = export_onnx(model, (torch.from_numpy(sample),), out / f"{name}.onnx", ["image"], OUTPUTS[task.kind])
        meta["onnx_max_abs_diff"] = onnx_parity(path, model, [sample], tolerance=PARITY)
        meta["scores"] = _onnx_scores(path, task) if len(task.val) else {}
        meta["exported"] = time.strftime("%Y-%m-%d %H:%M:%S")
        written.append(path)
    path = out / f"{name}.json"
    path.write_text(json.dumps(meta, indent=2) + "\n")
    written.append(path)
    if "coreml" in targets:
        module = AUFeatures(model) if _person_norm(task) else model  # the head stays ONNX (CPU, microseconds)
        written.append(export_coreml(module, sample[:1], out / name, metadata=coreml_metadata(meta)))
    return written
