"""``facegraph train <model>``: one command per model family, all on the shared trainer.

    facegraph train fer --data fer2013/ --model cnn48 --epochs 30 --out runs/fer
    facegraph train gru --train data/ck/train.npz --val data/ck/val.npz --out runs/gru
    facegraph train expression --clips data/clips --preset cpu64 --out runs/expression
"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

from .errors import TrainingError, require_torch
from .trainer_args import add_trainer_arguments, config_from

HELP = "train a model (fer, gru, …) on the shared trainer; needs the [train] extra"


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
    p.add_argument("--tokens", type=int, help="expression tokens per face")
    p.add_argument("--subjects", type=int, help="rows of the subject-embedding table (design: 501)")
    p.add_argument("--head", choices=["conv", "linear"], help="reconstruction output: upsampling convolutions "
                   "(default) or one linear patch per query (MAE's)")
    p.add_argument("--tokenizer", choices=["conv", "dinov2"], default="conv",
                   help="conv: a small patch tokenizer trained jointly; dinov2: ViT-S/14 patch tokens (--dinov2)")
    p.add_argument("--dinov2", metavar="WEIGHTS.pth", default="",
                   help="DINOv2 ViT-S/14 weights (dinov2_vits14_pretrain.pth; see facegraph models)")
    p.add_argument("--train-dinov2", action="store_true", help="fine-tune DINOv2 too (default frozen)")
    p.add_argument("--freeze-expression-transformer", action="store_true",
                   help="train the reconstruction model (and the subject table) only")
    p.add_argument("--init", metavar="CHECKPOINT", help="start from a joint checkpoint (same as --init-from)")
    p.add_argument("--rec-weight", default="0.01:1.0", metavar="START:END", help="λ_rec schedule")
    p.add_argument("--temporal-weight", default="0.4:0.1", metavar="START:END", help="λ_temp schedule")
    p.add_argument("--diversity-weight", default="0.3:0.1", metavar="START:END", help="λ_div schedule")
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


def train_expression(args: argparse.Namespace) -> int:
    from ..nets.reconstruction import preset_configs
    from .expression import ExpressionTask, LossSchedule, load_clip_set
    from .expression_export import export_parts
    from .trainer import Trainer

    config = config_from(args)
    try:
        tcfg, rcfg = preset_configs(args.preset, image_size=args.image_size, patch=args.patch,
                                    embed_dim=args.embed_dim, heads=args.heads, layers=args.layers, ff=args.ff,
                                    tokens=args.tokens, subjects=args.subjects, tokenizer=args.tokenizer,
                                    head=args.head,
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
                              subject_dropout=args.subject_dropout)
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
