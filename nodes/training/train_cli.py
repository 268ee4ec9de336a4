"""``facegraph train <model>``: one command per model family, all on the shared trainer.

    facegraph train fer --data fer2013/ --model cnn48 --epochs 30 --out runs/fer
    facegraph train gru --train data/ck/train.npz --val data/ck/val.npz --out runs/gru
    facegraph train expression --clips data/clips --preset cpu64 --out runs/expression
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
from pathlib import Path
from typing import Any

from .errors import TrainingError, require_torch
from .trainer_args import add_trainer_arguments, config_from

HELP = "train a model (fer, gru, …) on the shared trainer; needs the [train] extra"



def design_flag(parser: argparse.ArgumentParser, name: str, **kwargs: Any) -> None:
    """A flag under the design's spelling (``--use_heatmaps``) and the CLI's (``--use-heatmaps``), one dest."""
    parser.add_argument(f"--{name}", f"--{name.replace('_', '-')}", dest=name, **kwargs)

def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="model_family", metavar="MODEL")
    sub.required = True
    p = sub.add_parser("fer", help="facial-emotion classifier from an ImageFolder (FER-2013, CK+, …)")
    p.add_argument("--data", required=True, help="DIR/train/<class>/ + DIR/val/<class>/, or DIR/<class>/")
    p.add_argument("--model", default="cnn48", help="cnn48 (default), resnet18, or timm:<name>")
    p.add_argument("--size", type=int, help="input size (default: the model's, 48 for cnn48)")
    p.add_argument("--color", choices=["gray", "rgb", "bgr"], help="input colour (default: the model's)")
    p.add_argument("--width", type=int, help="channels of the first block (cnn48/resnet18)")
    p.add_argument("--dropout", type=float, default=0.3)
    p.add_argument("--val-split", type=float, default=0.2, help="held-out fraction when DIR has no val/ folder")
    p.add_argument("--group-by", metavar="REGEX", help="file-name pattern naming a person (CK+: '^(S\\d+)')")
    p.add_argument("--val-fold", type=int, default=0,
                   help="with --group-by: which of the 1/--val-split folds to hold out (k-fold cross-validation)")
    p.add_argument("--balance", choices=["none", "weights", "sampler"], default="none",
                   help="skewed classes: class-weighted loss or balanced sampling")
    p.add_argument("--label-smoothing", type=float, default=0.1)
    p.add_argument("--export", default="onnx", help="comma list of onnx, coreml (default onnx; 'none' to skip)")
    add_trainer_arguments(p, out="runs/fer", epochs=30, batch_size=64, lr=1e-3, patience=6, extra_epochs=2)
    p.set_defaults(run_family=train_fer)

    p = sub.add_parser("gru", help="GRU temporal head on (N, T, E) embedding windows of facegraph data sequences")
    p.add_argument("--train", required=True, help="train.npz of facegraph data sequences")
    p.add_argument("--val", required=True, help="val.npz of facegraph data sequences")
    p.add_argument("--hidden", type=int, default=128)
    p.add_argument("--layers", type=int, default=1)
    p.add_argument("--bidirectional", action="store_true")
    p.add_argument("--dropout", type=float, default=0.3)
    p.add_argument("--label-smoothing", type=float, default=0.1)
    p.add_argument("--balance", choices=["none", "weights"], default="none", help="class-weighted loss")
    p.add_argument("--noise", type=float, default=0.1, help="Gaussian noise on the z-scored inputs while training")
    p.add_argument("--export-onnx", action=argparse.BooleanOptionalAction, default=True,
                   help="write OUT/exported/gru_embed.onnx + metadata.json (default on)")
    p.add_argument("--no-baseline", action="store_true", help="skip the logistic-regression baseline")
    p.add_argument("--backbone", help="iresnet18|34|50|100: train on the windows' crops through this backbone "
                   "(with --finetune-last-block, --backbone-checkpoint, --crops)")
    p.add_argument("--backbone-checkpoint", metavar="FILE.pt", help="the backbone's weights (a state dict)")
    p.add_argument("--finetune-last-block", action="store_true",
                   help="with --backbone: its last block (layer4) learns with the head, the rest stays frozen")
    p.add_argument("--crops", metavar="DIR", help="with --backbone: the crops folder the windows came from")
    add_trainer_arguments(p, out="runs/gru", epochs=60, batch_size=32, lr=2e-3, weight_decay=1e-2, patience=12,
                          extra_epochs=3, warmup_epochs=2.0)
    p.set_defaults(run_family=train_gru)

    for name, what in (("landmark-pose", "UnifiedLandmarkPoseNet: 68 landmarks + PDM global/local parameters"),
                       ("au", "AUPredictionNet: 17 AU intensities")):
        p = sub.add_parser(name, help=f"{what}, from a teacher HDF5 (facegraph data hdf5)")
        p.add_argument("--data", required=True, help="teacher HDF5 of facegraph data hdf5")
        p.add_argument("--output", dest="out_dir", help="run folder (same as --out)")
        p.add_argument("--width-mult", type=float, default=1.0, help="backbone width (the design's 1.0)")
        p.add_argument("--image-size", type=int, default=112, help="net input side; crops are resized (default 112)")
        p.add_argument("--val-videos", help="comma list of held-out videos (default: drawn, about --val-split)")
        p.add_argument("--val-split", type=float, default=0.2, help="held-out fraction of rows, in whole videos")
        p.add_argument("--train-fraction", type=float, default=1.0,
                       help="keep this fraction of the training videos (a learning curve: 0.25, 0.5, 1)")
        p.add_argument("--min-quality", type=float, default=0.0, help="drop rows the teacher read less surely")
        p.add_argument("--no-augment", action="store_true")
        p.add_argument("--keep", choices=["best", "final"], default="best",
                       help="which weights to export: the best held-out epoch, or the last (no selection on the "
                       "held-out videos: their scores stay unbiased)")
        p.add_argument("--export", default="onnx,coreml", help="comma list of onnx, coreml ('none' to skip)")
        p.add_argument("--export-only", metavar="CHECKPOINT",
                       help="train nothing: export these weights (e.g. a run's checkpoint_last.pt) with the held-out "
                       "scores of this data split")
        if name == "landmark-pose":
            p.add_argument("--lm-weight", type=float, default=1.0, help="Wing loss on the landmarks")
            p.add_argument("--gp-weight", type=float, default=0.1, help="MSE on the global parameters")
            p.add_argument("--lp-weight", type=float, default=0.01, help="L1 on the local parameters")
            p.add_argument("--dropout", type=float, default=0.1)
            add_trainer_arguments(p, out="runs/landmark_pose", epochs=60, batch_size=32, lr=2e-3, weight_decay=1e-4,
                                  patience=10, extra_epochs=2, monitor="val_nme", mode="min")
        else:
            p.add_argument("--l1-weight", type=float, default=1.0, help="SmoothL1 on the intensities")
            p.add_argument("--ccc-weight", type=float, default=0.5, help="1 − CCC, mean over AUs")
            p.add_argument("--au-weights", help="comma list of 17 per-AU loss weights")
            p.add_argument("--dropout", type=float, default=0.3)
            p.add_argument("--net", choices=["pixels", "fhog+fer"], default="pixels",
                           help="pixels: AUPredictionNet on the crop (the design); fhog+fer: one linear layer on "
                           "FHOG of the face aligned OpenFace's way + the frozen FER-2013 CNN's embedding (it needs "
                           "the face's 68 landmarks at run time; suits few training people)")
            p.add_argument("--fer-model", default="facegraph/fer_cnn", metavar="ONNX",
                           help="with --net fhog+fer: the emotion CNN export whose embedding the net reads")
            p.add_argument("--l2", type=float, default=1.0,
                           help="with --net fhog+fer: ridge penalty on the head's weights (× 1/training rows)")
            p.add_argument("--fer-weight", type=float, default=2.0,
                           help="with --net fhog+fer: the FER features' scale against FHOG's")
            p.add_argument("--landmark-jitter", type=float, default=1.0, metavar="PX",
                           help="with --net fhog+fer: Gaussian noise on the training landmarks FHOG is aligned by")
            p.add_argument("--val-landmarks", default="teacher", metavar="MODEL",
                           help="with --net fhog+fer: held-out FHOG from the teacher's landmarks (default) or from "
                           "a landmark-pose model folder's (what the graph does)")
            p.add_argument("--person-norm", action="store_true",
                           help="the head sees the frame's features minus the mean of its person's (OpenFace's "
                           "dynamic models); batches are --frames-per-video frames of each of several videos")
            p.add_argument("--with-frame", action="store_true",
                           help="with --person-norm: the head also sees the frame's own features")
            p.add_argument("--frames-per-video", type=int, default=8,
                           help="with --person-norm: frames of one video per batch, their mean its reference")
            add_trainer_arguments(p, out="runs/au_net", epochs=60, batch_size=32, lr=2e-3, weight_decay=1e-4,
                                  patience=10, extra_epochs=2, monitor="val_mean_r", mode="max")
        p.set_defaults(run_family=train_facepose, family=name)
    p = sub.add_parser("face-id", help="face identity (ArcFace/CosFace) on RGB + landmark heatmap channels")
    design_flag(p, "data_root", required=True, help="identity folder DIR/<person>/")
    p.add_argument("--backbone", default="resnet50",
                   help="resnet18|34|50 (default resnet50, as designed) or iresnet18|34|50; smaller ones suit a CPU")
    p.add_argument("--width", type=float, default=1.0, help="channel multiplier of the backbone (0.5: ~1/4 compute)")
    design_flag(p, "img_size", type=int, default=112, help="network input side")
    p.add_argument("--embedding", type=int, default=512)
    design_flag(p, "use_heatmaps", action="store_true",
                help="stack 6 grouped landmark heatmaps on the RGB crop")
    design_flag(p, "add_mask_channel", action="store_true",
                help="with --use_heatmaps: one more channel, 1 where the landmarks were found")
    design_flag(p, "group_all_landmarks", action="store_true",
                help="one heatmap per landmark (68 dlib / 468 MediaPipe channels) instead of 6 groups")
    p.add_argument("--sigma", type=float, default=0.0, help="heatmap Gaussian sigma in px (default 2 at 112 px)")
    p.add_argument("--extractor", choices=["mediapipe", "dlib"], default="mediapipe",
                   help="landmarks: MediaPipe FaceMesh (default) or dlib 68 (the [dlib] extra)")
    design_flag(p, "use_cosface", action="store_true",
                help="CosFace margin head instead of ArcFace")
    design_flag(p, "cache_landmarks", action="store_true",
                help="keep the landmarks in --cache-dir (reused by later runs on the same files)")
    design_flag(p, "cache_heatmaps", action="store_true",
                help="keep the heatmap channels in --cache-dir (float16)")
    p.add_argument("--cache-dir", help="where the caches go (default OUT/cache)")
    p.add_argument("--drop-failed", action="store_true",
                   help="drop training images whose landmarks failed (default: keep them, heatmaps and mask 0)")
    p.add_argument("--holdout-people", type=int, default=6, help="people never trained on (verification)")
    p.add_argument("--probe-fraction", type=float, default=0.2, help="images of each person kept out (rank-1)")
    p.add_argument("--margin", type=float, help="the head's margin (default ArcFace 0.5, CosFace 0.4)")
    p.add_argument("--margin-warmup", type=float, default=2.0,
                   help="epochs over which the margin grows from 0 to ArcFace's 0.5 / CosFace's 0.4 (0: full from "
                   "the start; from scratch on a small set a full margin stalls)")
    p.add_argument("--no-augment", action="store_true", help="no joint transforms (flip, similarity, colour)")
    p.add_argument("--no-fp16", action="store_true", help="skip the fp16 copy of the export")
    p.add_argument("--distill", choices=["dlib"],
                   help="knowledge distillation: a projection of the embedding learns dlib's CC0 128-D descriptor "
                   "(the [dlib] extra; teacher vectors of every image and its mirror cached in --cache-dir)")
    p.add_argument("--distill-weight", type=float, default=1.0, help="weight of the distillation loss")
    p.add_argument("--distill-loss", choices=["cosine", "relation", "cosine+relation"], default="cosine",
                   help="student projection vs teacher: 1 − cosine, in-batch similarity matrices, or both")
    p.add_argument("--distill-morphs", type=int, default=0, metavar="N",
                   help="with --distill: N blends of two training people's crops, distilled with the teacher's "
                   "own vectors of each blend (unlabelled; more of the teacher's space than the training people)")
    p.add_argument("--no-morph-mirrors", action="store_true",
                   help="with --distill-morphs: the teacher sees each blend once, not also its mirror; a mirrored "
                   "blend learns the blend's vector (half the teacher's time per blend)")
    p.add_argument("--no-flip-test", action="store_true",
                   help="export one view per face (default: the mean of the face's and its mirror's unit vectors, "
                   "twice the embedder's cost)")
    p.add_argument("--export-output", choices=["embedding", "projection", "auto"], default="embedding",
                   help="with --distill: the vector the export gives: the 512-D embedding (default: in every run "
                   "so far it verified unseen people better), the 128-D projection into the teacher's space, or "
                   "auto: whichever ranks the trained people's probe images better")
    p.add_argument("--no-distill-centre", action="store_true",
                   help="distil the raw teacher descriptors (default: centred on the training images' mean, which "
                   "otherwise dominates dlib's vectors)")
    p.add_argument("--distill-only", action="store_true",
                   help="with --distill: no margin head, the distillation loss alone (selects by val_teacher_cos)")
    add_trainer_arguments(p, out="runs/face_id", epochs=30, batch_size=64, lr=2e-3, weight_decay=5e-4, patience=30,
                          extra_epochs=0, warmup_epochs=1.0, monitor="val_accuracy")
    p.set_defaults(run_family=train_face_id)

    p = sub.add_parser("landmark-ae", help="MLP: posed landmarks + head pose → the identity's canonical landmarks")
    p.add_argument("--chunks", required=True, help="folder of facegraph data landmark-chunks")
    p.add_argument("--hidden", type=int, default=256)
    p.add_argument("--layers", type=int, default=2)
    p.add_argument("--dropout", type=float, default=0.1)
    p.add_argument("--noise", type=float, default=0.0, help="Gaussian noise on the input shapes while training")
    p.add_argument("--holdout-identities", type=int, default=6, help="identities kept out for validation")
    p.add_argument("--spark", action="store_true", help="read the chunks with pyspark (when installed)")
    add_trainer_arguments(p, out="runs/landmark_ae", epochs=200, batch_size=64, lr=1e-3, weight_decay=1e-4,
                          patience=30, extra_epochs=0, warmup_epochs=2.0, monitor="val_error", mode="min")
    p.set_defaults(run_family=train_landmark_ae)
    p = sub.add_parser("expression", help="expression transformer + reconstruction model, jointly, on face clips "
                       "(facegraph data clips)")
    p.add_argument("--clips", required=True, help="clips folder of facegraph data clips (its val clips validate)")
    p.add_argument("--preset", default="design", help="sizes: design (518 px, 384-D; the default), design224, "
                   "cpu112, cpu64; the flags below override single values")
    p.add_argument("--image-size", type=int, help="input (and output) side in pixels")
    p.add_argument("--patch", type=int, help="patch side (DINOv2: 14; conv tokenizer: 8 or 16)")
    p.add_argument("--embed-dim", type=int)
    p.add_argument("--heads", type=int)
    p.add_argument("--layers", type=int, help="expression-transformer layers")
    p.add_argument("--ff", type=int, help="feed-forward width")
    p.add_argument("--tokens", type=int, help="expression tokens per face (--readout queries)")
    p.add_argument("--readout", choices=["queries", "patches"], help="queries: K learned query tokens (the "
                   "presets); patches: one token per patch, each also feeding its own decoder query")
    p.add_argument("--token-dim", type=int, help="width of each output token (default: --embed-dim)")
    p.add_argument("--subjects", type=int, help="rows of the subject-embedding table (design: 501)")
    p.add_argument("--head", choices=["conv", "linear", "conv+ref"], help="reconstruction output: upsampling "
                   "convolutions (default), one linear patch per query (MAE's), or conv+ref: convolutions that also "
                   "read the subject's reference face (its mean crop)")
    p.add_argument("--tokenizer", choices=["conv", "conv+fer", "dinov2"], default="conv",
                   help="conv: a small patch tokenizer trained jointly; conv+fer: that and the frozen FER-2013 "
                   "emotion CNN's patch tokens (--fer-model); dinov2: ViT-S/14 patch tokens (--dinov2)")
    p.add_argument("--fer-model", default="facegraph/fer_cnn", metavar="ONNX",
                   help="conv+fer: the emotion CNN (an ONNX export of facegraph train fer; default the shipped one)")
    p.add_argument("--dinov2", metavar="WEIGHTS.pth", default="",
                   help="DINOv2 ViT-S/14 weights (dinov2_vits14_pretrain.pth; see facegraph models)")
    p.add_argument("--train-dinov2", action="store_true", help="fine-tune DINOv2 too (default frozen)")
    p.add_argument("--freeze-expression-transformer", action="store_true",
                   help="train the reconstruction model (and the subject table) only")
    p.add_argument("--init", metavar="CHECKPOINT", help="start from a joint checkpoint (same as --init-from)")
    p.add_argument("--rec-weight", default="0.01:1.0", metavar="START:END", help="λ_rec schedule")
    p.add_argument("--temporal-weight", default="0.4:0.1", metavar="START:END", help="λ_temp schedule")
    p.add_argument("--diversity-weight", default="0.3:0.1", metavar="START:END", help="λ_div schedule")
    p.add_argument("--swap-weight", type=float, default=0.0,
                   help="weight of the swap-consistency loss: tokens rendered as another subject and re-read "
                   "stay the same (default 0: off, the design's three losses)")
    p.add_argument("--loss-ramp-steps", type=int, default=3000, help="steps over which the λ go from START to END")
    p.add_argument("--warmup-steps", type=int, default=3000, help="linear learning-rate warm-up, in steps")
    p.add_argument("--no-flip", action="store_true", help="no mirror augmentation")
    p.add_argument("--subject-dropout", type=float, default=0.5,
                   help="fraction of clips whose transformer input is the mean subject (default 0.5)")
    p.add_argument("--export-onnx", action=argparse.BooleanOptionalAction, default=True,
                   help="write OUT/exported/: both parts as .pt and ONNX (+ .json) and subjects.npz (default on)")
    p.add_argument("--export-checkpoint", choices=["best", "final"], default="best",
                   help="which joint checkpoint the exports come from (best: by --monitor, which sees unseen "
                   "people through the mean subject, not enrolled; final: the last epoch)")
    add_trainer_arguments(p, out="runs/expression", epochs=100, batch_size=16, lr=5e-5, min_lr=1e-6,
                          weight_decay=0.05, patience=1000, extra_epochs=0, monitor="val_psnr", mode="max")
    p.set_defaults(run_family=train_expression)

    p = sub.add_parser("enroll", help="a subject embedding for a new person (both networks frozen), stored by name")
    p.add_argument("--model", required=True, help="exported folder of facegraph train expression (or 'expression')")
    p.add_argument("--source", required=True, help="a video of the person (the largest track is taken)")
    p.add_argument("--name", required=True, help="the name graphs use (reconstruct subject=NAME)")
    p.add_argument("--enroll-frames", type=int, default=32, help="first frames of the track used (default 32)")
    p.add_argument("--steps", type=int, default=100, help="optimisation steps (default 100)")
    p.add_argument("--subjects-out", help="subjects.npz to add the name to (default: the model's own)")
    p.add_argument("--threads", type=int, default=0)
    p.set_defaults(run_family=enroll_subject)


def main(args: argparse.Namespace) -> int:
    require_torch()
    return int(args.run_family(args) or 0)


def train_fer(args: argparse.Namespace) -> int:
    from . import imagefolder
    from .fer import FerTask, export, model_config
    from .trainer import Trainer

    exports = [e for e in args.export.split(",") if e and e != "none"]
    bad = [e for e in exports if e not in ("onnx", "coreml")]
    if bad:
        raise TrainingError(f"--export {bad[0]}: unknown target (onnx, coreml; TensorRT: facegraph export trt)")
    config = config_from(args)
    config.check()
    probe = model_config(args.model, 1, size=args.size, color=args.color, width=args.width, dropout=args.dropout)
    train, val = imagefolder.load_splits(args.data, size=probe.size, color=probe.color, val_split=args.val_split,
                                         group_by=args.group_by, seed=args.seed, fold=args.val_fold)
    if args.group_by:
        overlap = set(imagefolder.groups_of(train.paths, args.group_by)) & set(
            imagefolder.groups_of(val.paths, args.group_by))
        assert not overlap, overlap  # the splitter's promise; cheap to check
    cfg = model_config(args.model, len(train.classes), size=args.size, color=args.color, width=args.width,
                       dropout=args.dropout)
    print(f"data {args.data}: {len(train)} train, {len(val)} val images, {len(train.classes)} classes "
          f"({', '.join(f'{c} {n}' for c, n in zip(train.classes, train.counts(), strict=True))})", flush=True)
    task = FerTask(train, val, cfg, balance=args.balance, label_smoothing=args.label_smoothing)
    command = "facegraph " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    trainer = Trainer(config, resume=args.resume, init_from=args.init_from, command=command)
    result = trainer.fit(task)
    print(f"best epoch {result.best_epoch}: " + ", ".join(f"{k} {v:.4f}" for k, v in result.best_metrics.items())
          + f"; {result.seconds / 60:.1f} min; {result.stopped}", flush=True)
    out = Path(config.out)
    if "onnx" in exports or "coreml" in exports:
        path, report = export(result.model, out, task, data=args.data, command=command, seconds=result.seconds,
                              history_best=result.best_metrics)
        print(f"exported {path} (+ {path.with_suffix('.json').name}): ONNX val accuracy {report['accuracy']:.4f}, "
              f"mean recall {report['mean_recall']:.4f}", flush=True)
    if "coreml" in exports:
        from ..nets.expression import _Exported
        from .exporting import export_coreml
        from .fer import FER_TEMPLATE, MEAN, STD, normalise, to_input

        example = normalise(to_input(val.images[:1])).numpy()
        meta = {"labels": train.classes, "input_size": cfg.size, "color": cfg.color, "mean": MEAN, "std": STD,
                "scale": 1 / 255, "template": [list(p) for p in FER_TEMPLATE]}
        path = export_coreml(_Exported(result.model.cpu()).eval(), example, out / "fer", metadata=meta)
        print(f"exported {path}", flush=True)
    return 0


def train_gru(args: argparse.Namespace) -> int:
    from ..nets.gru import GRUConfig
    from .gru import GRUTask, export, load_sequences, logistic_baseline
    from .trainer import Trainer

    if bool(args.backbone) != bool(args.finetune_last_block):
        raise TrainingError("--backbone and --finetune-last-block go together (a frozen backbone: train on its "
                            "embeddings with facegraph data embeddings --backbone FILE.onnx)")
    if args.backbone and not args.crops:
        raise TrainingError("--backbone needs --crops DIR (the crops folder of facegraph data crops)")
    config = config_from(args)
    config.check()
    train, val = load_sequences(args.train, "--train"), load_sequences(args.val, "--val")
    backbone = None
    if args.backbone:
        from .gru import FinetuneTask, load_backbone

        backbone = load_backbone(args.backbone, args.backbone_checkpoint)
    cfg = GRUConfig(input_dim=backbone.num_features if backbone is not None else train.E, hidden=args.hidden,
                    layers=args.layers, classes=len(train.labels), bidirectional=args.bidirectional,
                    dropout=args.dropout)
    options = {"label_smoothing": args.label_smoothing, "balance": args.balance}
    if backbone is not None:
        task = FinetuneTask(train, val, cfg, backbone, args.crops, **options)
    else:
        task = GRUTask(train, val, cfg, noise=args.noise, **options)
    counts = ", ".join(f"{c} {n}" for c, n in zip(train.labels, train.counts(), strict=True))
    print(f"data: {len(train.y)} train, {len(val.y)} val windows of T={train.T}, E={train.E} ({train.backbone}); "
          f"{len(train.labels)} classes ({counts})", flush=True)
    baseline = None
    if not args.no_baseline and backbone is None:
        baseline = logistic_baseline(train, val, seed=args.seed)
        print(f"baseline: logistic regression on each window's mean embedding: "
              f"val accuracy {baseline['accuracy']:.4f}, mean recall {baseline['mean_recall']:.4f}", flush=True)
    command = "facegraph " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    result = Trainer(config, resume=args.resume, init_from=args.init_from, command=command).fit(task)
    print(f"best epoch {result.best_epoch}: " + ", ".join(f"{k} {v:.4f}" for k, v in result.best_metrics.items())
          + f"; {result.seconds / 60:.1f} min; {result.stopped}", flush=True)
    if args.export_onnx and backbone is not None:
        from .gru import export_finetuned

        for path in export_finetuned(result.model, Path(config.out), task, command=command):
            print(f"exported {path}", flush=True)
    elif args.export_onnx:
        path, report = export(result.model, Path(config.out), task, command=command, seconds=result.seconds,
                              best=result.best_metrics, baseline=baseline)
        print(f"exported {path} (+ metadata.json, feature_stats.npz): ONNX val accuracy {report['accuracy']:.4f}, "
              f"mean recall {report['mean_recall']:.4f}, max |ONNX − torch| {report['onnx_max_abs_diff']:.2g}",
              flush=True)
    return 0


def train_facepose(args: argparse.Namespace) -> int:
    import numpy as np

    from . import h5data
    from .facepose import AUTask, LandmarkPoseTask
    from .facepose_export import export_all
    from .trainer import Trainer

    if args.out_dir:
        args.out = args.out_dir
    exports = [e for e in args.export.split(",") if e and e != "none"]
    bad = [e for e in exports if e not in ("onnx", "coreml")]
    if bad:
        raise TrainingError(f"--export {bad[0]}: unknown target (onnx, coreml)")
    if not 0 < args.train_fraction <= 1:
        raise TrainingError(f"--train-fraction must be in (0, 1], got {args.train_fraction}")
    if args.width_mult <= 0 or args.image_size < 32:
        raise TrainingError("--width-mult must be > 0 and --image-size ≥ 32")
    config = config_from(args)
    config.check()
    data = h5data.read(args.data, min_quality=args.min_quality)
    val_videos = [v.strip() for v in (args.val_videos or "").split(",") if v.strip()]
    train_idx, val_idx = h5data.split_by_video(data.video_names, val_videos, args.val_split, args.seed)
    train, val = data.subset(train_idx), data.subset(val_idx)
    if args.train_fraction < 1:
        videos = train.videos()
        keep = max(1, int(np.ceil(args.train_fraction * len(videos))))
        chosen = sorted(np.random.default_rng(args.seed).permutation(videos)[:keep].tolist())
        train = train.subset(np.flatnonzero(np.isin(train.video_names, chosen)))
    assert not set(train.videos()) & set(val.videos())  # the split's promise
    print(f"data {args.data}: {len(train)} train samples from {len(train.videos())} videos "
          f"({', '.join(train.videos())}); {len(val)} held out from {', '.join(val.videos()) or 'none'}", flush=True)
    if args.family == "landmark-pose":
        task = LandmarkPoseTask(train, val, width_mult=args.width_mult, image_size=args.image_size,
                                lm_weight=args.lm_weight, gp_weight=args.gp_weight, lp_weight=args.lp_weight,
                                dropout=args.dropout, augment=not args.no_augment)
    else:
        weights = None
        if args.au_weights:
            weights = [float(w) for w in args.au_weights.split(",")]
            if len(weights) != len(train.au_names):
                raise TrainingError(f"--au-weights: {len(weights)} values for {len(train.au_names)} AUs")
        task = _fhog_fer_task(args, train, val, weights) if args.net == "fhog+fer" else \
            AUTask(train, val, width_mult=args.width_mult, image_size=args.image_size, dropout=args.dropout,
                   l1_weight=args.l1_weight, ccc_weight=args.ccc_weight, au_weights=weights,
                   augment=not args.no_augment, person_norm=args.person_norm, with_frame=args.with_frame,
                   frames_per_video=args.frames_per_video)
        if args.with_frame and not args.person_norm:
            raise TrainingError("--with-frame needs --person-norm")
        if args.person_norm and args.frames_per_video < 2:
            raise TrainingError(f"--frames-per-video {args.frames_per_video}: at least 2 (their mean is the reference)")
    if not len(val):
        raise TrainingError("no held-out video: give --val-videos or a --val-split > 0")
    command = "facegraph " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    if args.export_only:
        return _export_only(args, task, exports, command)
    result = Trainer(config, resume=args.resume, init_from=args.init_from, command=command).fit(task)
    shown = {k: v for k, v in result.best_metrics.items() if not k.startswith(("val_r_", "val_ccc_", "val_mae_"))}
    print(f"best epoch {result.best_epoch}: " + ", ".join(f"{k} {v:.4f}" for k, v in shown.items())
          + f"; {result.seconds / 60:.1f} min; {result.stopped}", flush=True)
    model = result.model
    if args.keep == "final":
        from . import checkpoints

        model.load_state_dict(checkpoints.load(result.final_checkpoint, "final checkpoint")["model"])
        model.eval()
    if exports:
        for path in export_all(model, Path(config.out), task, exports, data=args.data, command=command,
                               seconds=result.seconds, best=result.best_metrics,
                               weights=f"checkpoint_{args.keep}.pt"):
            print(f"exported {path}", flush=True)
    return 0


def _fhog_fer_task(args: argparse.Namespace, train, val, weights: list[float] | None):
    """``--net fhog+fer``: the FER export to read, and the held-out side's landmarks."""
    from facegraph import FacegraphError

    from ..models._onnx import resolve_model
    from .au_hybrid import FhogFerAUTask

    if args.person_norm or args.image_size != 112:
        raise TrainingError("--net fhog+fer takes the 112 px crop and no --person-norm")
    if args.l2 < 0 or args.landmark_jitter < 0 or args.fer_weight <= 0:
        raise TrainingError("--l2 and --landmark-jitter must be ≥ 0 and --fer-weight > 0")
    try:
        fer = resolve_model(args.fer_model, what="emotion CNN")
    except FacegraphError as exc:
        raise TrainingError(f"--fer-model: {exc}") from None
    val_landmarks = None
    if args.val_landmarks != "teacher" and len(val):
        from ..models.facepose import load_predictor

        try:
            net = load_predictor(args.val_landmarks)
        except FacegraphError as exc:
            raise TrainingError(f"--val-landmarks {args.val_landmarks}: {exc}") from None
        val_landmarks = net.predict_batch(val.images[..., ::-1])["landmarks"]
    try:
        return FhogFerAUTask(train, val, fer_onnx=fer, l1_weight=args.l1_weight, ccc_weight=args.ccc_weight,
                             au_weights=weights, l2=args.l2, fer_weight=args.fer_weight,
                             jitter=args.landmark_jitter, augment=not args.no_augment, val_landmarks=val_landmarks,
                             val_landmarks_from=args.val_landmarks)
    except (OSError, ValueError, KeyError) as exc:  # not a FER export, or its JSON missing
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise TrainingError(f"--fer-model {fer}: not a usable facegraph train fer export ({first})") from None


