"""``facegraph eval fer|verify|reconstruction|expression-probe|identity-swap``: score a model on held-out data.

    facegraph eval fer --model fer --data fer2013/val --json scores.json --png confusion.png
    facegraph eval verify --model dlib --data identities/   # one folder per person
    facegraph eval reconstruction --model runs/expression --source held_out.mp4 --json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

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
    p.add_argument("--model", required=True, help="dlib, dlib+shape68, an embedding ONNX (path or catalogue name), "
                   "or a run folder of facegraph train face-id (its face_id.onnx)")
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

    for name, what in (("landmark-pose", "the landmark/pose net: NME (inter-ocular), MAE px, landmark r, pose r"),
                       ("au", "the AU net: r, CCC and MAE per AU and their means")):
        p = sub.add_parser(name, help=f"{what}, against the teacher's values in an HDF5 file")
        p.add_argument("--model", required=True, help="the model folder (a run's --output or benchmarks/models/…); "
                       "A,B,…: cross-validation, each model scoring the videos its card holds out, pooled")
        p.add_argument("--data", required=True, help="teacher HDF5 of facegraph data hdf5")
        p.add_argument("--videos", help="comma list of the videos to score (default: the model's held-out videos)")
        p.add_argument("--backend", default="auto", help="auto, coreml, onnx, onnx-gpu, onnx-cpu, torch")
        p.add_argument("--json", metavar="FILE", help="write the scores as JSON")
        if name == "au":
            p.add_argument("--reference", choices=["causal", "all"], default="causal",
                           help="a person-normalised net's reference per video, frames in video order: the mean "
                           "of the frames so far, this one included (causal: what the au.nn node does), or of "
                           "all the video's frames")
            p.add_argument("--floor", choices=["on", "off"], default="on",
                           help="take each video's floor (its 25th percentile per AU) off the net's values, as "
                           "au.nn does after a file and OpenFace's offline offset does (default on; off: the "
                           "per-frame values, as au.nn gives a camera)")
            p.add_argument("--landmarks", default="facegraph/landmark_pose_w05", metavar="MODEL",
                           help="a net that reads FHOG (train au --net fhog+fer): whose 68 landmarks align it, a "
                           "landmark-pose model folder (default: the shipped one, as video_au_nn.yaml) or 'teacher' "
                           "(the file's own: an upper bound)")
        if name == "landmark-pose":
            p.add_argument("--pdm-fit", action="store_true", help="also head rotation from OpenFace's PDM fitted "
                           "to the net's landmarks (needs facegraph models fetch openface-au; slow)")
        p.set_defaults(run_family=eval_facepose, family=name)
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
    if Path(spec).is_dir() and (Path(spec) / "face_id.onnx").is_file():
        spec = str(Path(spec) / "face_id.onnx")  # a run folder of facegraph train face-id
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


def _fhog_landmarks(args: argparse.Namespace, predictor, rows, bgr) -> tuple[Any, str]:
    """The 68 points in crop pixels that align an FHOG-reading AU net's input (None for other nets)."""
    if args.family != "au" or not getattr(predictor, "needs_landmarks", False):
        return None, ""
    if args.landmarks == "teacher":
        return rows.landmarks, "the teacher's landmarks"
    from facegraph import FacegraphError

    from ..models.facepose import load_predictor

    try:
        net = load_predictor(args.landmarks)
    except FacegraphError as exc:
        raise TrainingError(f"--landmarks {args.landmarks}: {exc}") from None
    import numpy as np

    points = np.concatenate([net.predict_batch(bgr[i:i + 256])["landmarks"] for i in range(0, len(bgr), 256)])
    return points, f"landmarks of {args.landmarks}"


def _load_facepose(args: argparse.Namespace, spec: str):
    from facegraph import FacegraphError

    from ..models.facepose import load_au_predictor, load_predictor

    loader = load_predictor if args.family == "landmark-pose" else load_au_predictor
    try:
        return loader(spec, backend=None if args.backend == "auto" else args.backend)
    except FacegraphError as exc:
        raise TrainingError(f"--model {spec}: {exc}") from None


