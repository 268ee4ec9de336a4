"""The shipped ``au_fhog_fer`` as a CoreML package, from the very weights of its ONNX file.

    python benchmarks/au_fhog_fer_coreml.py [--model benchmarks/models/au_fhog_fer]

The net was trained before ``train au --net fhog+fer`` wrote ``.mlpackage`` files, and its
checkpoint is not kept in the repository. Its ONNX initializers carry the torch state-dict
names (``model.head.weight`` …), so the torch net is rebuilt from them exactly, checked
against ONNX Runtime on real-looking inputs, and converted (coremltools converts on Linux;
the package runs on macOS).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def rebuilt_from_onnx(onnx_path: Path):
    """(ClippedAUs(FhogFerAUNet) with the ONNX file's weights, the number of tensors loaded)."""
    import onnx
    import torch
    from facegraph.nodes.nets.au_hybrid import ClippedAUs, FhogFerAUNet
    from onnx import numpy_helper

    graph = onnx.load(str(onnx_path)).graph
    weights = {i.name: torch.from_numpy(numpy_helper.to_array(i).copy()) for i in graph.initializer}
    state = {k.removeprefix("model."): v for k, v in weights.items()}
    net = FhogFerAUNet(num_aus=int(state["head.weight"].shape[0]))
    net.load_state_dict(state, strict=True)
    return ClippedAUs(net).eval(), len(state)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", type=Path, default=ROOT / "benchmarks" / "models" / "au_fhog_fer")
    args = ap.parse_args()
    import onnxruntime as ort
    import torch
    from facegraph.nodes.training.exporting import export_coreml
    from facegraph.nodes.training.facepose_export import coreml_metadata

    module, n = rebuilt_from_onnx(args.model / "au_net.onnx")
    rng = np.random.default_rng(0)
    image = rng.uniform(-1, 1, (4, 3, 112, 112)).astype(np.float32)
    fhog = rng.uniform(0, 0.4, (4, 4464)).astype(np.float32)
    session = ort.InferenceSession(str(args.model / "au_net.onnx"), providers=["CPUExecutionProvider"])
    want = session.run(None, {"image": image, "fhog": fhog})[0]
    with torch.no_grad():
        got = module(torch.from_numpy(image), torch.from_numpy(fhog)).numpy()
    diff = float(np.abs(got - want).max())
    if diff > 1e-4:
        raise SystemExit(f"the rebuilt net differs from {args.model / 'au_net.onnx'} by {diff:.2e}")
    meta_path = args.model / "au_net.json"
    meta = json.loads(meta_path.read_text())
    path = export_coreml(module, (image[:1], fhog[:1]), args.model / "au_net", ("image", "fhog"),
                         metadata=coreml_metadata(meta), fp16=False)
    meta["coreml"] = ("au_net.mlpackage (float32): inputs image (1, 3, 112, 112) and fhog (1, 4464), one face "
                      "per call; made from au_net.onnx's own weights by benchmarks/au_fhog_fer_coreml.py "
                      f"(torch vs ONNX {diff:.1e})")
    meta_path.write_text(json.dumps(meta, indent=2) + "\n")
    print(f"{n} tensors from au_net.onnx; torch vs ONNX Runtime max |diff| {diff:.2e}; wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
