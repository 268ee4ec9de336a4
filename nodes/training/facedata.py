"""The data steps of the embedding + GRU pipeline: crops → embeddings → sequences, as plain functions.

``facegraph data crops|embeddings|sequences`` (``data_cli.py``) are thin wrappers
around these, so tests call them directly. Each step writes files the next one
reads, and each file says where it came from:

* crops: ``DIR/<session>/<frame>_<track>.jpg`` + ``manifest.csv`` (one row per face
  and frame: session, frame, time, track, box, score, crop, label, split, group) +
  ``crops.json`` (crop size and framing: ``arcface`` when aligned on detected
  keypoints, ``full`` when the images already were face crops);
* embeddings: a Parquet frame table (the manifest's columns + ``embedding``, unit
  length), ``feature_stats.npz`` (mean and std of the *training* rows only, the
  backbone and its dimension, the sessions they came from) and ``labels.json``;
* sequences: ``(N, T, E)`` windows per session and track, z-scored with those
  stats, in compressed NPZ (``x``, ``y``, ``labels``, ``mean``, ``std``, …).
"""

from __future__ import annotations

import csv
import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .errors import TrainingError

MANIFEST_COLUMNS = ("session", "frame", "time", "track", "x1", "y1", "x2", "y2", "score", "crop", "label", "split",
                    "group")
#: CK+48 and most sequence sets: ``<sequence>_<frame number>.<ext>`` (CK+: ``S010_004_00000017.png``)
DEFAULT_PATTERN = r"^(?P<session>.+)_(?P<frame>\d+)\.\w+$"


# -- manifests ------------------------------------------------------------------------------------------------
def read_manifest(path: str | Path) -> list[dict[str, str]]:
    path = Path(path).expanduser()
    try:
        with path.open(newline="") as f:
            reader = csv.DictReader(f)
            missing = [c for c in ("session", "frame", "track", "crop", "label") if c not in (reader.fieldnames or [])]
            if missing:
                raise TrainingError(f"{path}: not a crops manifest (no column '{missing[0]}')")
            return list(reader)
    except OSError as exc:
        raise TrainingError(f"{path}: cannot read the manifest ({exc.strerror or exc})") from None


def write_manifest(path: Path, rows: Iterable[dict[str, Any]]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=MANIFEST_COLUMNS, extrasaction="ignore")
        writer.writeheader()
        for row in rows:
            writer.writerow({k: row.get(k, "") for k in MANIFEST_COLUMNS})
    tmp.replace(path)


def _existing_rows(out: Path) -> list[dict[str, str]]:
    manifest = out / "manifest.csv"
    return read_manifest(manifest) if manifest.is_file() else []


def _check_new_sessions(out: Path, existing: list[dict[str, str]], sessions: Iterable[str]) -> None:
    """A session name is a key: adding one that the manifest already holds would mix two recordings."""
    have = {r["session"] for r in existing}
    twice = sorted(have & set(sessions))
    if twice:
        raise TrainingError(f"{out / 'manifest.csv'}: session '{twice[0]}' is already there "
                            "(name each recording once: --session NAME, or another --out)")


def _write_crops_meta(out: Path, size: int, framing: str, source: str) -> None:
    meta_path = out / "crops.json"
    meta = json.loads(meta_path.read_text()) if meta_path.is_file() else {}
    if meta and (meta.get("size") != size or meta.get("framing") != framing):
        raise TrainingError(f"{meta_path}: its crops are {meta.get('size')} px '{meta.get('framing')}', these would "
                            f"be {size} px '{framing}' (use another --out)")
    sources = [*meta.get("sources", []), source]
    meta_path.write_text(json.dumps({"size": size, "framing": framing, "sources": sources}, indent=2) + "\n")


def crops_meta(crops_dir: Path) -> dict[str, Any]:
    path = crops_dir / "crops.json"
    if not path.is_file():
        return {"framing": "arcface", "size": 112}
    return json.loads(path.read_text())


