"""Face ID with landmark heatmap channels: heatmaps, flip swap, joint transforms, first-conv widening, margin heads,
verification metrics, the dlib extractor, and a few training batches through to the export and ``embed``."""

from __future__ import annotations

import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from conftest import shared_file  # noqa: E402
from facegraph.nodes.face import _heatmaps as hm  # noqa: E402
from facegraph.nodes.face._headpose import MODEL_68_MM  # noqa: E402


def _face68(size: int = 112) -> np.ndarray:
    """A frontal iBUG-68 face filling an S×S crop, as [1,68,2] pixels."""
    p = MODEL_68_MM[:, :2]
    p = (p - p.mean(0)) / np.ptp(p[:, 0]) * 0.7 * size + size / 2
    return p[None].astype(np.float32)


# -- heatmaps ------------------------------------------------------------------------------------------------------
def test_each_point_heatmap_peaks_at_its_landmark():
    pts = np.array([[[10.0, 20.0], [30.4, 5.6]]], np.float32)
    maps = hm.heatmaps(pts, None, 40, {"scheme": "all", "points": 2, "sigma": 1.5})
    assert maps.shape == (1, 2, 40, 40) and maps.dtype == np.float32
    for k, (x, y) in enumerate(pts[0]):
        row, col = np.unravel_index(maps[0, k].argmax(), (40, 40))
        assert (col, row) == (round(x), round(y))
    assert maps[0, 0, 20, 10] == pytest.approx(1.0)
    assert maps[0, 0, 20, 13] == pytest.approx(math.exp(-9 / (2 * 1.5**2)), rel=1e-5)


def test_grouped_heatmaps_cover_their_group_only():
    pts = _face68()
    maps = hm.heatmaps(pts, None, 112, {"scheme": "groups6", "sigma": 2.0})
    assert maps.shape == (1, 6, 112, 112)
    for g, members in enumerate(hm.GROUPS_68):
        for i in range(68):
            x, y = np.round(pts[0, i]).astype(int)
            value = maps[0, g, y, x]
            if i in members:
                assert value > 0.85, (g, i)
            elif np.min(np.hypot(*(pts[0, list(members)] - pts[0, i]).T)) > 8:
                assert value < 1e-3, (g, i)


def test_mask_channel_and_failed_landmarks():
    pts = np.repeat(_face68(), 2, 0)
    maps = hm.heatmaps(pts, np.array([True, False]), 112, {"scheme": "groups6", "sigma": 2.0, "mask": True})
    assert maps.shape == (2, 7, 112, 112)
    assert (maps[0, 6] == 1).all() and (maps[1] == 0).all()
    assert hm.channels({"scheme": "groups6", "mask": True}) == 7 and hm.channels(None) == 0


def test_facemesh_points_map_to_the_same_groups():
    mesh = np.zeros((1, 468, 3), np.float32)
    from facegraph.nodes.face._facemesh import IBUG68_FROM_MESH

    mesh[0, list(IBUG68_FROM_MESH), :2] = _face68()[0]
    a = hm.heatmaps(mesh, None, 112, hm.DEFAULT_SPEC)
    b = hm.heatmaps(_face68(), None, 112, hm.DEFAULT_SPEC)
    np.testing.assert_allclose(a, b)


def test_resized_input_scales_the_points():
    maps = hm.heatmaps(np.array([[[56.0, 28.0]]], np.float32), None, 56, {"scheme": "all", "points": 1, "sigma": 1},
                       source_size=112)
    row, col = np.unravel_index(maps[0, 0].argmax(), (56, 56))
    assert (col, row) == (28, 14)


# -- the flip swap -------------------------------------------------------------------------------------------------
def test_flip_of_points_relabels_left_and_right():
    pts = _face68()
    flipped = hm.flip_points(pts, 112)
    # the flipped face's left eye is where the original right eye was, mirrored
    np.testing.assert_allclose(flipped[0, 36:42, 0].mean(), 111 - pts[0, 42:48, 0].mean(), atol=1e-4)
    assert (np.sort(hm.FLIP_68) == np.arange(68)).all() and (hm.FLIP_68[hm.FLIP_68] == np.arange(68)).all()
    np.testing.assert_allclose(hm.flip_points(flipped, 112), pts, atol=1e-4)


