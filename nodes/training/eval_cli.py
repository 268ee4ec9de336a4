"""``facegraph eval fer|verify``: score an exported classifier, or an embedder, on labelled image folders.

    facegraph eval fer --model fer --data fer2013/val --json scores.json --png confusion.png
    facegraph eval verify --model dlib --data identities/   # one folder per person
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from .errors import TrainingError

HELP = ("score a model on labelled data (fer: accuracy, per-class recall, confusion; "
        "verify: an embedder's ROC AUC, TAR at FAR 1e-3, rank-1)")

#: folder names other data sets use for FER-2013's labels
ALIASES = {"anger": "angry", "sadness": "sad", "happiness": "happy", "surprised": "surprise",
           "fearful": "fear", "disgusted": "disgust", "neutrality": "neutral"}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="model_family", metavar="MODEL")
    sub.required = True
    p = sub.add_parser("fer", help="a facial-emotion classifier on DIR/<class>/ (or DIR/val/<class>/)")
    p.add_argument("--model", default="fer", help="ONNX file or catalogue name (default: the shipped 'fer')")
    p.add_argument("--data", required=True, help="labelled face images: DIR/<class>/…, or DIR with val/ or test/")
    p.add_argument("--json", metavar="FILE", help="write the scores as JSON")
    p.add_argument("--png", metavar="FILE", help="write the confusion matrix as a PNG")
    p.set_defaults(run_family=eval_fer)

    p = sub.add_parser("verify", help="an embedder on DIR/<person>/: ROC AUC, TAR at FAR 1e-3, rank-1")
    p.add_argument("--model", required=True, help="dlib, dlib+shape68, or an embedding ONNX (path or catalogue name)")
    p.add_argument("--data", required=True, help="face crops, one folder per person (see --framing)")
    p.add_argument("--framing", choices=["arcface", "full"], default="arcface",
                   help="dlib: how the crops are framed (arcface: aligned 112×112, as glint24)")
    p.add_argument("--max-per-class", type=int, default=0, help="use at most N images per person (0: all)")
    p.add_argument("--people", help="comma list: only these person folders")
    p.add_argument("--unseen-only", action="store_true",
                   help="only the people the model's card lists as never trained on (face-id models)")
    p.add_argument("--yaw", action="store_true",
                   help="yaw-binned figures (0-15, 15-30, 30-45, >45 degrees), yaw from FaceMesh + the pose node")
    p.add_argument("--json", metavar="FILE", help="write the scores as JSON")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(run_family=eval_verify)


def main(args: argparse.Namespace) -> int:
    return int(args.run_family(args) or 0)


def eval_verify(args: argparse.Namespace) -> int:
    import os

    from facegraph import FacegraphError

    from ..models._dlib import open_embedder
    from .verify import verify

    spec = args.model
    try:
        embedder = open_embedder(spec, framing=args.framing, threads=os.cpu_count() or 1)
    except FacegraphError as exc:
        raise TrainingError(f"--model {spec}: {exc}") from None
    people = [p for p in (args.people or "").split(",") if p] or None
    if args.unseen_only:
        meta = getattr(getattr(embedder, "model", None), "metadata", {}) or {}
        people = (meta.get("data") or {}).get("unseen_people")
        if not people:
            raise TrainingError(f"--unseen-only: the metadata of {spec} lists no unseen people")
    s = verify(embedder, args.data, max_per_class=args.max_per_class, progress=not args.no_progress,
               people=people, yaw=args.yaw)
    print(f"{spec} on {s['data']}: {s['people']} people, {s['images']} images, {s['dim']}-D; "
          f"{s['genuine_pairs']} genuine / {s['impostor_pairs']} impostor pairs")
    print(f"ROC AUC {s['roc_auc']:.4f}  TAR@FAR=1e-3 {s['tar_at_far_1e-3']:.4f} (threshold "
          f"{s['threshold_at_far_1e-3']:.3f})  rank-1 {s['rank1']:.4f}")
    for row in s.get("yaw_bins", []):
        figures = "  ".join(f"{k} {row[k]:.4f}" for k in ("roc_auc", "tar_at_far_1e-3", "rank1") if k in row)
        print(f"  |yaw| {row['bin']:>5}°: {row['images']:4d} images, {row['genuine_pairs']} genuine / "
              f"{row['impostor_pairs']} impostor pairs  {figures or '(too few pairs)'}")
    if "yaw_note" in s:
        print(s["yaw_note"])
    if args.json:
        Path(args.json).write_text(json.dumps({"model": spec, **s}, indent=2) + "\n")
        print(f"wrote {args.json}")
    return 0


def eval_fer(args: argparse.Namespace) -> int:
    from . import imagefolder
    from .evaluate import OnnxClassifier, confusion_png, evaluate_loaded, format_report
    from .models import resolve_model

    path = resolve_model(args.model, "--model")
    model = OnnxClassifier(path)
    root = Path(args.data).expanduser()
    if root.is_dir() and not any(imagefolder.has_images(p) for p in root.iterdir() if p.is_dir()):
        root = next((root / n for n in ("val", "test", "valid") if (root / n).is_dir()), root)
    names, _ = imagefolder.scan(root)
    rename = {n: n if n in model.labels else ALIASES.get(n, n) for n in names}
    unknown = [n for n, m in rename.items() if m not in model.labels]
    if unknown:
        raise TrainingError(f"--data {root}: class folder '{unknown[0]}' is none of the model's labels "
                            f"({', '.join(model.labels)})")
    data = imagefolder.load(root, size=model.size, color=model.color)
    data.classes = [rename[c] for c in data.classes]
    report = evaluate_loaded(model, data)
    print(f"{path} on {root}:")
    print(format_report(report))
    if args.json:
        Path(args.json).write_text(json.dumps({"model": str(path), "data": str(root), **report}, indent=2) + "\n")
        print(f"wrote {args.json}")
    if args.png:
        title = f"{path.name} on {root.name}: accuracy {report['accuracy']:.3f}"
        print(f"wrote {confusion_png(report, args.png, title=title)}")
    return 0