# -- splits ---------------------------------------------------------------------------------------------------
def assign_split(labels: Sequence[str], groups: Sequence[str], *, val_split: float = 0.2, folds: int = 0,
                 fold: int = 0, seed: int = 0) -> list[str]:
    """``train``/``val`` per row: whole groups on one side, stratified by label (``StratifiedGroupKFold``).

    ``folds`` 0: one split holding out about ``val_split`` of the groups; else fold
    ``fold`` of ``folds`` is the validation side (5-fold cross-validation: run 0…4).
    """
    from sklearn.model_selection import StratifiedGroupKFold

    n_groups = len(set(groups))
    if folds:
        k = folds
    elif 0.0 < val_split < 1.0:
        k = max(2, round(1.0 / val_split))
    else:
        raise TrainingError(f"--val-split must be between 0 and 1, got {val_split}")
    if k < 2:
        raise TrainingError(f"--folds must be ≥ 2, got {k}")
    if not 0 <= fold < k:
        raise TrainingError(f"--fold must be in 0…{k - 1}, got {fold}")
    if n_groups < k:
        raise TrainingError(f"only {n_groups} groups, need ≥ {k} to hold some out (--group-by, --val-split)")
    y = np.unique(np.asarray(labels), return_inverse=True)[1]
    splitter = StratifiedGroupKFold(n_splits=k, shuffle=True, random_state=seed)
    _, val = list(splitter.split(np.zeros(len(y)), y, np.asarray(groups)))[fold]
    out = ["train"] * len(y)
    for i in val:
        out[i] = "val"
    return out


def group_of(name: str, pattern: str | None, fallback: str) -> str:
    if not pattern:
        return fallback
    try:
        m = re.search(pattern, name)
    except re.error as exc:
        raise TrainingError(f"--group-by {pattern!r}: not a regular expression ({exc})") from None
    if m is None:
        raise TrainingError(f"--group-by {pattern!r}: does not match file name {name!r}")
    return m.group(1) if m.groups() else m.group(0)


# -- step 1: crops --------------------------------------------------------------------------------------------
@dataclass
class CropsReport:
    rows: int
    sessions: int
    dropped: int
    manifest: Path


def crops_from_images(root: str | Path, out: str | Path, *, size: int = 112, pattern: str = DEFAULT_PATTERN,
                      group_by: str | None = None, session_prefix: str = "", val_split: float = 0.2,
                      folds: int = 0, fold: int = 0, seed: int = 0, classes: Sequence[str] | None = None,
                      detect: bool = False, upscale: int = 4, pad: float = 0.5) -> CropsReport:
    """A labelled folder of face images (``DIR/<class>/``) as crops, grouped into sequences by ``pattern``.

    By default the images are taken as face crops already (framing ``full``: the
    face fills the image), resized to ``size``. With ``detect`` each image goes the
    video's way instead: upscaled ``upscale`` times and padded by ``pad`` of its side
    (a 48-px face that fills its frame is too small, and too tight, for the detector:
    it finds 2 of 40 CK+48 faces as they are, 39 of 40 at ×4 with half a side of
    padding), detected and ArcFace-aligned (framing ``arcface``); an image without a
    face is dropped and counted. ``pattern`` names
    the groups ``session`` and ``frame`` of each file name; ``group_by`` (a regex,
    first group) names who is in it, so the split keeps a person on one side.
    """
    import cv2

    from . import imagefolder

    root, out = Path(root).expanduser(), Path(out).expanduser()
    if not root.is_dir():
        raise TrainingError(f"--images {root}: no such folder")
    try:
        regex = re.compile(pattern)
    except re.error as exc:
        raise TrainingError(f"--pattern {pattern!r}: not a regular expression ({exc})") from None
    if "session" not in regex.groupindex or "frame" not in regex.groupindex:
        raise TrainingError(f"--pattern {pattern!r}: needs the named groups (?P<session>…) and (?P<frame>…)")
    names, items = imagefolder.scan(root)
    if classes:
        unknown = sorted(set(classes) - set(names))
        if unknown:
            raise TrainingError(f"--classes: {root} has no class folder '{unknown[0]}' ({', '.join(names)})")
        items = [(path, label) for path, label in items if names[label] in classes]
    rows: list[dict[str, Any]] = []
    for path, label in items:
        m = regex.search(path.name)
        if m is None:
            raise TrainingError(f"--pattern {pattern!r}: does not match file name {path.name!r} ({path.parent})")
        session = session_prefix + m.group("session")
        rows.append({"session": session, "frame": int(m.group("frame")), "track": 0, "label": names[label],
                     "group": group_of(path.name, group_by, session), "_path": path})
    seen: dict[tuple[str, int], Path] = {}
    for r in rows:
        key = (r["session"], r["frame"])
        if key in seen:
            raise TrainingError(f"--pattern {pattern!r}: {seen[key].name} and {r['_path'].name} are both frame "
                                f"{r['frame']} of session '{r['session']}'")
        seen[key] = r["_path"]
    existing = _existing_rows(out)
    _check_new_sessions(out, existing, {r["session"] for r in rows})
    # the split goes by group, then every row of a session follows its first row (a session is one recording)
    splits = assign_split([r["label"] for r in rows], [r["group"] for r in rows], val_split=val_split, folds=folds,
                          fold=fold, seed=seed)
    for r, s in zip(rows, splits, strict=True):
        r["split"] = s
    out.mkdir(parents=True, exist_ok=True)
    _write_crops_meta(out, size, "arcface" if detect else "full", f"images:{root}")
    rows.sort(key=lambda r: (r["session"], r["frame"]))
    if detect:
        kept = _detect_images(rows, out, size, upscale, pad)
        write_manifest(out / "manifest.csv", [*existing, *kept])
        return CropsReport(rows=len(kept), sessions=len({r["session"] for r in kept}), dropped=len(rows) - len(kept),
                           manifest=out / "manifest.csv")
    for r in rows:
        image = cv2.imread(str(r["_path"]), cv2.IMREAD_COLOR)
        if image is None:
            raise TrainingError(f"{r['_path']}: not a readable image")
        h, w = image.shape[:2]
        crop = cv2.resize(image, (size, size), interpolation=cv2.INTER_CUBIC if size > max(h, w) else cv2.INTER_AREA)
        rel = Path(r["session"]) / f"{r['frame']:06d}_0.jpg"
        (out / rel).parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(out / rel), crop, [cv2.IMWRITE_JPEG_QUALITY, 95])
        r.update(time=f"{r['frame'] / 30.0:.4f}", x1=0, y1=0, x2=w, y2=h, score=1.0, crop=str(rel))
    write_manifest(out / "manifest.csv", [*existing, *rows])
    return CropsReport(rows=len(rows), sessions=len({r["session"] for r in rows}), dropped=0,
                       manifest=out / "manifest.csv")