def _export_only(args: argparse.Namespace, task, exports: list[str], command: str) -> int:
    """Export a checkpoint of this task's model (its own command and wall time stay in its metadata)."""
    from . import checkpoints
    from .facepose_export import export_all

    state = checkpoints.load(args.export_only, "--export-only")
    checkpoints.check_same_model(state, task.kind, task.model_config(), "--export-only")
    model = task.build_model()
    model.load_state_dict(state["model"])
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    trained_by = f"{state.get('command', '?')} (epoch {state.get('epoch', '?')}); exported by {command}"
    for path in export_all(model.eval(), out, task, exports or ["onnx"], data=args.data, command=trained_by,
                           seconds=float(state.get("seconds", 0.0)), best=dict(state.get("best_metrics", {})),
                           weights=Path(args.export_only).name):
        print(f"exported {path}", flush=True)
    return 0


def train_face_id(args: argparse.Namespace) -> int:
    import time

    import numpy as np

    from ..nets.faceid import BACKBONES, FaceIDConfig
    from . import faceid_data as fd
    from .faceid import FaceIDTask, default_sigma, export, heatmap_spec
    from .trainer import Trainer

    started = time.monotonic()
    if args.backbone not in BACKBONES:
        raise TrainingError(f"--backbone {args.backbone}: one of {', '.join(BACKBONES)}")
    if args.add_mask_channel and not args.use_heatmaps:
        raise TrainingError("--add_mask_channel needs --use_heatmaps")
    if args.img_size % 16:
        raise TrainingError(f"--img_size must be a multiple of 16, got {args.img_size}")
    if args.distill_only and not args.distill:
        raise TrainingError("--distill-only needs --distill dlib")
    if args.distill:
        from .faceid_distill import check_teacher

        check_teacher(args.distill)
    config = config_from(args)
    if args.distill_only and config.monitor == "val_accuracy":
        config.monitor, config.mode = "val_teacher_cos", "max"  # no margin head, no val_accuracy
    config.check()
    out = Path(config.out)
    cache = Path(args.cache_dir) if args.cache_dir else out / "cache"
    data = fd.load_identities(args.data_root, holdout_people=args.holdout_people,
                              probe_fraction=args.probe_fraction, seed=args.seed)
    split = fd.split_record(data)
    print(f"data {args.data_root}: {split['images']} images of {split['people']} people; training on "
          f"{split['train_images']} images of {len(data.train_people)} people, {split['probe_images']} probe "
          f"images held out, {split['unseen_images']} images of {len(split['unseen_people'])} people never seen "
          f"({', '.join(split['unseen_people'])})", flush=True)
    maps, spec, points = None, None, 68
    if args.use_heatmaps:
        pts, valid = fd.landmarks_for(data, args.extractor, cache_dir=cache if args.cache_landmarks else None,
                                      threads=max(1, config.threads))
        points = pts.shape[1] if args.group_all_landmarks else 68
        spec = heatmap_spec(True, args.add_mask_channel, args.group_all_landmarks,
                            args.sigma or default_sigma(args.img_size), points)
        from ..face._heatmaps import channels as extra_channels

        need = len(pts) * extra_channels(spec, points) * args.img_size**2 * 2
        if need > 6e9:
            raise TrainingError(f"--group_all_landmarks: {extra_channels(spec, points)} heatmap channels of "
                                f"{len(pts)} images at {args.img_size} px need {need / 1e9:.0f} GB in memory; use "
                                "--extractor dlib (68 points), a smaller --img_size, or the 6 groups")
        maps = fd.heatmaps_for(pts, valid, args.img_size, spec, data.images.shape[1],
                               cache_dir=cache if args.cache_heatmaps else None, paths=data.paths)
        if args.drop_failed and not valid.all():
            data.role[(~valid) & (data.role == "train")] = "dropped"
            print(f"--drop-failed: {int((~valid).sum())} images without landmarks left out", flush=True)
        elif not valid.all():
            print(f"{int((~valid).sum())} images without landmarks kept (heatmaps 0"
                  + (", mask 0)" if args.add_mask_channel else ")"), flush=True)
    from ..face._heatmaps import channels

    teacher, distill, morphs = None, None, None
    if args.distill_morphs and not args.distill:
        raise TrainingError("--distill-morphs needs --distill dlib")
    if args.no_morph_mirrors and not args.distill_morphs:
        raise TrainingError("--no-morph-mirrors needs --distill-morphs N")
    if args.distill:
        from .faceid_distill import TEACHER_CARD, centre_teacher, make_morphs, teacher_for

        workers = int(args.threads) or os.cpu_count() or 1  # the teacher's processes: the cores training may use
        teacher = teacher_for(data, args.distill, cache_dir=cache, log=lambda m: print(m, flush=True),
                              workers=workers)
        centre = None
        if args.distill_morphs > 0:
            morphs = make_morphs(data, args.distill_morphs, args.distill, seed=args.seed, cache_dir=cache,
                                 log=lambda m: print(m, flush=True), workers=workers,
                                 mirrors=not args.no_morph_mirrors)
        if not args.no_distill_centre:
            teacher, centre = centre_teacher(teacher, data.where("train"))
            if morphs is not None:
                morphs.teacher = centre_teacher(morphs.teacher, mean=centre)[0]
            print(f"teacher vectors centred on the training images' mean (its length {np.linalg.norm(centre):.3f})",
                  flush=True)
        distill = {"teacher": TEACHER_CARD, "weight": args.distill_weight, "loss": args.distill_loss,
                   "margin_head": not args.distill_only, "centred": centre is not None,
                   "morphs": args.distill_morphs, "morph_mirrors": not args.no_morph_mirrors,
                   "images": "the training images and their mirrors (teacher run once per image, cached)"}
    cfg = FaceIDConfig(backbone=args.backbone, in_channels=3 + channels(spec, points), input_size=args.img_size,
                       embedding=args.embedding, width=args.width, head="cosface" if args.use_cosface else "arcface",
                       classes=0 if args.distill_only else len(data.train_people),
                       distill_dim=teacher.shape[-1] if teacher is not None else 0)
    task = FaceIDTask(data, cfg, heatmaps=maps, spec=spec, points=points, augment=not args.no_augment,
                      extractor=args.extractor, margin_warmup=args.margin_warmup, margin=args.margin,
                      teacher=teacher, distill_weight=args.distill_weight, distill_kind=args.distill_loss,
                      morphs=morphs, flip_test=not args.no_flip_test)
    print(f"model {args.backbone} ×{args.width} at {args.img_size} px, {cfg.in_channels} input channels, "
          + (f"{cfg.head} head over {cfg.classes} people" if cfg.classes else "no margin head")
          + (f", distilling {args.distill} ({args.distill_loss}, weight {args.distill_weight})" if distill else ""),
          flush=True)
    command = "facegraph " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    result = Trainer(config, resume=args.resume, init_from=args.init_from, command=command).fit(task)
    print(f"best epoch {result.best_epoch}: " + ", ".join(f"{k} {v:.4f}" for k, v in result.best_metrics.items())
          + f"; {result.seconds / 60:.1f} min; {result.stopped}", flush=True)
    path, scores = export(result.model, out, task, command=command, seconds=result.seconds,
                          data_root=str(args.data_root), best=result.best_metrics, split=split,
                          fp16=not args.no_fp16, distill=distill, wall_seconds=time.monotonic() - started,
                          output_rule=args.export_output)
    line = ", ".join(f"{k} {v:.4f}" for k, v in scores["fp32"].items() if not np.isnan(v))
    print(f"exported {path} (+ {path.with_suffix('.json').name}); ONNX held-out: {line}", flush=True)
    return 0


