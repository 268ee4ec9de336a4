"""``facegraph export onnx|coreml|trt``: the export targets of a trained run.

    facegraph export onnx runs/fer/checkpoint_best.pt --out runs/fer      # checked against torch
    facegraph export coreml runs/fer/checkpoint_best.pt --out runs/fer    # .mlpackage (coremltools)
    facegraph export trt runs/fer/fer.onnx                                # FP16 engine (GPU + tensorrt)
"""

from __future__ import annotations

import argparse
from pathlib import Path

from .errors import TrainingError, require_torch

HELP = "export a trained model: onnx or coreml from a checkpoint, trt (TensorRT FP16) from an ONNX file"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("target", choices=["onnx", "coreml", "trt"])
    parser.add_argument("source", help="checkpoint (onnx, coreml) or ONNX file (trt)")
    parser.add_argument("--out", help="folder (onnx, coreml) or engine file (trt); default beside the source")
    parser.add_argument("--fp32", action="store_true", help="trt: build an FP32 engine instead of FP16")
    parser.add_argument("--data", help="onnx: labelled images to check on and score (DIR/val/<class>/ or DIR/<class>/)")


def _fer_from_checkpoint(path: str):  # -> (ExpressionNet, labels)
    import dataclasses

    from ..nets.expression import ExpressionConfig, ExpressionNet
    from . import checkpoints

    state = checkpoints.load(path, "checkpoint")
    if state.get("kind") != "fer":
        raise TrainingError(f"{state['path']}: a '{state.get('kind')}' checkpoint; this command exports 'fer' "
                            "models (other families export from their own train command)")
    cfg = dict(state["model_config"])
    labels = cfg.pop("labels")
    fields = {f.name for f in dataclasses.fields(ExpressionConfig)}
    model = ExpressionNet(ExpressionConfig(**{k: v for k, v in cfg.items() if k in fields}))
    model.load_state_dict(state["model"])
    return model.eval(), labels, state


def _val_images(root: str, size: int, color: str, labels: list[str], imagefolder):  # -> LabelledImages
    """The held-out images of ``root`` (its val/ or test/ folder when it has one), classes in the model's order."""
    base = Path(root).expanduser()
    folder = next((base / n for n in ("val", "test", "valid") if (base / n).is_dir()), base)
    return imagefolder.load(folder, size=size, color=color, classes=labels)


def main(args: argparse.Namespace) -> int:
    source = Path(args.source).expanduser()
    if args.target == "trt":
        from .exporting import export_tensorrt

        out = export_tensorrt(source, Path(args.out) if args.out else None, fp16=not args.fp32)
        print(f"wrote {out}")
        return 0
    require_torch()
    import numpy as np

    from ..nets.expression import _Exported
    from ..nets.expression import export_onnx as export_expression
    from .exporting import export_coreml, export_onnx_checked
    from .fer import FER_TEMPLATE, MEAN, STD

    model, labels, state = _fer_from_checkpoint(str(source))
    out = Path(args.out) if args.out else Path(state["path"]).parent
    cfg = model.config
    channels = 1 if cfg.color == "gray" else 3
    rng = np.random.default_rng(0)
    sample = ((rng.integers(0, 256, (4, channels, cfg.size, cfg.size)) / 255.0 - MEAN) / STD).astype(np.float32)
    if args.target == "onnx":
        history = state.get("history", [])
        meta = {"layout": "NCHW", "command": state.get("command", ""), "checkpoint": state["path"],
                "train_seconds": round(float(state.get("seconds", 0.0)), 1), "epochs": len(history),
                "template": [list(p) for p in FER_TEMPLATE],
                "scores": {"best_epoch_torch": state.get("best_metrics", {})}}
        data = None
        if args.data:
            from . import imagefolder
            from .fer import normalise, to_input

            data = _val_images(args.data, cfg.size, cfg.color, labels, imagefolder)
            sample = normalise(to_input(data.images[:8])).numpy()
            meta["data"] = {"path": args.data, "val_counts": dict(zip(data.classes, data.counts(), strict=True))}
        path, diff = export_onnx_checked(
            lambda: export_expression(model, out / "fer.onnx", meta, labels=labels, mean=MEAN, std=STD),
            _Exported(model).eval(), [sample], f"the {cfg.backbone} FER model")
        print(f"wrote {path} (+ {path.with_suffix('.json').name}); ONNX vs torch max abs diff {diff:.2e}")
        if data is not None:
            import json

            from .evaluate import evaluate_onnx

            report = evaluate_onnx(path, data)
            full = json.loads(path.with_suffix(".json").read_text())
            full["scores"].update(val_accuracy=report["accuracy"], val_mean_recall=report["mean_recall"],
                                  per_class_recall=report["per_class_recall"], n=report["n"])
            path.with_suffix(".json").write_text(json.dumps(full, indent=2) + "\n")
            print(f"{args.data}: accuracy {report['accuracy']:.4f}, mean recall {report['mean_recall']:.4f} "
                  f"({report['n']} images)")
    else:
        meta = {"labels": labels, "input_size": cfg.size, "color": cfg.color, "mean": MEAN, "std": STD,
                "scale": 1 / 255, "template": [list(p) for p in FER_TEMPLATE]}
        print(f"wrote {export_coreml(_Exported(model).eval(), sample[:1], out / 'fer', metadata=meta)}")
    return 0
