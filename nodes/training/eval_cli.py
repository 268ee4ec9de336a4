"""``facegraph eval fer|verify|reconstruction|expression-probe|identity-swap``: score a model on held-out data.

    facegraph eval fer --model fer --data fer2013/val --json scores.json --png confusion.png
    facegraph eval verify --model dlib --data identities/   # one folder per person
    facegraph eval reconstruction --model runs/expression --source held_out.mp4 --json
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
    p.add_argument("--json", metavar="FILE", help="write the scores as JSON")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(run_family=eval_verify)

    p = sub.add_parser("reconstruction", help="expression models on a video: enroll on the first N frames, "
                       "PSNR/SSIM of the rest against the mean-face baseline")
    p.add_argument("--model", default="expression", help="a run or exported folder of facegraph train expression "
                   "(default: the shipped 'expression')")
    p.add_argument("--source", required=True, help="a video of one person (its longest face track is taken)")
    p.add_argument("--enroll-frames", type=int, default=32, help="frames the subject embedding is fit on")
    p.add_argument("--enroll-steps", type=int, default=100)
    p.add_argument("--max-frames", type=int, help="read at most this many frames of the video")
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--json", nargs="?", const="-", metavar="FILE", help="JSON (psnr, ssim, baseline_psnr, …) to "
                   "FILE, or to stdout without one")
    p.set_defaults(run_family=eval_reconstruction)

    p = sub.add_parser("expression-probe", help="linear probe on expression tokens vs raw pixels, split by subject")
    p.add_argument("--model", default="expression")
    p.add_argument("--data", required=True, help="DIR/<class>/ face images (CK+48)")
    p.add_argument("--group-by", default=r"^(S\d+)", help="regex naming a file's subject (CK+: '^(S\\d+)')")
    p.add_argument("--folds", type=int, default=5)
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--json", metavar="FILE")
    p.set_defaults(run_family=eval_probe)

    p = sub.add_parser("identity-swap", help="a video's expressions on another subject: identity and tokens kept?")
    p.add_argument("--model", default="expression")
    p.add_argument("--source", required=True, help="video of the source person (enrolled on its first frames)")
    p.add_argument("--target", required=True, help="target subject: a name or id of the model's subjects.npz")
    p.add_argument("--target-crops", required=True, help="folder of the target's real aligned crops (.jpg)")
    p.add_argument("--embedder", required=True, help="face embedder: ONNX path or catalogue name, or dlib")
    p.add_argument("--enroll-frames", type=int, default=32)
    p.add_argument("--enroll-steps", type=int, default=100)
    p.add_argument("--max-frames", type=int)
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--json", metavar="FILE")
    p.set_defaults(run_family=eval_swap)


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
    s = verify(embedder, args.data, max_per_class=args.max_per_class, progress=not args.no_progress)
    print(f"{spec} on {s['data']}: {s['people']} people, {s['images']} images, {s['dim']}-D; "
          f"{s['genuine_pairs']} genuine / {s['impostor_pairs']} impostor pairs")
    print(f"ROC AUC {s['roc_auc']:.4f}  TAR@FAR=1e-3 {s['tar_at_far_1e-3']:.4f} (threshold "
          f"{s['threshold_at_far_1e-3']:.3f})  rank-1 {s['rank1']:.4f}")
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


def _dump(report: dict, target: str | None) -> None:
    if target == "-":
        print(json.dumps(report, indent=2))
    elif target:
        Path(target).write_text(json.dumps(report, indent=2) + "\n")
        print(f"wrote {target}")


def eval_reconstruction(args: argparse.Namespace) -> int:
    from .expression_eval import eval_reconstruction as run

    r = run(args.model, args.source, enroll_frames=args.enroll_frames, steps=args.enroll_steps,
            max_frames=args.max_frames, threads=args.threads)
    if args.json != "-":
        print(f"{args.source}: enrolled on {r['enroll_frames']} frames, {r['eval_frames']} frames reconstructed "
              f"at {r['image_size']} px: PSNR {r['psnr']:.2f} dB, SSIM {r['ssim']:.3f}; mean-face baseline "
              f"PSNR {r['baseline_psnr']:.2f} dB, SSIM {r['baseline_ssim']:.3f} ({r['psnr_gain_db']:+.2f} dB)")
    _dump(r, args.json)
    return 0


def eval_probe(args: argparse.Namespace) -> int:
    from .expression_eval import linear_probe

    r = linear_probe(args.model, args.data, group_by=args.group_by, folds=args.folds, threads=args.threads)
    print(f"{r['data']}: {r['images']} images, {r['subjects']} subjects, {r['classes']} classes, {r['folds']}-fold "
          f"by subject: tokens {r['tokens_accuracy']:.4f} ({r['token_features']} features), raw pixels "
          f"{r['pixels_accuracy']:.4f} ({r['pixel_features']} features)")
    _dump(r, args.json)
    return 0


def eval_swap(args: argparse.Namespace) -> int:
    from .expression_eval import identity_swap

    r = identity_swap(args.model, args.source, args.target, args.target_crops, embedder=args.embedder,
                      enroll_frames=args.enroll_frames, steps=args.enroll_steps, max_frames=args.max_frames,
                      threads=args.threads)
    print(f"{r['source']} → {r['target']} ({r['frames']} frames, {r['embedder']}): swapped faces' cosine to the "
          f"target {r['swap_cos_to_target']:.3f}, to the source {r['swap_cos_to_source']:.3f} (closer to the target "
          f"in {r['swap_closer_to_target_fraction']:.0%}); tokens re-extracted: MSE to their own source frame "
          f"{r['token_mse_to_own_frame']:.4f} vs {r['token_mse_to_other_frames']:.4f} to the other frames "
          f"(own frame beaten by {r['own_frame_rank_fraction']:.1%} of them)")
    _dump(r, args.json)
    return 0