def train_landmark_ae(args: argparse.Namespace) -> int:
    import time

    from .landmark_ae import LandmarkAETask, export, read_chunks, split_identities
    from .trainer import Trainer

    config = config_from(args)
    config.check()
    rows = read_chunks(args.chunks, spark=args.spark)
    train, val = split_identities(rows, args.holdout_identities, args.seed)
    held = sorted(set(rows.identity[val].tolist()))
    print(f"chunks {args.chunks}: {len(rows.shapes)} faces; {len(train)} train, {len(val)} held-out faces of "
          f"{len(held)} identities ({', '.join(held)})", flush=True)
    task = LandmarkAETask(rows, train, val, hidden=args.hidden, layers=args.layers, dropout=args.dropout,
                          noise=args.noise)
    command = "facegraph " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    result = Trainer(config, resume=args.resume, init_from=args.init_from, command=command).fit(task)
    model = result.model.cpu().eval()
    s = task.scores(model, task.val_index)
    print(f"held-out identities: mean point error {s['error']:.4f} vs {s['baseline']:.4f} changing nothing "
          f"({100 * s['reduction']:.1f} % less); {result.seconds / 60:.1f} min", flush=True)
    out = Path(config.out)
    meta = {"kind": "landmark-ae", "points": "ibug68", "normalisation": "centred, unit RMS size",
            "input": "136 shape values + pitch, yaw, roll (radians, the pose node's)",
            "output": "residual added to the shape", "model_config": task.model_config(), "command": command,
            "train_seconds": round(result.seconds, 1), "held_out_identities": held,
            "scores": {k: round(v, 4) for k, v in s.items()}, "exported": time.strftime("%Y-%m-%d %H:%M:%S")}
    path = export(model, out / "landmark_ae.npz", meta)
    print(f"exported {path} (+ {path.with_suffix('.json').name})", flush=True)
