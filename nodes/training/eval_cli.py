"""``facegraph eval fer``: score an exported classifier on a labelled image folder (no torch needed).

    facegraph eval fer --model fer --data fer2013/val --json scores.json --png confusion.png
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from .errors import TrainingError

HELP = "score an exported model on labelled data (fer: accuracy, per-class recall, confusion matrix)"

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


def main(args: argparse.Namespace) -> int:
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
