"""An AU model from the shipped FER-2013 CNN's features: ridge on its embedding, one ONNX file the au.nn node runs.

    python benchmarks/facenets_fer_au.py --data teacher.h5 --val-videos a,b,c --out benchmarks/models/au_fer_ridge

Why: six training people are too few for a pixel net to learn AUs rather than who is who
(benchmarks/README.md, issue 16), but the expression CNN shipped as ``facegraph/fer_cnn`` was
trained on FER-2013's ~28 k faces of thousands of people, and its 128-D embedding carries the
expression. A ridge regression from that embedding (+ log class probabilities) to the teacher's
17 intensities is fit on the training videos, its alpha chosen by leave-one-video-out on them
(never on the held-out videos). The file written takes the AU net's input (RGB 112 px crop on
the nets' template, ``(x/255 − 0.5)/0.5``) and does the rest inside the graph: gray, the warp
to FER's 48 px template, the CNN, the ridge, the clip to [0, 5]. So ``load_au_predictor``,
``facegraph eval au`` and the ``au.nn`` node use it as they use an AU net.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

ALPHAS = (0.1, 1.0, 10.0, 100.0, 1000.0)


def _warp_module(size: int = 112):
    """RGB crop on the nets' template (−1…1) → FER's gray 48×48 (its template, same normalisation)."""
    from facegraph.nodes.nets.fer_features import CropToFer, crop_to_fer_theta

    meta = json.loads(_fer_path().with_suffix(".json").read_text())
    return CropToFer(crop_to_fer_theta(meta, size))


def _fer_path() -> Path:
    return Path(__file__).resolve().parents[1] / "nodes" / "models" / "data" / "fer_cnn.onnx"


def _head_module(coef: np.ndarray, intercept: np.ndarray):
    import torch

    class RidgeHead(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.register_buffer("w", torch.tensor(coef.T, dtype=torch.float32))
            self.register_buffer("b", torch.tensor(intercept, dtype=torch.float32))

        def forward(self, embedding: torch.Tensor, probs: torch.Tensor) -> torch.Tensor:
            x = torch.cat([embedding, torch.log(probs + 1e-4)], 1)
            return (x @ self.w + self.b).clamp(0.0, 5.0)

    return RidgeHead()


def _export(module, args, path: Path, inputs: list[str], outputs: list[str]) -> None:
    import torch

    axes = {n: {0: "N"} for n in (*inputs, *outputs)}
    with torch.no_grad():
        torch.onnx.export(module.eval(), args, str(path), input_names=inputs, output_names=outputs,
                          dynamic_axes=axes, opset_version=17, dynamo=False)


def build_features_model(work: Path) -> Path:
    """image (N, 3, 112, 112) → probs, embedding: the warp graph followed by the FER CNN, one file."""
    import onnx
    import onnx.compose
    import torch

    pre = work / "pre.onnx"
    _export(_warp_module(), (torch.zeros(2, 3, 112, 112),), pre, ["image"], ["gray48"])
    fer = onnx.load(str(_fer_path()))
    pre_model = onnx.load(str(pre))
    fer.ir_version = pre_model.ir_version = min(fer.ir_version, pre_model.ir_version)
    _align_opsets(pre_model, fer)
    merged = onnx.compose.merge_models(pre_model, fer, io_map=[("gray48", fer.graph.input[0].name)],
                                       prefix2="fer_")
    path = work / "features.onnx"
    onnx.save(merged, str(path))
    return path


def _align_opsets(*models) -> None:
    import onnx.version_converter

    top = max(o.version for m in models for o in m.opset_import if o.domain in ("", "ai.onnx"))
    for m in models:
        for o in m.opset_import:
            if o.domain in ("", "ai.onnx") and o.version != top:
                converted = onnx.version_converter.convert_version(m, top)
                m.CopyFrom(converted)
                break


def features_of(path: Path, images_rgb: np.ndarray) -> np.ndarray:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    rows = []
    for i in range(0, len(images_rgb), 256):
        x = ((images_rgb[i:i + 256].astype(np.float32) / 255.0 - 0.5) / 0.5).transpose(0, 3, 1, 2)
        out = dict(zip(names, session.run(None, {"image": np.ascontiguousarray(x)}), strict=True))
        rows.append(np.concatenate([out["fer_embedding"], np.log(out["fer_probs"] + 1e-4)], 1))
    return np.concatenate(rows)


def choose_alpha(x: np.ndarray, y: np.ndarray, groups: np.ndarray) -> tuple[float, dict[float, float]]:
    """Leave-one-video-out over the training videos: pooled mean r of the out-of-video predictions."""
    from facegraph.nodes.training.facepose_scores import au_scores
    from sklearn.linear_model import Ridge

    scores = {}
    for alpha in ALPHAS:
        pred = np.zeros_like(y)
        for g in np.unique(groups):
            held = groups == g
            pred[held] = Ridge(alpha=alpha).fit(x[~held], y[~held]).predict(x[held])
        scores[alpha] = au_scores(np.clip(pred, 0, 5), y, [str(i) for i in range(y.shape[1])])["val_mean_r"]
    return max(scores, key=scores.get), scores


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--val-videos", required=True)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)

    import onnx
    import onnx.compose
    import torch
    from facegraph.nodes.training import h5data
    from facegraph.nodes.training.facepose_scores import au_scores, within_video_r
    from sklearn.linear_model import Ridge

    started = time.time()
    data = h5data.read(args.data)
    val_videos = [v for v in args.val_videos.split(",") if v]
    train, val = h5data.split_by_video(data.video_names, val_videos)
    args.out.mkdir(parents=True, exist_ok=True)
    work = args.out / "_work"
    work.mkdir(exist_ok=True)
    feats_path = build_features_model(work)
    x = features_of(feats_path, data.images)
    y = data.au_intensities
    alpha, cv = choose_alpha(x[train], y[train], data.video_names[train])
    ridge = Ridge(alpha=alpha).fit(x[train], y[train])
    print(f"alpha {alpha} (leave-one-training-video-out pooled mean r: "
          + ", ".join(f"{a:g} {s:.3f}" for a, s in cv.items()) + ")", flush=True)

    head = work / "head.onnx"
    emb = torch.zeros(2, 128)
    _export(_head_module(ridge.coef_, ridge.intercept_), (emb, torch.full((2, 7), 1 / 7)), head,
            ["fer_embedding", "fer_probs"], ["au_intensities"])
    a, b = onnx.load(str(feats_path)), onnx.load(str(head))
    a.ir_version = b.ir_version = min(a.ir_version, b.ir_version)
    _align_opsets(a, b)
    model = onnx.compose.merge_models(a, b, io_map=[("fer_embedding", "fer_embedding"), ("fer_probs", "fer_probs")],
                                      outputs=["head_au_intensities"], prefix2="head_")
    for node in model.graph.node:  # the head's names were prefixed to keep them apart; its output keeps its name
        node.output[:] = ["au_intensities" if o == "head_au_intensities" else o for o in node.output]
    model.graph.output[0].name = "au_intensities"
    onnx.checker.check_model(model)
    path = args.out / "au_net.onnx"
    onnx.save(model, str(path))

    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    xin = ((data.images[val].astype(np.float32) / 255.0 - 0.5) / 0.5).transpose(0, 3, 1, 2)
    got = np.concatenate([session.run(None, {"image": np.ascontiguousarray(xin[i:i + 256])})[0]
                          for i in range(0, len(xin), 256)])
    want = np.clip(ridge.predict(x[val]), 0, 5)
    diff = float(np.abs(got - want).max())
    if diff > 1e-4:
        raise SystemExit(f"{path}: the merged file differs from features + ridge by {diff:.3g}")
    scores = au_scores(got, y[val], data.au_names)
    scores.update(within_video_r(got, y[val], data.video_names[val], data.au_names))
    seconds = time.time() - started
    meta = {
        "kind": "au-net", "model_config": {"net": "FER-2013 CNN embedding + ridge", "alpha": alpha},
        "input": "image", "layout": "NCHW", "color": "rgb", "input_size": 112, "crop_size": 112, "mean": 0.5,
        "std": 0.5, "scale": 1 / 255, "outputs": ["au_intensities"], "au_names": list(data.au_names),
        "units": "AU intensities 0-5, OpenFace's scale",
        "data": {"path": str(args.data), "train_videos": sorted(set(data.video_names[train])),
                 "val_videos": sorted(set(data.video_names[val])), "train_samples": len(train),
                 "val_samples": len(val)},
        "teacher": "OpenFace 0.2.x FeatureExtraction CSVs (../shared/data/openface_0.2)",
        "licence": ("the ridge mimics OpenFace (OpenFace's academic, non-commercial licence) on the features of the "
                    "FER-2013 CNN (research use only): both apply; not in the wheel"),
        "command": f"python benchmarks/facenets_fer_au.py --data {args.data} --val-videos {args.val_videos} "
                   f"--out {args.out}",
        "train_seconds": round(seconds, 1), "alpha_cv": {str(k): v for k, v in cv.items()},
        "onnx_max_abs_diff": diff, "scores": scores, "exported": time.strftime("%Y-%m-%d %H:%M:%S"),
    }
    (args.out / "au_net.json").write_text(json.dumps(meta, indent=2) + "\n")
    for p in work.iterdir():
        p.unlink()
    work.rmdir()
    print(f"{path}: {len(train)} train / {len(val)} held-out faces; held-out mean r {scores['val_mean_r']:.3f}, "
          f"CCC {scores['val_mean_ccc']:.3f}, MAE {scores['val_mae']:.3f}, within-video r "
          f"{scores['within_video_mean_r']:.3f}; |merged − features+ridge| {diff:.2g}; {seconds:.0f} s", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
