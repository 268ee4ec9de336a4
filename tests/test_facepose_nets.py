"""The landmark/pose and AU nets: shapes, parameter counts, and the losses against hand-computed values."""

from __future__ import annotations

import math

import pytest

torch = pytest.importorskip("torch")

from facegraph.nodes.nets.facepose import (  # noqa: E402
    AUPredictionLoss,
    AUPredictionNet,
    LandmarkPoseLoss,
    UnifiedLandmarkPoseNet,
    WingLoss,
    ccc,
    count_parameters,
)


def test_parameter_counts_at_the_designs_width():
    # the design quotes ≈ 3.8 M and ≈ 7.4 M; these are the counts of the nets as written here
    assert count_parameters(UnifiedLandmarkPoseNet(width_mult=1.0)) == 3_615_664
    assert count_parameters(AUPredictionNet(width_mult=1.0)) == 4_672_141
    assert count_parameters(UnifiedLandmarkPoseNet(width_mult=0.5)) < 2_100_000


def test_output_shapes_and_ranges():
    x = torch.randn(2, 3, 112, 112)
    lm, gp, lp = UnifiedLandmarkPoseNet(width_mult=0.25).eval()(x)
    assert lm.shape == (2, 68, 2) and gp.shape == (2, 6) and lp.shape == (2, 34)
    with torch.no_grad():
        au = AUPredictionNet(width_mult=0.25).eval()(x)
    assert au.shape == (2, 17) and float(au.min()) >= 0.0 and float(au.max()) <= 5.0
    lm64, _, _ = UnifiedLandmarkPoseNet(width_mult=0.25, image_size=64).eval()(torch.randn(1, 3, 64, 64))
    assert lm64.shape == (1, 68, 2)


def test_wing_loss_by_hand():
    # |x| = 1 < w: 10·ln(1 + 1/2); |x| = 20 ≥ w: 20 − C with C = 10 − 10·ln(1 + 10/2)
    got = WingLoss(w=10, epsilon=2)(torch.tensor([1.0, -20.0]), torch.zeros(2))
    want = (10 * math.log(1.5) + 20 - (10 - 10 * math.log(6.0))) / 2
    assert float(got) == pytest.approx(want, rel=1e-6)
    assert float(got) == pytest.approx(15.986123, rel=1e-6)
    assert float(WingLoss()(torch.zeros(3), torch.zeros(3))) == 0.0


def test_ccc_by_hand():
    # μ 2 and 4, variances 2/3 and 8/3, covariance 4/3: 2·(4/3) / (2/3 + 8/3 + 4) = 8/22
    got = ccc(torch.tensor([[1.0], [2.0], [3.0]]), torch.tensor([[2.0], [4.0], [6.0]]))
    assert float(got[0]) == pytest.approx(8 / 22, rel=1e-6)
    same = torch.tensor([[0.5, 1.0], [1.5, 3.0], [2.0, 0.0]])
    assert torch.allclose(ccc(same, same), torch.ones(2))


def test_combined_losses_weigh_their_parts():
    pred = (torch.zeros(1, 68, 2), torch.tensor([[0.45, 0, 0, 0, 56, 56.0]]), torch.zeros(1, 34))
    target = (torch.ones(1, 68, 2), torch.tensor([[0.60, 0, 0, 0, 56, 56.0]]), torch.full((1, 34), 2.0))
    total, parts = LandmarkPoseLoss(lm_weight=1.0, gp_weight=0.1, lp_weight=0.01)(pred, target)
    wing = 10 * math.log(1.5)
    gp = (0.15 / 0.15) ** 2 / 6  # scale off by one spread, the rest exact
    assert parts["wing"] == pytest.approx(wing, rel=1e-5)
    assert parts["global_mse"] == pytest.approx(gp, rel=1e-5)
    assert float(total) == pytest.approx(wing + 0.1 * gp + 0.01 * 2.0, rel=1e-5)
    p = torch.tensor([[1.0, 0.0], [2.0, 1.0], [3.0, 0.0]])
    t = torch.tensor([[2.0, 0.0], [4.0, 1.0], [6.0, 0.0]])
    total, parts = AUPredictionLoss(l1_weight=1.0, ccc_weight=0.5)(p, t)
    l1 = ((0.5 + 1.5 + 2.5) / 3 + 0.0) / 2  # SmoothL1: |d| − 0.5 above 1, 0.5·d² below
    assert parts["smooth_l1"] == pytest.approx(l1, rel=1e-5)
    assert parts["ccc"] == pytest.approx((8 / 22 + 1.0) / 2, rel=1e-5)
    weighted, _ = AUPredictionLoss(au_weights=torch.tensor([1.0, 0.0]))(p, t)
    assert float(weighted) == pytest.approx(1.5 + 0.5 * (1 - 8 / 22), rel=1e-5)