def test_flipping_maps_equals_maps_of_flipped_points():
    from facegraph.nodes.training.faceid import JointTransform, flip_channels

    spec = {"scheme": "groups6", "sigma": 2.0, "mask": True}
    pts = _face68() + np.array([4.0, 0.0], np.float32)  # off-centre, so a flip without the swap would show
    maps = hm.heatmaps(pts, None, 112, spec)
    x = torch.cat([torch.zeros(1, 3, 112, 112), torch.from_numpy(maps)], 1)
    jt = JointTransform(flip_channels(spec, 68), mask_channel=True)
    identity = torch.tensor([[[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]])
    out = jt.apply(x, identity, torch.tensor([True]))[0, 3:].numpy()
    want = hm.heatmaps(hm.flip_points(pts, 112), None, 112, spec)[0]
    np.testing.assert_allclose(out, want, atol=2e-3)
    assert flip_channels(spec, 68) == [1, 0, 2, 4, 3, 5, 6]


def test_joint_transform_moves_heatmap_peaks_with_the_landmarks():
    from facegraph.nodes.training.faceid import JointTransform, transform_points

    pts = np.array([[40.0, 50.0], [70.0, 30.0]], np.float32)
    maps = hm.heatmaps(pts[None], None, 112, {"scheme": "all", "points": 2, "sigma": 2.0})
    x = torch.cat([torch.zeros(1, 3, 112, 112), torch.from_numpy(maps)], 1)
    a = math.radians(8)
    theta = torch.tensor([[[math.cos(a) / 1.05, -math.sin(a) / 1.05, 0.05],
                           [math.sin(a) / 1.05, math.cos(a) / 1.05, -0.03]]])
    out = JointTransform(None).apply(x, theta, torch.tensor([False]))[0, 3:].numpy()
    moved = transform_points(pts, theta[0].numpy(), False, 112)
    for k in range(2):
        row, col = np.unravel_index(out[k].argmax(), (112, 112))
        assert abs(col - moved[k, 0]) <= 1 and abs(row - moved[k, 1]) <= 1


# -- first-conv widening -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("backbone", ["resnet18", "iresnet18"])
def test_widened_first_conv_keeps_rgb_filters_and_adds_their_mean(backbone):
    from facegraph.nodes.nets.faceid import FaceIDConfig, build_backbone, widen_first_conv
    from torch import nn

    conv = nn.Conv2d(3, 8, 3, bias=True)
    wide = widen_first_conv(conv, 7)
    assert wide.in_channels == 10
    assert torch.equal(wide.weight[:, :3], conv.weight) and torch.equal(wide.bias, conv.bias)
    mean = conv.weight.mean(1)
    for c in range(3, 10):
        torch.testing.assert_close(wide.weight[:, c], mean)
    net = build_backbone(FaceIDConfig(backbone=backbone, in_channels=10, input_size=32, width=0.125, embedding=16))
    first = net.conv1
    assert first.in_channels == 10
    torch.testing.assert_close(first.weight[:, 9], first.weight[:, :3].mean(1))
    net.eval()
    assert net(torch.zeros(2, 10, 32, 32)).shape == (2, 16)


# -- margin heads --------------------------------------------------------------------------------------------------
def _head_case(cls, **kw):
    head = cls(2, 3, s=10.0, **kw)
    with torch.no_grad():
        head.weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]]))
    emb = torch.tensor([[math.cos(0.3), math.sin(0.3)]])  # 0.3 rad from class 0
    return head, emb


