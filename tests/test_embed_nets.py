"""The torch definitions: iResNet sizes as in arcface_torch, margin heads, heatmap-channel face ID."""

from __future__ import annotations

import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from facegraph.nodes.nets.heads import ArcFace, CosFace, face_id, landmark_heatmaps  # noqa: E402
from facegraph.nodes.nets.iresnet import iresnet  # noqa: E402


@pytest.mark.parametrize(("depth", "params"), [("r50", 43_590_848), ("r100", 65_156_160)])
def test_iresnet_parameter_counts_match_arcface_torch(depth, params):
    with torch.device("meta"):  # shapes only: no memory, no slow initialisation
        net = iresnet(depth)
    assert sum(p.numel() for p in net.parameters()) == params
    keys = net.state_dict().keys()
    assert {"conv1.weight", "layer1.0.downsample.0.weight", "layer4.2.bn3.running_var", "fc.weight",
            "features.weight"} <= set(keys)
    assert net.fc.weight.shape == (512, 512 * 7 * 7)


def test_iresnet_in_channels_and_widths():
    net = iresnet((1, 1, 1, 1), widths=(8, 8, 16, 16), num_features=10, in_channels=5, input_size=64).eval()
    with torch.no_grad():
        assert net(torch.zeros(3, 5, 64, 64)).shape == (3, 10)
    with pytest.raises(ValueError):
        iresnet("r18", input_size=100)


def test_arcface_and_cosface_margins():
    torch.manual_seed(0)
    emb = torch.randn(4, 8)
    labels = torch.tensor([0, 2, 1, 2])
    for head, target in ((ArcFace(8, 3, s=10.0, m=0.3), lambda c: math.cos(math.acos(c) + 0.3)),
                         (CosFace(8, 3, s=10.0, m=0.3), lambda c: c - 0.3)):
        cos = head.cosine(emb).detach()
        logits = head(emb, labels)
        for i, y in enumerate(labels.tolist()):
            c = float(cos[i, y])
            expected = target(c) if not isinstance(head, ArcFace) or c > head.theta else c - head.sinmm
            assert float(logits[i, y].detach()) == pytest.approx(10.0 * expected, abs=1e-4)
            others = [k for k in range(3) if k != y]
            np.testing.assert_allclose(logits[i, others].detach(), 10.0 * cos[i, others], atol=1e-5)
        torch.nn.functional.cross_entropy(logits, labels).backward()
        assert head.weight.grad is not None


def test_heatmaps_peak_at_the_points():
    pts = torch.tensor([[[10.0, 20.0], [50.0, 5.0]]])
    maps = landmark_heatmaps(pts, size=64, sigma=2.0)
    assert maps.shape == (1, 2, 64, 64)
    assert divmod(int(maps[0, 0].argmax()), 64) == (20, 10)
    assert divmod(int(maps[0, 1].argmax()), 64) == (5, 50)
    assert float(maps.max()) == pytest.approx(1.0)


def test_face_id_with_landmark_channels():
    torch.manual_seed(0)
    model = face_id((1, 1, 1, 1), landmarks=5, num_classes=7, head="cosface", widths=(8, 8, 16, 16),
                    num_features=16)
    images = torch.randn(2, 3, 112, 112)
    pts = torch.rand(2, 5, 2) * 112
    assert model(images, pts).shape == (2, 16)
    assert model(images, pts, labels=torch.tensor([1, 6])).shape == (2, 7)
    with pytest.raises(ValueError, match="needs 5 landmarks"):
        model(images)
