"""CPU ms per face of the expression transformer and the reconstruction model (ONNX Runtime, one thread),
next to the shipped FER CNN in the same sitting (the ratio is what carries to another machine).

    python benchmarks/expression_speed.py [--model DIR] [--faces 1] [--repeats 200] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np


def _session(path: Path):
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = opts.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def _ms(run, repeats: int) -> float:
    for _ in range(5):
        run()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        run()
        times.append(time.perf_counter() - t0)
    return float(np.median(times) * 1000)


def main() -> int:
    from facegraph.nodes.models._catalogue import resolve
    from facegraph.nodes.models._modelparams import shipped_expression_folder

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", help="exported folder (default: the shipped one)")
    p.add_argument("--faces", type=int, default=1, help="faces per call")
    p.add_argument("--repeats", type=int, default=200)
    p.add_argument("--json")
    args = p.parse_args()
    folder = Path(args.model) if args.model else shipped_expression_folder("expression")
    enc, dec = _session(folder / "expression_transformer.onnx"), _session(folder / "expression_reconstruction.onnx")
    fer = _session(resolve("fer_cnn"))
    meta = json.loads((folder / "expression_transformer.json").read_text())
    n, size, d = args.faces, int(meta["input_size"]), int(meta.get("subject_dim", meta["dim"]))
    rng = np.random.default_rng(0)
    image = rng.normal(size=(n, 3, size, size)).astype(np.float32)
    subject = rng.normal(size=(n, d)).astype(np.float32)
    tokens = enc.run(None, {"image": image, "subject": subject})[0]
    dec_in = {"subject": subject, "tokens": tokens}
    if len(dec.get_inputs()) == 3:  # the conv+ref head also reads the subject's reference face
        dec_in["reference"] = rng.random((n, 3, size, size)).astype(np.float32)
    fer_in = rng.normal(size=(n, 1, 48, 48)).astype(np.float32)
    fer_name = fer.get_inputs()[0].name
    r = {"faces_per_call": n, "input_size": size,
         "fer_cnn_ms": _ms(lambda: fer.run(None, {fer_name: fer_in}), args.repeats) / n,
         "encoder_ms": _ms(lambda: enc.run(None, {"image": image, "subject": subject}), args.repeats) / n,
         "decoder_ms": _ms(lambda: dec.run(None, dec_in), args.repeats) / n}
    r["encoder_vs_fer_cnn"] = r["encoder_ms"] / r["fer_cnn_ms"]
    r["decoder_vs_fer_cnn"] = r["decoder_ms"] / r["fer_cnn_ms"]
    print(f"ms per face ({n} per call, 1 thread): encoder {r['encoder_ms']:.2f} ({r['encoder_vs_fer_cnn']:.1f}× the "
          f"FER CNN), decoder {r['decoder_ms']:.2f} ({r['decoder_vs_fer_cnn']:.1f}×), FER CNN {r['fer_cnn_ms']:.2f}")
    if args.json:
        Path(args.json).write_text(json.dumps(r, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