def _detect_images(rows: list[dict[str, Any]], out: Path, size: int, upscale: int, pad: float
                   ) -> list[dict[str, Any]]:
    """Detect and ArcFace-align the best face of each image (upscaled, padded): the graph a video goes through."""
    import tempfile

    import cv2
    import facegraph.nodes  # noqa: F401 - registers the node types

    from facegraph import Graph, run

    kept = []
    with tempfile.TemporaryDirectory(prefix="facegraph-crops-") as tmp:
        geometry = []
        for i, r in enumerate(rows):
            image = cv2.imread(str(r["_path"]), cv2.IMREAD_COLOR)
            if image is None:
                raise TrainingError(f"{r['_path']}: not a readable image")
            h, w = image.shape[:2]
            big = cv2.resize(image, (w * upscale, h * upscale), interpolation=cv2.INTER_CUBIC)
            border = round(pad * max(h, w) * upscale / 2)
            big = cv2.copyMakeBorder(big, border, border, border, border, cv2.BORDER_REPLICATE)
            cv2.imwrite(str(Path(tmp) / f"{i:07d}.png"), big)
            geometry.append((w, h, border))
        g = Graph("crops")
        frame = g.add("decode", id="src", source=tmp).frame
        faces = g.add("detect", id="faces", max_faces=1, shot_cut=0.0, frame=frame).faces
        g.add("align", id="crops", size=size, frame=frame, faces=faces)
        for i, result in enumerate(run(g, outputs=["faces.faces", "crops.crops"])):
            f, c = result.get("faces.faces"), result.get("crops.crops")
            if f is None or c is None or len(c.images) == 0:
                continue
            r = rows[i]
            w, h, border = geometry[i]
            x1, y1, x2, y2 = ((float(v) - border) / upscale for v in np.asarray(f.boxes)[0][:4])
            rel = Path(r["session"]) / f"{r['frame']:06d}_0.jpg"
            (out / rel).parent.mkdir(parents=True, exist_ok=True)
            cv2.imwrite(str(out / rel), np.asarray(c.images)[0], [cv2.IMWRITE_JPEG_QUALITY, 95])
            r.update(time=f"{r['frame'] / 30.0:.4f}", x1=f"{x1:.1f}", y1=f"{y1:.1f}", x2=f"{x2:.1f}",
                     y2=f"{y2:.1f}", score=f"{float(np.asarray(f.scores)[0]):.4f}", crop=str(rel))
            kept.append(r)
    return kept


