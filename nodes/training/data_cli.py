"""``facegraph data crops|embeddings|sequences|clips``: the data steps before ``facegraph train gru|expression``.

    facegraph data crops --images ckplus48 --group-by '^(S\\d+)' --out data/ck/crops
    facegraph data embeddings --crops data/ck/crops --backbone dlib+shape68 --out data/ck/frame_table.parquet
    facegraph data sequences --frames data/ck/frame_table.parquet --use-split-column --T 3 --out-train …
    facegraph data clips --source 'videos/*.mp4' --val-videos held_out.mp4 --size 112 --out data/clips
"""

from __future__ import annotations

import argparse
from pathlib import Path

from .errors import TrainingError

HELP = "make training data from faces: aligned crops, embeddings, (N, T, E) sequences, teacher HDF5"


def _names(text: str | None) -> list[str]:
    return [s.strip() for s in (text or "").split(",") if s.strip()]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="data_step", metavar="STEP")
    sub.required = True
    p = sub.add_parser("crops", help="aligned face crops + manifest.csv from a video or a labelled image folder")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--video", help="a recording: every face is detected, tracked and ArcFace-aligned")
    src.add_argument("--images", metavar="DIR", help="DIR/<class>/<images>: face images taken as crops as they are")
    p.add_argument("--session", help="--video: the recording's name (a key: each once per manifest)")
    p.add_argument("--classes", help="--images: only these class folders (comma list); "
                   "--video: the label of every row when it is one class")
    p.add_argument("--out", required=True, help="crops folder; manifest.csv is written (or extended) there")
    p.add_argument("--size", type=int, default=112, help="crop side in pixels (default 112)")
    p.add_argument("--pattern", default=None,
                   help="--images: regex with (?P<session>…) and (?P<frame>…) over file names "
                   "(default: '<session>_<frame>.<ext>', CK+'s S010_004_00000017.png)")
    p.add_argument("--group-by", metavar="REGEX", help="--images: who is in a file (CK+: '^(S\\d+)'); the split keeps "
                   "each group on one side (default: the session)")
    p.add_argument("--detect", action="store_true", help="--images: detect and ArcFace-align each face (upscaled "
                   "--upscale times, padded) instead of taking the images as crops")
    p.add_argument("--upscale", type=int, default=4, help="--images --detect: enlarge small images first (default 4)")
    p.add_argument("--val-split", type=float, default=0.2, help="--images: held-out fraction of the groups")
    p.add_argument("--folds", type=int, default=0, help="--images: k-fold split instead (with --fold)")
    p.add_argument("--fold", type=int, default=0, help="--images: which fold is the validation side")
    p.add_argument("--split", default="", help="--video: the split column of every row (train, val, or empty)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--every", type=int, default=1, help="--video: keep one frame in N")
    p.add_argument("--max-frames", type=int, help="--video: stop after this many frames")
    p.set_defaults(run_step=run_crops)

    p = sub.add_parser("embeddings", help="per-frame unit embeddings (Parquet), train-split stats, labels.json")
    p.add_argument("--crops", required=True, help="crops folder of facegraph data crops")
    p.add_argument("--manifest", help="default: CROPS/manifest.csv")
    p.add_argument("--backbone", default="dlib",
                   help="dlib (128-D, the [dlib] extra), dlib+shape68 (+ 68-point shape), or an embedding ONNX by "
                   "path or catalogue name (buffalo_l/w600k_r50)")
    p.add_argument("--out", required=True, help="frame_table.parquet")
    p.add_argument("--stats-out", help="feature_stats.npz (default beside --out)")
    p.add_argument("--labels-out", help="labels.json (default beside --out)")
    p.add_argument("--train-sessions", help="stats from these sessions (default: the manifest's train rows)")
    p.add_argument("--reuse", metavar="TABLE", help="an earlier frame table of this backbone: its crops are not "
                   "embedded again (a new split of the same crops)")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--device", default="auto", help="ONNX backbones: auto, cpu, cuda, tensorrt, coreml")
    p.add_argument("--threads", type=int, default=0, help="ONNX backbones: threads (0: every core)")
    p.add_argument("--strict", action="store_true", help="unlabelled rows are an error (default: skipped, counted)")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(run_step=run_embeddings)

    p = sub.add_parser("sequences", help="(N, T, E) windows per session and track, z-scored with the train stats")
    p.add_argument("--frames", required=True, help="frame_table.parquet of facegraph data embeddings")
    p.add_argument("--stats", help="feature_stats.npz (default beside --frames)")
    p.add_argument("--labels", help="labels.json (default beside --frames)")
    side = p.add_mutually_exclusive_group(required=True)
    side.add_argument("--use-split-column", action="store_true", help="train/val from the manifest's split column")
    side.add_argument("--sessions-train", help="comma list of training sessions (with --sessions-val)")
    p.add_argument("--sessions-val", help="comma list of validation sessions")
    p.add_argument("--T", dest="T", type=int, default=12, help="window length in frames (default 12)")
    p.add_argument("--stride", type=int, default=4, help="frames between window starts (default 4)")
    p.add_argument("--out-train", required=True, help="train.npz")
    p.add_argument("--out-val", help="val.npz")
    p.set_defaults(run_step=run_sequences)

    p = sub.add_parser("hdf5", help="teacher HDF5 for train landmark-pose / train au: crops + a teacher's values")
    p.add_argument("--video", required=True, help="the video the teacher read")
    p.add_argument("--teacher", nargs="+", required=True, metavar="KIND [FILE]",
                   help="openface-csv FILE: an OpenFace CSV of this video (landmarks, p_*, AU*_r)")
    p.add_argument("--out", required=True, help="training_data.h5 (extended when it exists)")
    p.add_argument("--video-name", help="the video's key in the file (default: its file stem); the split is by it")
    p.add_argument("--expected-samples", type=int, default=0, help="rows to allocate up front")
    p.add_argument("--min-confidence", type=float, default=0.5, help="skip frames the teacher read less surely")
    p.add_argument("--every", type=int, default=1, help="keep one frame in N")
    p.add_argument("--max-frames", type=int, help="stop after this many frames")
    p.add_argument("--no-hog", action="store_true", help="leave hog_features zero (faster)")
    p.set_defaults(run_step=run_hdf5)
    p = sub.add_parser("landmark-chunks", help="normalised 68-point landmarks + head pose + identity, in .npz chunks "
                       "(for facegraph train landmark-ae)")
    p.add_argument("--images", required=True, help="aligned face crops, DIR/<identity>/<image>")
    p.add_argument("--out", required=True, help="folder for chunk_00000.npz, …")
    p.add_argument("--chunk-size", type=int, default=1000)
    p.add_argument("--extractor", choices=["mediapipe", "dlib"], default="mediapipe")
    p.add_argument("--threads", type=int, default=1)
    p.set_defaults(run_step=run_landmark_chunks)
    p = sub.add_parser("clips", help="per-track face clips + subjects.json from videos (facegraph train expression)")
    p.add_argument("--source", required=True, help="a video, a folder of videos, or a glob ('videos/*.mp4')")
    p.add_argument("--out", required=True, help="clips folder: crops, manifest.csv, subjects.json, clips.json")
    p.add_argument("--clip-len", type=int, default=16, help="frames per clip (default 16)")
    p.add_argument("--stride", type=int, default=8, help="frames between clip starts (default 8)")
    p.add_argument("--size", type=int, default=224, help="aligned crop side in pixels (default 224)")
    p.add_argument("--keywords", metavar="CSV", help="video, time, keyword rows: clips centred on those times "
                   "instead of every --stride frames")
    p.add_argument("--val-videos", help="comma list of videos (names or stems) held out: their clips are 'val'")
    p.add_argument("--every", type=int, default=1, help="keep one frame in N")
    p.add_argument("--max-frames", type=int, help="per video: stop after this many frames")
    p.add_argument("--detector", default="mediapipe", help="detect backend (default mediapipe)")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(run_step=run_clips)


