"""What ``facegraph train expression`` leaves behind, and what reads it back.

``OUT/exported/``: ``expression_transformer.pt`` / ``expression_reconstruction.pt``
(each part on its own, ``nets/reconstruction.py::load_checkpoint``), their ONNX
exports (checked against torch) with a ``.json`` each, and ``subjects.npz``: the
subject embeddings by name (the training subjects, ``mean``, and everyone enrolled
later by ``facegraph train enroll``). The joint model is the trainer's
``checkpoint_best.pt`` / ``checkpoint_final.pt`` one folder up.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from facegraph import ModelError

from ..models._subjects import SUBJECTS_FILE as SUBJECTS
from ..models._subjects import SubjectStore
from .errors import TrainingError

TRANSFORMER_PT, RECONSTRUCTION_PT = "expression_transformer.pt", "expression_reconstruction.pt"
TRANSFORMER_ONNX, RECONSTRUCTION_ONNX = "expression_transformer.onnx", "expression_reconstruction.onnx"


# -- export ---------------------------------------------------------------------------------------------------
def export_parts(model: Any, out: Path, task: Any, *, command: str, seconds: float, best: dict[str, float],
                 onnx: bool = True) -> list[Path]:
    """Each part's checkpoint, ONNX + .json (parity-checked), and ``subjects.npz``, under ``out/exported``."""
    import torch

    from ..nets.reconstruction import export_reconstruction_onnx, export_transformer_onnx, save_checkpoint
    from .exporting import export_onnx_checked

    model = model.cpu().eval()
    folder = out / "exported"
    folder.mkdir(parents=True, exist_ok=True)
    t, r = model.transformer, model.reconstruction
    meta = {"training": {"command": command, "minutes": round(seconds / 60, 1), "best": best,
                         "clips_train": len(task.train), "clips_val": len(task.val)}}
    written = [save_checkpoint(t, folder / TRANSFORMER_PT, meta), save_checkpoint(r, folder / RECONSTRUCTION_PT, meta)]
    with torch.no_grad():
        table = t.subject_table.weight.numpy()
        ids = [int(i) for i in task.train_subject_ids]
        subjects = SubjectStore([], np.zeros((0, table.shape[1]), np.float32))
        refs = task.subject_references() if r.uses_reference else {}
        for i in ids:
            subjects.set(task.train.names[i], table[i], i, refs.get(i))
        subjects.set("mean", task.mean_subject(model)[0].numpy(),
                     reference=task.mean_reference() if r.uses_reference else None)
    written.append(subjects.write(folder / SUBJECTS))
    if onnx:
        rng = np.random.default_rng(0)
        size, d, k = t.config.image_size, t.token_dim, t.config.tokens
        image = rng.normal(size=(3, 3, size, size)).astype(np.float32)
        subj = np.stack([subjects.get("mean")] * 3).astype(np.float32)
        written.append(export_onnx_checked(lambda: export_transformer_onnx(t, folder / TRANSFORMER_ONNX, meta),
                                           t, [image, subj], "the expression transformer")[0])
        with torch.no_grad():
            tokens = t(torch.from_numpy(image), torch.from_numpy(subj)).numpy()
        assert tokens.shape == (3, k, d)
        inputs = [subj, tokens]
        if r.uses_reference:
            inputs.append(np.stack([subjects.reference("mean")] * 3).transpose(0, 3, 1, 2).copy())
        written.append(export_onnx_checked(
            lambda: export_reconstruction_onnx(r, folder / RECONSTRUCTION_ONNX, meta), r, inputs,
            "the reconstruction model")[0])
    return written


def load_parts(model: str | Path) -> tuple[Any, Any, SubjectStore, Path]:
    """(transformer, reconstruction, subjects, folder) of an exported folder or a catalogue name (torch)."""
    from ..nets.reconstruction import load_checkpoint

    folder = resolve_model_folder(model)
    try:
        t, _ = load_checkpoint(folder / TRANSFORMER_PT)
        r, _ = load_checkpoint(folder / RECONSTRUCTION_PT)
    except (OSError, ValueError, RuntimeError) as exc:
        raise TrainingError(f"--model {model}: cannot load its parts ({str(exc).splitlines()[0]})") from None
    try:
        return t, r, SubjectStore.read(folder / SUBJECTS), folder
    except ModelError as exc:
        raise TrainingError(str(exc)) from None