def _facepose_outputs(args: argparse.Namespace, predictor, rows) -> tuple[dict, str, str]:
    """(the net's outputs on ``rows`` as arrays, the person-normalisation note, what aligned its FHOG)."""
    import numpy as np

    bgr = rows.images[..., ::-1]
    points, aligned_by = _fhog_landmarks(args, predictor, rows, bgr)
    out: dict = {}
    for i in range(0, len(rows), 256):
        if points is not None:
            part = predictor.predict_batch(bgr[i:i + 256], landmarks=points[i:i + 256])
        elif getattr(predictor, "person_norm", False):
            part = {"features": predictor.features_batch(bgr[i:i + 256])}
        else:
            part = predictor.predict_batch(bgr[i:i + 256])
        for k, v in part.items():
            if isinstance(v, np.ndarray):
                out.setdefault(k, []).append(v)
    out = {k: np.concatenate(v) for k, v in out.items()}
    reference = ""
    if "features" in out:
        from ..models.person_reference import references_by_group

        ref = references_by_group(out["features"], rows.video_names, args.reference)
        out["au_intensities"] = predictor.predict_features(out["features"], ref)["au_intensities"]
        reference = (", person-normalised: reference the mean of the video's frames "
                     + ("so far (causal, as the au.nn node)" if args.reference == "causal" else "(all of them)"))
    return out, reference, aligned_by


def _scored_rows(args: argparse.Namespace, data) -> tuple[Any, Any, dict, list[str], str, str]:
    """(the last predictor, the rows scored, the nets' outputs on them, the videos, notes).

    One ``--model``: the ``--videos`` given, else those its card holds out. ``--model A,B,…`` (cross-validation):
    each model scores only the videos its card holds out, and their outputs are pooled."""
    import numpy as np

    specs = [m.strip() for m in args.model.split(",") if m.strip()]
    given = [v.strip() for v in (args.videos or "").split(",") if v.strip()]
    if given and len(specs) > 1:
        raise TrainingError("--videos with several --model: each model scores the videos it held out")
    index, outs, videos = [], [], []
    predictor, reference, aligned_by = None, "", ""
    for spec in specs:
        predictor = _load_facepose(args, spec)
        chosen = given or list(predictor.meta.get("data", {}).get("val_videos") or [])
        if not chosen:
            raise TrainingError("--videos: the model names no held-out videos; list the videos to score"
                                if len(specs) == 1 else f"--model {spec}: its card names no held-out videos")
        unknown = [v for v in chosen if v not in data.videos()]
        if unknown:
            raise TrainingError(f"--videos {unknown[0]}: not in {args.data} (videos: {', '.join(data.videos())})")
        twice = set(videos) & set(chosen)
        if twice:
            raise TrainingError(f"--model {spec}: {sorted(twice)[0]} is held out by an earlier model too")
        trained_on = set(predictor.meta.get("data", {}).get("train_videos") or []) & set(chosen)
        if trained_on:
            print(f"note: {', '.join(sorted(trained_on))} were training videos of {spec}", flush=True)
        rows_index = np.flatnonzero(np.isin(data.video_names, chosen))
        if args.family == "au" and getattr(predictor, "person_norm", False):  # each video's frames in order
            rows_index = rows_index[np.lexsort((data.frame_indices[rows_index], data.video_names[rows_index]))]
        out, reference, aligned_by = _facepose_outputs(args, predictor, data.subset(rows_index))
        index.append(rows_index)
        outs.append(out)
        videos += chosen
    pooled = {k: np.concatenate([o[k] for o in outs]) for k in outs[0]}
    return predictor, data.subset(np.concatenate(index)), pooled, videos, reference, aligned_by