def crops_from_video(video: str | Path, out: str | Path, *, session: str, size: int = 112, label: str = "",
                     split: str = "", every: int = 1, max_frames: int | None = None, min_score: float = 0.5,
                     detector: str = "mediapipe") -> CropsReport:
    """Detect, track and ArcFace-align every face of a recording: one JPEG and one manifest row per face and frame.

    ``label`` fills the label column of every row (one expression per recording);
    left empty, the column is there for a person to fill.
    """
    import cv2
    import facegraph.nodes  # noqa: F401 - registers the node types

    from facegraph import Graph, run

    video, out = Path(video).expanduser(), Path(out).expanduser()
    if not video.is_file():
        raise TrainingError(f"--video {video}: no such file")
    if not re.fullmatch(r"[\w.\-]+", session):
        raise TrainingError(f"--session {session!r}: use letters, digits, '.', '-' and '_' only (it names a folder)")
    existing = _existing_rows(out)
    _check_new_sessions(out, existing, [session])
    g = Graph("crops")
    frame = g.add("decode", id="src", source=str(video), every=every).frame
    faces = g.add("detect", id="faces", backend=detector, min_score=min_score, frame=frame).faces
    g.add("align", id="crops", size=size, frame=frame, faces=faces)
    out.mkdir(parents=True, exist_ok=True)
    _write_crops_meta(out, size, "arcface", f"video:{video}")
    (out / session).mkdir(parents=True, exist_ok=True)
    rows: list[dict[str, Any]] = []
    frames = 0
    for result in run(g, max_frames=max_frames, outputs=["src.frame", "faces.faces", "crops.crops"]):
        frames += 1
        f, c, fr = result.get("faces.faces"), result.get("crops.crops"), result.get("src.frame")
        if f is None or c is None:
            continue
        t = float(getattr(fr, "timestamp", 0.0) or 0.0) if fr is not None else 0.0
        tracks = f.get("track_id")
        for i, crop in enumerate(np.asarray(c.images)):
            track = int(tracks[i]) if tracks is not None else i
            rel = Path(session) / f"{result.frame_id:06d}_{track}.jpg"
            cv2.imwrite(str(out / rel), crop, [cv2.IMWRITE_JPEG_QUALITY, 95])
            x1, y1, x2, y2 = (float(v) for v in np.asarray(f.boxes)[i][:4])
            rows.append({"session": session, "frame": result.frame_id, "time": f"{t:.4f}", "track": track,
                         "x1": f"{x1:.1f}", "y1": f"{y1:.1f}", "x2": f"{x2:.1f}", "y2": f"{y2:.1f}",
                         "score": f"{float(np.asarray(f.scores)[i]):.4f}", "crop": str(rel), "label": label,
                         "split": split, "group": session})
    write_manifest(out / "manifest.csv", [*existing, *rows])
    return CropsReport(rows=len(rows), sessions=1, dropped=0, manifest=out / "manifest.csv")


# -- step 2: embeddings ---------------------------------------------------------------------------------------
@dataclass
class EmbeddingsReport:
    rows: int
    skipped: int
    dim: int
    train_rows: int
    labels: list[str]


def _labelled(rows: list[dict[str, str]], manifest: Path, strict: bool) -> tuple[list[dict[str, str]], int]:
    keep = [r for r in rows if r.get("label", "").strip()]
    skipped = len(rows) - len(keep)
    if skipped and strict:
        first = next(r for r in rows if not r.get("label", "").strip())
        raise TrainingError(f"{manifest}: {skipped} of {len(rows)} rows have no label (first: session "
                            f"'{first['session']}', frame {first['frame']}); fill the label column or drop --strict")
    if not keep:
        raise TrainingError(f"{manifest}: no row has a label (fill the 'label' column)")
    return keep, skipped