def main(args: argparse.Namespace) -> int:
    return int(args.run_step(args) or 0)


def run_crops(args: argparse.Namespace) -> int:
    from . import facedata

    if args.images:
        report = facedata.crops_from_images(
            args.images, args.out, size=args.size, pattern=args.pattern or facedata.DEFAULT_PATTERN,
            group_by=args.group_by, session_prefix=f"{args.session}_" if args.session else "",
            val_split=args.val_split, folds=args.folds, fold=args.fold, seed=args.seed,
            classes=_names(args.classes) or None, detect=args.detect, upscale=args.upscale)
        how = (f"detected and ArcFace-aligned; {report.dropped} images without a face dropped" if args.detect
               else "taken as face crops, resized; no detection")
        print(f"{report.manifest}: {report.rows} crops in {report.sessions} sequences from {args.images} ({how})")
        return 0
    if not args.session:
        raise TrainingError("--video needs --session NAME (the recording's name in the manifest)")
    classes = _names(args.classes)
    if len(classes) > 1:
        raise TrainingError("--video --classes takes one label (the recording's expression); fill mixed labels in "
                            "the manifest's label column")
    report = facedata.crops_from_video(args.video, args.out, session=args.session, size=args.size,
                                       label=classes[0] if classes else "", split=args.split, every=args.every,
                                       max_frames=args.max_frames)
    print(f"{report.manifest}: {report.rows} face crops of session '{args.session}' from {args.video}"
          + ("" if classes else "; fill the label column before facegraph data embeddings"))
    return 0


def run_embeddings(args: argparse.Namespace) -> int:
    import os

    from . import facedata

    out = Path(args.out)
    crops = Path(args.crops)
    report = facedata.embed_crops(
        crops, args.manifest or crops / "manifest.csv", args.backbone, out,
        stats_out=args.stats_out or out.parent / "feature_stats.npz",
        labels_out=args.labels_out or out.parent / "labels.json", batch_size=args.batch_size,
        providers=args.device if args.device != "auto" else "auto", strict=args.strict,
        train_sessions=_names(args.train_sessions) or None, threads=args.threads or os.cpu_count() or 1,
        progress=not args.no_progress, reuse=args.reuse)
    skipped = f", {report.skipped} unlabelled rows skipped" if report.skipped else ""
    print(f"{out}: {report.rows} embeddings of {report.dim}-D ({args.backbone}){skipped}; stats from "
          f"{report.train_rows} training rows; {len(report.labels)} labels: {', '.join(report.labels)}")
    return 0