def resolve_model_folder(model: str | Path) -> Path:
    """A run folder (its ``exported/``), an exported folder, or a catalogue name of a shipped model."""
    path = Path(str(model)).expanduser()
    for folder in (path / "exported", path):
        if (folder / TRANSFORMER_PT).is_file():
            return folder
    from ..models._modelparams import shipped_expression_folder

    shipped = shipped_expression_folder(str(model))
    if shipped is not None:
        return shipped
    raise TrainingError(f"--model {model}: no {TRANSFORMER_PT} there (a run folder or its exported/ of "
                        "facegraph train expression, or 'expression' for the shipped one)")


# -- faces of a video ------------------------------------------------------------------------------------------
def track_crops(source: str | Path, size: int, *, crop_size: int = 112, max_frames: int | None = None,
                detector: str = "mediapipe") -> tuple[np.ndarray, list[int]]:
    """RGB uint8 crops [N, size, size, 3] of a video's longest face track (the graph of facegraph data clips)."""
    import cv2
    import facegraph.nodes  # noqa: F401 - registers the node types

    from facegraph import Graph, run

    path = Path(source).expanduser()
    if not path.is_file():
        raise TrainingError(f"--source {path}: no such file")
    g = Graph("track_crops")
    frame = g.add("decode", id="src", source=str(path)).frame
    faces = g.add("detect", id="faces", backend=detector, frame=frame).faces
    g.add("align", id="crops", size=crop_size, frame=frame, faces=faces)
    by_track: dict[int, list[tuple[int, np.ndarray]]] = {}
    for result in run(g, max_frames=max_frames, outputs=["faces.faces", "crops.crops"]):
        f, c = result.get("faces.faces"), result.get("crops.crops")
        if f is None or c is None:
            continue
        tracks = f.get("track_id")
        for i, crop in enumerate(np.asarray(c.images)):
            track = int(tracks[i]) if tracks is not None else i
            by_track.setdefault(track, []).append((result.frame_id, crop))
    if not by_track:
        raise TrainingError(f"--source {path}: no face found")
    rows = max(by_track.values(), key=len)
    interp = cv2.INTER_AREA if crop_size > size else cv2.INTER_LINEAR
    crops = np.stack([cv2.resize(c, (size, size), interpolation=interp)[..., ::-1] for _, c in rows])
    return np.ascontiguousarray(crops), [fid for fid, _ in rows]


def enroll_from_video(model: str | Path, source: str | Path, name: str, *, frames: int = 32, steps: int = 100,
                      subjects_out: str | Path | None = None, threads: int = 0) -> tuple[str, Path, dict[str, Any]]:
    """Enroll the longest track of ``source`` under ``name``; the subjects file gains (or replaces) that row."""
    import os

    import torch

    from .expression import enroll, enrollment_reference, psnr, to_tensor

    torch.set_num_threads(threads or os.cpu_count() or 1)
    if frames < 1:
        raise TrainingError(f"--enroll-frames must be ≥ 1, got {frames}")
    t, r, subjects, folder = load_parts(model)
    crops, _ = track_crops(source, t.config.image_size, max_frames=frames * 3)
    x = to_tensor(crops[:frames])
    vec = enroll(t, r, x, torch.from_numpy(subjects.get("mean")), steps=steps)
    reference = enrollment_reference(x) if r.uses_reference else None
    with torch.no_grad():
        s = vec[None].expand(len(x), -1)
        mean = torch.tensor(t.config.mean).view(1, 3, 1, 1)
        std = torch.tensor(t.config.std).view(1, 3, 1, 1)
        fit = psnr(r(s, t((x - mean) / std, s), None if reference is None else reference[None]), x)
    subjects.set(name, vec.numpy(), reference=None if reference is None else reference.permute(1, 2, 0).numpy())
    path = Path(subjects_out).expanduser() if subjects_out else folder / SUBJECTS
    if not subjects_out and not os.access(folder, os.W_OK):
        raise TrainingError(f"{folder}: not writable; pass --subjects-out FILE.npz")
    subjects.write(path)
    return name, path, {"frames": len(x), "psnr": fit}
