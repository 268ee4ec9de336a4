#!/usr/bin/env bash
# CK+48, subject-independent, 5 folds: the GRU head and a logistic regression on the same windows, per fold.
#   bash benchmarks/ckplus_gru.sh [BACKBONE] [OUT]      (default dlib+shape68, benchmarks/results/ckplus)
#   REUSE=data/ck/frame_table.parquet bash benchmarks/ckplus_gru.sh   (vectors of the same crops, same backbone)
# Each fold holds out a fifth of the subjects (StratifiedGroupKFold over '^(S\d+)', seed 0); the frame table is
# embedded once and reused for every fold (data embeddings --reuse), stats always from the fold's train split.
set -euo pipefail
BACKBONE=${1:-dlib+shape68}
OUT=${2:-benchmarks/results/ckplus}/${BACKBONE//[^a-zA-Z0-9_]/_}
CK=${CK:-../shared/data/fer/ckplus48}
mkdir -p "$OUT"
for k in 0 1 2 3 4; do
  d="$OUT/fold$k"
  rm -rf "$d/crops"
  facegraph data crops --images "$CK" --group-by '^(S\d+)' --folds 5 --fold "$k" --out "$d/crops"
  reuse=()
  if [ -n "${REUSE:-}" ]; then reuse=(--reuse "$REUSE")
  elif [ -f "$OUT/fold0/frame_table.parquet" ]; then reuse=(--reuse "$OUT/fold0/frame_table.parquet"); fi
  facegraph data embeddings --crops "$d/crops" --backbone "$BACKBONE" --out "$d/frame_table.parquet" \
      --no-progress "${reuse[@]}"
  facegraph data sequences --frames "$d/frame_table.parquet" --use-split-column --T 3 --stride 1 \
      --out-train "$d/train.npz" --out-val "$d/val.npz"
  facegraph train gru --train "$d/train.npz" --val "$d/val.npz" --out "$d/run" --no-progress --threads 2 \
      | tee "$d/train.log" | grep -E "^(baseline|best epoch|exported)"
done
python - "$OUT" <<'PY'
import json, sys, pathlib, statistics as st
out = pathlib.Path(sys.argv[1])
gru, lr = [], []
for k in range(5):
    m = json.loads((out / f"fold{k}/run/exported/metadata.json").read_text())["scores"]
    gru.append(m["val_accuracy"]); lr.append(m["logistic_regression_baseline"]["accuracy"])
summary = {"gru_onnx_val_accuracy": gru, "logreg_val_accuracy": lr,
           "gru_mean": st.mean(gru), "gru_sd": st.stdev(gru), "logreg_mean": st.mean(lr), "logreg_sd": st.stdev(lr)}
(out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
print(f"5 folds: GRU {summary['gru_mean']:.4f} ± {summary['gru_sd']:.4f}  "
      f"logistic regression {summary['logreg_mean']:.4f} ± {summary['logreg_sd']:.4f}  ({out / 'summary.json'})")
PY