def train_mask(rows: Sequence[dict[str, Any]], train_sessions: Sequence[str] | None = None) -> np.ndarray:
    """Which rows the feature statistics may see: ``--train-sessions``, else the split column's ``train`` rows."""
    if train_sessions:
        return np.array([r["session"] in set(train_sessions) for r in rows])
    return np.array([r.get("split", "") == "train" for r in rows])


def feature_stats(vectors: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and std over the training rows only: z-scoring must not peek at the validation faces."""
    train = vectors[mask]
    return train.mean(0).astype(np.float32), train.std(0).astype(np.float32)


def embed_crops(crops_dir: str | Path, manifest: str | Path, backbone: str, out: str | Path, *,
                stats_out: str | Path, labels_out: str | Path, batch_size: int = 64, providers: str = "auto",
                strict: bool = False, train_sessions: Sequence[str] | None = None, threads: int = 1,
                progress: bool = True, reuse: str | Path | None = None) -> EmbeddingsReport:
    """Every labelled crop of the manifest through ``backbone``; the frame table, its train stats, the labels.

    ``reuse``: an earlier frame table of the same backbone; crops it holds (by path) take its
    vectors instead of running the backbone again (a new split or new labels of the same crops).
    """
    import cv2
    import pyarrow as pa
    import pyarrow.parquet as pq

    from facegraph import FacegraphError

    from ..models._dlib import open_embedder

    crops_dir, manifest = Path(crops_dir).expanduser(), Path(manifest).expanduser()
    rows, skipped = _labelled(read_manifest(manifest), manifest, strict)
    if train_sessions:
        unknown = sorted(set(train_sessions) - {r["session"] for r in rows})
        if unknown:
            raise TrainingError(f"--train-sessions: session '{unknown[0]}' is not in {manifest}")
    mask = train_mask(rows, train_sessions)
    if not mask.any():
        raise TrainingError(f"{manifest}: no training rows for the feature stats (its split column has no 'train'; "
                            "give --train-sessions a,b)")
    framing = crops_meta(crops_dir).get("framing", "arcface")
    try:
        embedder = open_embedder(backbone, framing=framing, providers=providers, threads=threads)
    except FacegraphError as exc:
        raise TrainingError(f"--backbone {backbone}: {exc}") from None
    from tqdm import tqdm

    known: dict[str, np.ndarray] = {}
    if reuse is not None:
        old, old_meta = read_frames(reuse)
        name = getattr(embedder, "name", str(backbone))
        if old_meta.get("backbone") != name:
            raise TrainingError(f"--reuse {reuse}: made with backbone {old_meta.get('backbone')}, not {name}")
        known = dict(zip(old["crop"], old["embedding"], strict=True))
    todo = [r for r in rows if r["crop"] not in known]
    parts = []
    bar = tqdm(total=len(todo), unit="face", disable=not progress or None, leave=False)
    for start in range(0, len(todo), batch_size):
        batch = todo[start:start + batch_size]
        images = []
        for r in batch:
            image = cv2.imread(str(crops_dir / r["crop"]), cv2.IMREAD_COLOR)
            if image is None:
                raise TrainingError(f"{crops_dir / r['crop']}: crop of {manifest} is missing or unreadable")
            images.append(image)
        parts.append(embedder(np.stack(images)))
        bar.update(len(batch))
    bar.close()
    fresh = dict(zip((r["crop"] for r in todo), np.concatenate(parts) if parts else [], strict=True))
    vectors = np.stack([known[r["crop"]] if r["crop"] in known else fresh[r["crop"]] for r in rows])
    vectors = vectors.astype(np.float32)
    labels = sorted({r["label"] for r in rows})
    ids = {c: i for i, c in enumerate(labels)}
    dim = vectors.shape[1]
    table = pa.table({
        "session": pa.array([r["session"] for r in rows], pa.string()),
        "frame": pa.array([int(r["frame"]) for r in rows], pa.int32()),
        "time": pa.array([float(r.get("time") or 0.0) for r in rows], pa.float64()),
        "track": pa.array([int(r["track"] or 0) for r in rows], pa.int32()),
        "label": pa.array([r["label"] for r in rows], pa.string()),
        "label_id": pa.array([ids[r["label"]] for r in rows], pa.int32()),
        "split": pa.array([r.get("split", "") for r in rows], pa.string()),
        "group": pa.array([r.get("group", "") or r["session"] for r in rows], pa.string()),
        "crop": pa.array([r["crop"] for r in rows], pa.string()),
        "embedding": pa.FixedSizeListArray.from_arrays(pa.array(vectors.reshape(-1), pa.float32()), dim),
    })
    name = getattr(embedder, "name", str(backbone))
    table = table.replace_schema_metadata({"backbone": name, "dim": str(dim), "framing": framing})
    out = Path(out).expanduser()
    out.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, out, compression="zstd")
    mean, std = feature_stats(vectors, mask)
    stats_sessions = sorted({r["session"] for r, m in zip(rows, mask, strict=True) if m})
    np.savez(Path(stats_out).expanduser(), mean=mean, std=std, backbone=np.array(name), dim=np.array(dim),
             sessions=np.array(stats_sessions), n=np.array(int(mask.sum())))
    Path(labels_out).expanduser().write_text(json.dumps({"labels": labels, "ids": ids}, indent=2) + "\n")
    return EmbeddingsReport(rows=len(rows), skipped=skipped, dim=dim, train_rows=int(mask.sum()), labels=labels)


# -- step 3: sequences ----------------------------------------------------------------------------------------
@dataclass
class Stats:
    mean: np.ndarray
    std: np.ndarray
    backbone: str
    sessions: list[str]
    path: Path


def load_stats(path: str | Path) -> Stats:
    path = Path(path).expanduser()
    try:
        with np.load(path) as d:
            return Stats(np.asarray(d["mean"], np.float32), np.asarray(d["std"], np.float32),
                         str(d["backbone"]) if "backbone" in d else "?",
                         [str(s) for s in d["sessions"]] if "sessions" in d else [], path)
    except FileNotFoundError:
        raise TrainingError(f"--stats {path}: no such file") from None
    except (KeyError, OSError, ValueError) as exc:
        raise TrainingError(f"--stats {path}: not a feature_stats.npz with mean and std ({exc})") from None


def read_frames(path: str | Path) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    import pyarrow.parquet as pq

    path = Path(path).expanduser()
    try:
        table = pq.read_table(path)
    except (OSError, ValueError) as exc:
        raise TrainingError(f"--frames {path}: not a readable Parquet frame table ({exc})") from None
    if "embedding" not in table.column_names:
        raise TrainingError(f"--frames {path}: no 'embedding' column (made by facegraph data embeddings?)")
    emb = table.column("embedding").combine_chunks()
    dim = emb.type.list_size if hasattr(emb.type, "list_size") else len(emb[0])
    cols = {c: table.column(c).to_numpy(zero_copy_only=False) for c in table.column_names if c != "embedding"}
    cols["embedding"] = emb.flatten().to_numpy().reshape(-1, dim).astype(np.float32)
    meta = {k.decode(): v.decode() for k, v in (table.schema.metadata or {}).items()}
    return cols, meta


def windows(frames: dict[str, np.ndarray], T: int, stride: int) -> list[np.ndarray]:  # noqa: N803
    """Row indices [T] of every window: consecutive rows of one (session, track), in frame order.

    A window never crosses a track or a session: each (session, track) is cut on its own.
    """
    if T < 1 or stride < 1:
        raise TrainingError(f"--T and --stride must be ≥ 1, got {T} and {stride}")
    order = np.lexsort((frames["frame"], frames["track"], frames["session"]))
    out: list[np.ndarray] = []
    keys = list(zip(frames["session"][order], frames["track"][order], strict=True))
    start = 0
    for i in range(1, len(order) + 1):
        if i == len(order) or keys[i] != keys[start]:
            rows = order[start:i]
            out.extend(rows[s:s + T] for s in range(0, len(rows) - T + 1, stride))
            start = i
    return out


def make_sequences(frames_path: str | Path, stats_path: str | Path, labels_path: str | Path, *, T: int,  # noqa: N803
                   stride: int = 1, use_split_column: bool = False, sessions_train: Sequence[str] | None = None,
                   sessions_val: Sequence[str] | None = None, out_train: str | Path,
                   out_val: str | Path | None = None) -> dict[str, Any]:
    """``(N, T, E)`` z-scored windows for each side; the label of a window is its last frame's."""
    frames_path = Path(frames_path).expanduser()
    frames, meta = read_frames(frames_path)
    stats = load_stats(stats_path)
    dim = frames["embedding"].shape[1]
    if stats.mean.size != dim:
        raise TrainingError(f"--stats {stats.path}: {stats.mean.size}-D stats (backbone {stats.backbone}) but "
                            f"{frames_path} has {dim}-D embeddings (backbone {meta.get('backbone', '?')}); "
                            "use the stats made with these embeddings")
    try:
        labels = list(json.loads(Path(labels_path).expanduser().read_text())["labels"])
    except (OSError, ValueError, KeyError) as exc:
        raise TrainingError(f"--labels {labels_path}: not a labels.json with 'labels' ({exc})") from None
    unknown = sorted(set(frames["label"]) - set(labels))
    if unknown:
        raise TrainingError(f"--labels {labels_path}: label '{unknown[0]}' of {frames_path} is not in it")
    sessions = set(frames["session"])
    if use_split_column == bool(sessions_train):
        raise TrainingError("give either --use-split-column or --sessions-train (with --sessions-val)")
    if use_split_column:
        side = frames["split"]
        bad = sorted({s for s in sessions if len(set(side[frames["session"] == s])) > 1})
        if bad:
            raise TrainingError(f"{frames_path}: session '{bad[0]}' has rows on both sides of its split column")
        val_names = sorted(set(frames["session"][side == "val"]))
    else:
        train_names, val_names = list(sessions_train or []), list(sessions_val or [])
        for flag, names in (("--sessions-train", train_names), ("--sessions-val", val_names)):
            seen: set[str] = set()
            for name in names:
                if name in seen:
                    raise TrainingError(f"{flag}: session '{name}' is named twice")
                seen.add(name)
                if name not in sessions:
                    raise TrainingError(f"{flag}: session '{name}' is not in {frames_path} "
                                        f"(it has {', '.join(sorted(sessions)[:5])}…)")
        both = sorted(set(train_names) & set(val_names))
        if both:
            raise TrainingError(f"session '{both[0]}' is named in both --sessions-train and --sessions-val")
        side = np.where(np.isin(frames["session"], train_names), "train",
                        np.where(np.isin(frames["session"], val_names), "val", ""))
    leaked = sorted(set(stats.sessions) & set(val_names))
    if leaked:
        raise TrainingError(f"--stats {stats.path}: computed on session '{leaked[0]}', a validation session; "
                            "rerun facegraph data embeddings with the training sessions only (--train-sessions)")
    all_windows = windows(frames, T, stride)
    if not all_windows:
        lengths = [int(((frames["session"] == s) & (frames["track"] == t)).sum())
                   for s, t in set(zip(frames["session"], frames["track"], strict=True))]
        raise TrainingError(f"--T {T}: longer than every track of {frames_path} (the longest has {max(lengths)} "
                            "frames); use a smaller --T")
    x_all = frames["embedding"]
    ids = {c: i for i, c in enumerate(labels)}
    report: dict[str, Any] = {"T": T, "E": dim, "labels": labels}
    for name, path in (("train", out_train), ("val", out_val)):
        if path is None:
            continue
        picked = [w for w in all_windows if side[w[-1]] == name]
        if not picked:
            raise TrainingError(f"no {name} window of T={T} in {frames_path} (check the split, --T, --stride)")
        index = np.stack(picked)
        x = ((x_all[index] - stats.mean) / np.maximum(stats.std, 1e-6)).astype(np.float32)
        y = np.array([ids[frames["label"][w[-1]]] for w in picked], np.int64)
        path = Path(path).expanduser()
        path.parent.mkdir(parents=True, exist_ok=True)
        np.savez_compressed(path, x=x, y=y, labels=np.array(labels), mean=stats.mean, std=stats.std, T=np.array(T),
                            stride=np.array(stride), backbone=np.array(meta.get("backbone", stats.backbone)),
                            session=frames["session"][index[:, -1]].astype(str),
                            track=frames["track"][index[:, -1]], frame_end=frames["frame"][index[:, -1]],
                            group=frames["group"][index[:, -1]].astype(str),
                            crop=frames["crop"][index].astype(str))
        report[name] = {"windows": len(picked), "path": str(path),
                        "counts": np.bincount(y, minlength=len(labels)).tolist()}
    return report
