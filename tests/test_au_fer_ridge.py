"""The shipped AU model benchmarks/models/au_fer_ridge (issue 16): its files and hashes, the warp inside it against
the FER node's own crop, and that the au.nn predictor reads a smile off a shared video where OpenFace does."""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))

from facegraph.nodes.models import facepose as fp  # noqa: E402


def test_every_bench_net_file_is_in_the_checkout_with_its_hash():
    for name, rel, _, sha, size, _ in fp.BENCH_NETS:
        path = fp.BENCH_MODELS / rel
        assert path.is_file(), f"{name}: {path} missing (git-ignored? see the ! rules in .gitignore)"
        data = path.read_bytes()
        assert len(data) == size and hashlib.sha256(data).hexdigest() == sha, f"{name}: {path} differs"
        assert path.with_suffix(".json").is_file(), f"{name}: no card metadata beside {path}"


def test_warp_inside_the_model_is_the_fer_nodes_crop():
    """CropToFer (gray + grid_sample in the ONNX file) against cv2 on the FER crop spec's own matrix."""
    torch = pytest.importorskip("torch")
    cv2 = pytest.importorskip("cv2")
    import json

    from facegraph.nodes.face._align import umeyama
    from facegraph.nodes.models._crops import CropSpec
    from facenets_fer_au import _fer_path, _warp_module

    rng = np.random.default_rng(0)
    # a smooth image (bilinear sampling of noise differs more between libraries than of a face)
    rgb = cv2.GaussianBlur(rng.integers(0, 255, (112, 112, 3), dtype=np.uint8), (0, 0), 3)
    meta = json.loads(_fer_path().with_suffix(".json").read_text())
    spec = CropSpec.from_metadata(meta, size=48, color="gray")
    m = umeyama(fp.crop_template(112), np.asarray(spec.template) * 48)
    want = cv2.warpAffine(cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY).astype(np.float32), m, (48, 48),
                          flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    x = torch.from_numpy(((rgb.astype(np.float32) / 255 - 0.5) / 0.5).transpose(2, 0, 1)[None].copy())
    with torch.no_grad():
        got = (_warp_module()(x)[0, 0].numpy() * 0.5 + 0.5) * 255
    assert np.abs(got - want)[2:-2, 2:-2].max() < 1.5  # grey levels; cv2 rounds its weights to 1/32
    assert np.abs(got - want).mean() < 0.3


def test_predictor_reads_the_smile_the_teacher_reads():
    pytest.importorskip("onnxruntime")
    from conftest import teacher_smile_crops

    crops, au12 = teacher_smile_crops()
    p = fp.load_au_predictor("facegraph/au_fer_ridge", backend="onnx-cpu")
    assert not p.person_norm and p.get_au_names() == fp.AU_NAMES
    got = p.predict_batch(crops)["au_intensities"][:, fp.AU_NAMES.index("AU12")]
    # OpenFace reads no smile in the first frames and a broad one later; the model follows it
    assert np.corrcoef(got, au12)[0, 1] > 0.8, (got, au12)