def _weights(text: str, flag: str) -> tuple[float, float]:
    try:
        parts = [float(v) for v in text.split(":")]
    except ValueError:
        parts = []
    if len(parts) == 1:
        parts *= 2
    if len(parts) != 2 or min(parts) < 0:
        raise TrainingError(f"{flag} {text!r}: give START:END (two non-negative numbers) or one number")
    return parts[0], parts[1]


def _fer_onnx(args: argparse.Namespace) -> str | None:
    """The --fer-model path for the conv+fer tokenizer (None for the other tokenizers)."""
    if args.tokenizer != "conv+fer":
        return None
    from facegraph import ModelError

    from ..models._onnx import resolve_model

    try:
        return str(resolve_model(args.fer_model, what="emotion CNN"))
    except ModelError as exc:
        raise TrainingError(f"--fer-model: {exc}") from None


def train_expression(args: argparse.Namespace) -> int:
    from ..nets.reconstruction import preset_configs
    from .expression import ExpressionTask, LossSchedule, load_clip_set
    from .expression_export import export_parts
    from .trainer import Trainer

    config = config_from(args)
    try:
        tcfg, rcfg = preset_configs(args.preset, image_size=args.image_size, patch=args.patch,
                                    embed_dim=args.embed_dim, heads=args.heads, layers=args.layers, ff=args.ff,
                                    tokens=args.tokens, readout=args.readout, token_dim=args.token_dim,
                                    subjects=args.subjects, tokenizer=args.tokenizer,
                                    head=args.head, fer_onnx=_fer_onnx(args),
                                    dinov2=args.dinov2, train_dinov2=args.train_dinov2)
    except ValueError as exc:
        raise TrainingError(f"--preset {args.preset}: {exc}") from None
    if tcfg.tokenizer == "dinov2" and not tcfg.dinov2:
        raise TrainingError("--tokenizer dinov2 needs --dinov2 WEIGHTS.pth (DINOv2 ViT-S/14; facegraph models "
                            "names where to get it)")
    schedule = LossSchedule(rec=_weights(args.rec_weight, "--rec-weight"),
                            temporal=_weights(args.temporal_weight, "--temporal-weight"),
                            diversity=_weights(args.diversity_weight, "--diversity-weight"),
                            ramp_steps=args.loss_ramp_steps)
    train = load_clip_set(args.clips, "train", tcfg.image_size)
    val = load_clip_set(args.clips, "val", tcfg.image_size)
    try:
        task = ExpressionTask(train, val, tcfg, rcfg, schedule=schedule,
                              freeze_transformer=args.freeze_expression_transformer, flip=not args.no_flip,
                              subject_dropout=args.subject_dropout, swap_weight=args.swap_weight)
        task.build_model()
    except ValueError as exc:
        raise TrainingError(f"facegraph train expression: {exc}") from None
    steps = task.steps_per_epoch(config.batch_size)
    if config.max_batches:
        steps = min(steps, config.max_batches)
    config.warmup_epochs = args.warmup_steps / steps
    config.check()
    print(f"data {args.clips}: {len(train)} train clips ({len(train.images)} frames, "
          f"{len(set(train.subjects.tolist()))} subjects), {len(val)} val clips ({len(val.images)} frames); "
          f"{steps} steps per epoch, warm-up {args.warmup_steps} steps", flush=True)
    command = "facegraph " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    init = args.init or args.init_from
    result = Trainer(config, resume=args.resume, init_from=init, command=command).fit(task)
    print(f"best epoch {result.best_epoch}: " + ", ".join(f"{k} {v:.4f}" for k, v in result.best_metrics.items())
          + f"; {result.seconds / 60:.1f} min; {result.stopped}", flush=True)
    if args.export_checkpoint == "final":
        from . import checkpoints

        final = checkpoints.load(Path(config.out) / checkpoints.FINAL, "final checkpoint")
        result.model.load_state_dict(final["model"])
        print(f"exporting the final epoch's weights ({result.epochs_run})", flush=True)
    for path in export_parts(result.model, Path(config.out), task, command=command, seconds=result.seconds,
                             best=result.best_metrics, onnx=args.export_onnx):
        print(f"wrote {path}", flush=True)
    return 0


def enroll_subject(args: argparse.Namespace) -> int:
    from .expression_export import enroll_from_video

    name, path, report = enroll_from_video(args.model, args.source, args.name, frames=args.enroll_frames,
                                           steps=args.steps, subjects_out=args.subjects_out, threads=args.threads)
    print(f"{path}: subject '{name}' enrolled on {report['frames']} frames of {args.source} "
          f"(reconstruction PSNR {report['psnr']:.2f} dB on them)")
    return 0