def test_arcface_logits_by_hand():
    from facegraph.nodes.nets.heads import ArcFace

    head, emb = _head_case(ArcFace, m=0.5)
    logits = head(emb, torch.tensor([0]))[0]
    want = [10 * math.cos(0.3 + 0.5), 10 * math.cos(math.pi / 2 - 0.3), 10 * math.cos(math.pi - 0.3)]
    torch.testing.assert_close(logits, torch.tensor(want), atol=1e-5, rtol=0)
    torch.testing.assert_close(head(emb)[0], torch.tensor([10 * math.cos(0.3), want[1], want[2]]), atol=1e-5, rtol=0)


def test_cosface_logits_by_hand():
    from facegraph.nodes.nets.heads import CosFace

    head, emb = _head_case(CosFace, m=0.4)
    logits = head(emb, torch.tensor([1]))[0]
    want = [10 * math.cos(0.3), 10 * (math.cos(math.pi / 2 - 0.3) - 0.4), 10 * math.cos(math.pi - 0.3)]
    torch.testing.assert_close(logits, torch.tensor(want), atol=1e-5, rtol=0)


# -- verification metrics ------------------------------------------------------------------------------------------
def test_verification_metrics_on_a_constructed_case():
    from facegraph.nodes.training.verify import pair_scores, rank1, rank1_gallery, roc_auc, tar_at_far, yaw_binned

    # 4 images, people A A B B; scores chosen so that genuine pairs (0,1)=0.9, (2,3)=0.2 and
    # impostors (0,2)=0.5, (0,3)=0.1, (1,2)=0.3, (1,3)=0.0: P(genuine > impostor) = (4 + 2) / 8
    scores = np.array([0.9, 0.5, 0.1, 0.3, 0.0, 0.2])
    genuine = np.array([True, False, False, False, False, True])
    assert roc_auc(scores, genuine) == pytest.approx(6 / 8)
    tar, threshold = tar_at_far(scores, genuine, 1e-3)
    assert threshold == 0.5 and tar == 0.5
    vec = np.eye(3)[[0, 0, 1, 2]].astype(np.float32)  # A A alike; B's two images orthogonal
    _s, g = pair_scores(vec, np.array([0, 0, 1, 1]))
    assert g.tolist() == [True, False, False, False, False, True]
    assert rank1(vec, np.array([0, 0, 1, 1])) == 0.5
    assert rank1_gallery(vec[:1], np.array([0]), vec[1:], np.array([0, 1, 1])) == 1.0
    bins = yaw_binned(vec, np.array([0, 0, 1, 1]), np.array([5.0, -10.0, 20.0, 50.0]))
    assert [b["images"] for b in bins] == [2, 1, 0, 1]
    # pairs by their larger |yaw|: 0-15° holds only A's pair (no impostor: no AUC), > 45° B's pair and two impostors
    assert (bins[0]["genuine_pairs"], bins[0]["impostor_pairs"]) == (1, 0) and "roc_auc" not in bins[0]
    assert (bins[3]["genuine_pairs"], bins[3]["impostor_pairs"]) == (1, 2) and bins[3]["roc_auc"] == 0.5
    assert bins[0]["rank1"] == 1.0 and bins[3]["rank1"] == 0.0 and "rank1" not in bins[2]

def test_dlib_extractor_gives_68_points_when_installed():
    import importlib.util

    if not all(importlib.util.find_spec(n) for n in ("dlib", "face_recognition_models")):
        pytest.skip("needs the [dlib] extra (pip install 'facegraph[dlib]')")
    from facegraph.nodes.face._crop_landmarks import DlibOnCrops

    person = shared_file("data", "identities", "glint24", "Barack_Obama", "0.png")
    import cv2

    pts, ok, _ = DlibOnCrops()(cv2.imread(str(person))[None])
    assert pts.shape == (1, 68, 2) and ok.all()
    assert hm.heatmaps(pts, ok, 112, hm.DEFAULT_SPEC).shape == (1, 6, 112, 112)
    # the eyes land near the ArcFace template's eye points
    assert abs(pts[0, 36:42, 0].mean() - 38.3) < 8 and abs(pts[0, 42:48, 0].mean() - 73.5) < 8