def eval_facepose(args: argparse.Namespace) -> int:
    import numpy as np

    from . import h5data
    from .facepose_scores import au_scores, landmark_scores, within_video_r

    predictor, rows, out, videos, reference, aligned_by = _scored_rows(args, h5data.read(args.data))
    if args.family == "landmark-pose":
        scores = landmark_scores(out["landmarks"], rows.landmarks, out["global_params"], rows.global_params,
                                 rows.matrices)
        scores["val_local_l1"] = float(np.abs(out["local_params"] - rows.local_params).mean())
        if args.pdm_fit:
            scores.update(_pose_from_pdm_fit(out["landmarks"], rows))
        print(f"{args.model} ({predictor.backend}) on {len(rows)} faces of {', '.join(videos)}:")
        print(f"  NME (inter-ocular) {scores['val_nme']:.4f}   MAE {scores['val_mae_px']:.3f} px   "
              f"point error {scores['val_point_error_px']:.3f} px   landmark r {scores['val_landmark_r']:.4f}")
        print(f"  pose r {scores['val_pose_r']:.3f} (rx {scores['val_pose_r_rx']:.3f}, "
              f"ry {scores['val_pose_r_ry']:.3f}, rz {scores['val_pose_r_rz']:.3f}), "
              f"rotation MAE {scores['val_pose_mae_deg']:.2f}° (the net's global head)")
        if "fit_pose_r" in scores:
            print(f"  pose r {scores['fit_pose_r']:.3f} (rx {scores['fit_pose_r_rx']:.3f}, "
                  f"ry {scores['fit_pose_r_ry']:.3f}, rz {scores['fit_pose_r_rz']:.3f}), rotation MAE "
                  f"{scores['fit_pose_mae_deg']:.2f}° (OpenFace's PDM fitted to the net's landmarks)")
    else:
        names = predictor.get_au_names()
        if args.floor == "on":
            from ..models.au_floor import FLOOR_QUANTILE, subtract_floors

            out["au_intensities"] = subtract_floors(out["au_intensities"], rows.video_names)
            reference += f", each video's floor (its {FLOOR_QUANTILE * 100:.0f}th percentile) off"
        scores = au_scores(out["au_intensities"], rows.au_intensities, names)
        scores.update(within_video_r(out["au_intensities"], rows.au_intensities, rows.video_names, names))
        if aligned_by:
            reference = f", FHOG aligned by {aligned_by}" + reference
            scores["fhog_landmarks"] = args.landmarks
        print(f"{args.model} ({predictor.backend}) on {len(rows)} faces of {', '.join(videos)}{reference}:")
        print(f"  mean r {scores['val_mean_r']:.3f} over {int(scores['val_aus_scored'])} AUs (r defined), "
              f"mean CCC {scores['val_mean_ccc']:.3f}, MAE {scores['val_mae']:.3f}; within each video: mean r "
              f"{scores['within_video_mean_r']:.3f}")
        for name in names:
            sd = rows.au_intensities[:, names.index(name)].std()
            print(f"  {name}  r {scores[f'val_r_{name}']:6.3f}  CCC {scores[f'val_ccc_{name}']:6.3f}  "
                  f"MAE {scores[f'val_mae_{name}']:.3f}  teacher sd {sd:.2f}  within-video r "
                  f"{scores[f'within_video_r_{name}']:6.3f}")
    if args.json:
        extra = {"reference": args.reference} if "features" in out else {}
        if args.family == "au":
            extra["floor"] = args.floor
        Path(args.json).write_text(json.dumps({"model": str(args.model), "backend": predictor.backend, **extra,
                                               "videos": videos, "faces": len(rows), "scores": scores},
                                              indent=2) + "\n")
    return 0


def _pose_from_pdm_fit(landmarks, rows) -> dict:
    """Head rotation the way OpenFace gets it: its PDM fitted to the (predicted) landmarks; {} without the PDM."""
    import numpy as np

    from ..face._openface_au import Pdm
    from ..face._pdm_params import params_to_frame
    from ..face.au import openface_folder
    from .facepose_scores import pearson

    folder = openface_folder("")
    if folder is None or not (folder / "In-the-wild_aligned_PDM_68.txt").is_file():
        return {}
    pdm = Pdm.load(folder / "In-the-wild_aligned_PDM_68.txt")
    got = np.array([params_to_frame(pdm.fit(p.astype(np.float64)).params_global, m)[1:4]
                    for p, m in zip(landmarks, rows.matrices, strict=True)])
    want = np.array([params_to_frame(g, m)[1:4] for g, m in zip(rows.global_params, rows.matrices, strict=True)])
    r = pearson(got, want)
    return {"fit_pose_r": float(np.nanmean(r)), "fit_pose_r_rx": float(r[0]), "fit_pose_r_ry": float(r[1]),
            "fit_pose_r_rz": float(r[2]), "fit_pose_mae_deg": float(np.degrees(np.abs(got - want)).mean())}
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