def run_sequences(args: argparse.Namespace) -> int:
    from . import facedata

    frames = Path(args.frames)
    if args.sessions_train and not args.sessions_val and args.out_val:
        raise TrainingError("--out-val needs --sessions-val (or use --use-split-column)")
    report = facedata.make_sequences(
        frames, args.stats or frames.parent / "feature_stats.npz", args.labels or frames.parent / "labels.json",
        T=args.T, stride=args.stride, use_split_column=args.use_split_column,
        sessions_train=_names(args.sessions_train) or None, sessions_val=_names(args.sessions_val) or None,
        out_train=args.out_train, out_val=args.out_val)
    for name in ("train", "val"):
        if name in report:
            r = report[name]
            counts = ", ".join(f"{c} {n}" for c, n in zip(report["labels"], r["counts"], strict=True))
            print(f"{r['path']}: {r['windows']} windows of T={report['T']}, E={report['E']} ({counts})")
    return 0


def run_hdf5(args: argparse.Namespace) -> int:
    from . import h5data, teacher

    kind, *rest = args.teacher
    if kind == "graph":
        raise TrainingError("--teacher graph: run a graph that ends in a sink.hdf5 node (facegraph run "
                            "graphs/…yaml with sink.hdf5), or give --teacher openface-csv FILE")
    if kind != "openface-csv" or len(rest) != 1:
        raise TrainingError(f"--teacher {' '.join(args.teacher)}: expected 'openface-csv FILE'")
    if not Path(args.video).is_file():
        raise TrainingError(f"--video {args.video}: no such file")
    name = args.video_name or Path(args.video).stem
    rows, _ = teacher.read_csv(rest[0])  # a bad CSV stops here, before the output file is touched
    report = teacher.TeacherReport()
    with h5data.H5Writer(args.out, expected=args.expected_samples,
                         attrs={"au_names": list(teacher.of.AU_INTENSITY), "size": h5data.SIZE,
                                "crop": "arcface5 from the teacher's 68 landmarks"}) as writer:
        pending: list[tuple[int, float, dict]] = []

        def flush() -> None:
            if pending:
                batch = {k: [s[k] for _, _, s in pending] for k in pending[0][2]}
                batch["metadata/frame_indices"] = [i for i, _, _ in pending]
                batch["metadata/quality_scores"] = [q for _, q, _ in pending]
                writer.append(batch, [name] * len(pending))
                pending.clear()

        for item in teacher.samples_from_csv(args.video, rest[0], min_confidence=args.min_confidence,
                                             every=args.every, max_frames=args.max_frames, hog=not args.no_hog,
                                             report=report, rows=rows):
            pending.append(item)
            if len(pending) >= h5data.CHUNK:
                flush()
        flush()
        start, total = writer.start, writer.rows
    print(f"{args.out}: {report.samples} samples of '{name}' from {report.frames} frames (rows {start}–{total}); "
          f"skipped {report.failed} the teacher failed on, {report.low_quality} below --min-confidence "
          f"{args.min_confidence}, {report.no_row} without a CSV row")
def run_landmark_chunks(args: argparse.Namespace) -> int:
    import numpy as np

    from ..face._crop_landmarks import crop_pose
    from ..face._heatmaps import as_68
    from ..face._landmark_ae import normalise
    from .faceid_data import landmarks_for, load_identities
    from .landmark_ae import LandmarkRows, write_chunks

    if args.chunk_size < 1:
        raise TrainingError(f"--chunk-size must be ≥ 1, got {args.chunk_size}")
    data = load_identities(args.images, holdout_people=0, probe_fraction=0.5)
    points, valid = landmarks_for(data, args.extractor, cache_dir=None, threads=args.threads)
    pose = crop_pose(points, valid, data.images.shape[1])
    shapes, _, _ = normalise(as_68(points))
    keep = valid & np.isfinite(pose).all(1)
    rows = LandmarkRows(shapes[keep], pose[keep], np.array(data.people)[data.labels[keep]],
                        np.array(data.paths)[keep])
    files = write_chunks(rows, args.out, args.chunk_size)
    print(f"wrote {len(files)} chunks to {args.out}: {int(keep.sum())} faces of {len(np.unique(rows.identity))} "
          f"identities ({int((~keep).sum())} without landmarks or pose left out)")
def run_clips(args: argparse.Namespace) -> int:
    from .clips import make_clips

    r = make_clips(args.source, args.out, clip_len=args.clip_len, stride=args.stride, size=args.size,
                   keywords=args.keywords, val_videos=_names(args.val_videos), every=args.every,
                   max_frames=args.max_frames, detector=args.detector, progress=not args.no_progress)
    print(f"{r.out}: {r.frames} face crops from {r.videos} videos; {r.subjects} subjects (subjects.json); "
          f"{r.clips['train']} train + {r.clips['val']} val clips (clips.json)")
    return 0
