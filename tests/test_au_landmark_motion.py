"""benchmarks/au_landmark_motion.py and the measurement graph benchmarks/au_openface_nn.yaml (issue 15)."""

from __future__ import annotations

import sys

import numpy as np
import pytest
import yaml
from conftest import REPO, shared_file

from facegraph import Graph

sys.path.insert(0, str(REPO / "benchmarks"))


def test_nn_graph_feeds_the_net_landmarks_to_the_openface_backend():
    path = REPO / "benchmarks" / "au_openface_nn.yaml"
    Graph.load(path).check()
    au = yaml.safe_load(path.read_text())["nodes"]["au"]
    assert au["params"]["backend"] == "openface"
    assert au["inputs"]["landmarks"] == "lm.landmarks68"


def test_motion_report_tells_a_frozen_shape_from_a_moving_one():
    csv = shared_file("data", "openface_0.2", "pyfeat_single_face.csv")
    shared_file("models", "openface_2.2", "AU_predictors")
    from au_agreement import read_csv
    from au_landmark_motion import motion_report
    from au_stages import MODELS
    from facegraph.nodes.face import _openface_au as oa

    pdm = oa.OpenFaceModels(MODELS, static=True).pdm
    ref = read_csv(csv)
    same = motion_report(ref, ref, pdm)
    assert same["err_px"] == pytest.approx(0.0, abs=1e-9)
    assert same["shape_motion_r"] == pytest.approx(1.0)
    assert same["pdm_r"] > 0.95
    # each frame's points: its own centroid + the video's mean shape + 0.5 px noise (a net that learnt the person)
    frozen = {k: v.copy() for k, v in ref.items()}
    xs = np.stack([ref[f"x_{i}"] for i in range(68)], 1)
    ys = np.stack([ref[f"y_{i}"] for i in range(68)], 1)
    rng = np.random.default_rng(0)
    for pts, axis in ((xs, "x"), (ys, "y")):
        shape = (pts - pts.mean(1, keepdims=True)).mean(0)
        moved = pts.mean(1, keepdims=True) + shape + rng.normal(0, 0.5, pts.shape)
        for i in range(68):
            frozen[f"{axis}_{i}"] = moved[:, i]
    still = motion_report(frozen, ref, pdm)
    assert still["faces"] == same["faces"]
    assert abs(still["shape_motion_r"]) < 0.3
