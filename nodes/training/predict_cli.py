"""``facegraph predict IMAGE…``: detect, align and classify every face; sorted probabilities per face.

It runs the same nodes as ``graphs/fer_video.yaml`` (decode → detect → align →
expression) on each image as its own stream, so what it prints is what the graph
would draw.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from .errors import TrainingError

HELP = "classify the faces in images (emotion by default): a table or --json"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("images", nargs="+", metavar="IMAGE")
    parser.add_argument("--model", default="fer", help="classifier: ONNX path or catalogue name (default fer)")
    parser.add_argument("--min-score", type=float, default=0.5, help="face detector threshold")
    parser.add_argument("--json", nargs="?", const="-", metavar="FILE", help="JSON to FILE (or stdout)")


def predict_image(path: Path, model: str, min_score: float) -> list[dict[str, Any]]:
    """One row per face: box, detector score and every class with its probability, most likely first."""
    import facegraph.nodes

    import facegraph

    g = facegraph.Graph("predict")
    src = g.add("decode", id="image", source=str(path))
    faces = g.add("detect", id="faces", frame=src.frame, min_score=min_score)
    crops = g.add("align", id="crops", frame=src.frame, faces=faces.faces, size=112)
    g.add("expression", id="emotion", crops=crops.crops, model=model)
    rows: list[dict[str, Any]] = []
    for result in facegraph.run(g, executor="inline", outputs=["faces.faces", "emotion.probs"]):
        f, p = result["faces.faces"], result["emotion.probs"]
        for i in range(len(p.p)):
            order = sorted(range(len(p.labels)), key=lambda k: -float(p.p[i][k]))
            rows.append({"image": str(path), "face": i, "box": [round(float(v), 1) for v in f.boxes[i]],
                         "score": round(float(f.scores[i]), 3),
                         "probs": {p.labels[k]: round(float(p.p[i][k]), 4) for k in order}})
    return rows


def main(args: argparse.Namespace) -> int:
    from .models import resolve_model

    missing = [p for p in args.images if not Path(p).is_file()]
    if missing:
        raise TrainingError(f"{missing[0]}: no such image file")
    model = str(resolve_model(args.model, "--model"))
    rows: list[dict[str, Any]] = []
    for image in args.images:
        rows += predict_image(Path(image), model, args.min_score)
    if args.json:
        text = json.dumps(rows, indent=2) + "\n"
        if args.json == "-":
            sys.stdout.write(text)
        else:
            Path(args.json).write_text(text)
            print(f"wrote {args.json} ({len(rows)} faces)")
        return 0
    if not rows:
        print("no faces found")
        return 0
    width = max(len(Path(r["image"]).name) for r in rows)
    print(f"{'IMAGE':<{width}}  FACE  BOX                      PROBABILITIES")
    for r in rows:
        box = "{:.0f},{:.0f},{:.0f},{:.0f}".format(*r["box"])
        probs = "  ".join(f"{k} {v:.2f}" for k, v in r["probs"].items())
        print(f"{Path(r['image']).name:<{width}}  {r['face']:>4}  {box:<23}  {probs}")
    return 0
