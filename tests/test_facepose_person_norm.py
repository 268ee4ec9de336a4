"""The person-normalised AU net: features − the person's reference in the forward pass, the running reference
per track (reset on a new one), the two-file ONNX export against torch, and a few real steps that lower the loss."""

from __future__ import annotations

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("h5py")
pytest.importorskip("onnxruntime")
torch.set_num_threads(1)  # tiny nets: a second thread only waits on a busy machine (30× slower here under load)

from facegraph.nodes.models import facepose as fp  # noqa: E402
from facegraph.nodes.models.person_reference import (  # noqa: E402
    RunningReference,
    TrackReferences,
    causal_references,
    references_by_group,
)
from facegraph.nodes.nets.facepose import AUPredictionNet  # noqa: E402
from facegraph.nodes.training import h5data  # noqa: E402
from facegraph.nodes.training.facepose import group_means  # noqa: E402
from test_facepose_training import _fit, tiny  # noqa: E402, F401 - the shared-video teacher file fixture

from facegraph import ModelError  # noqa: E402


def _net(with_frame=False):
    torch.manual_seed(0)
    net = AUPredictionNet(width_mult=0.25, person_norm=True, with_frame=with_frame).eval()
    for layer in (net.head[1], net.head[4]):  # the trained scale, not the init's 0.01: outputs that differ
        torch.nn.init.normal_(layer.weight, 0.0, 0.1)
    for m in net.modules():  # batch-norm statistics of real activations (at init they shrink to ~1e-8)
        if isinstance(m, torch.nn.BatchNorm2d):
            m.momentum = None
    with torch.no_grad():
        net.train()(torch.randn(4, 3, 64, 64))
    return net.eval()


@pytest.mark.parametrize("with_frame", [False, True])
def test_forward_is_features_minus_reference_and_identical_frames_give_the_reference_free_answer(with_frame):
    net = _net(with_frame)
    x = torch.randn(4, 3, 64, 64)  # any size: the backbone ends in a global mean
    with torch.no_grad():
        f = net.features(x)
        assert f.shape == (4, net.num_features) and net.head[1].in_features == net.num_features * (1 + with_frame)
        ref = f.mean(0)
        out = net(x, ref)
        assert out.shape == (4, 17) and 0 <= out.min() and out.max() <= 5
        # the head's input is the change from the reference (and the frame, with_frame)
        diff = f - ref
        want = 5 * torch.sigmoid(net.head(torch.cat([diff, f], 1) if with_frame else diff))
        torch.testing.assert_close(out, want)
        assert not torch.allclose(out, net(x))  # the reference matters
        # identical frames: the reference is the frame itself, the answer the reference-free one (no change)
        same = x[:1].repeat(3, 1, 1, 1)
        fs = net.features(same)
        got = net(same, fs.mean(0))
        free = 5 * torch.sigmoid(net.head(torch.cat([torch.zeros_like(fs), fs], 1) if with_frame
                                          else torch.zeros_like(fs)))
        torch.testing.assert_close(got, free, atol=1e-3, rtol=0)  # float rounding of the mean, × big weights
        torch.testing.assert_close(net(same), free, atol=1e-3, rtol=0)  # no reference: the frame's own
        if not with_frame:  # without the frame's features every person's usual face reads the same
            torch.testing.assert_close(got, net(x[1:2], net.features(x[1:2])).repeat(3, 1), atol=1e-3, rtol=0)
    with pytest.raises(ValueError, match="needs the person's reference"):
        net.from_features(f)


def test_plain_net_is_unchanged_by_the_option():
    plain = AUPredictionNet(width_mult=0.25)
    assert sum(p.numel() for p in plain.parameters()) == sum(p.numel() for p in _net().parameters())
    assert not plain.person_norm and plain.head[1].in_features == plain.num_features


def test_group_means_are_each_videos_mean():
    f = torch.arange(12.0).view(6, 2)
    group = torch.tensor([0, 0, 0, 1, 1, 1])
    torch.testing.assert_close(group_means(f, group),
                               torch.tensor([[2.0, 3.0]] * 3 + [[8.0, 9.0]] * 3))


def test_running_reference_is_causal_and_resets_on_a_new_track():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(5, 3)), rng.normal(size=(2, 3))
    ref = RunningReference()
    got = np.stack([ref.update(x) for x in a])
    np.testing.assert_allclose(got, causal_references(a), rtol=1e-5)
    np.testing.assert_allclose(got[-1], a.mean(0), rtol=1e-5)
    np.testing.assert_allclose(references_by_group(np.concatenate([a, b]), np.array([1] * 5 + [2] * 2), "all"),
                               np.concatenate([np.repeat(a.mean(0, keepdims=True), 5, 0),
                                               np.repeat(b.mean(0, keepdims=True), 2, 0)]), rtol=1e-5)
    tracks = TrackReferences(forget_after=2)
    tracks.update(np.array([7]), a[:1])
    np.testing.assert_allclose(tracks.update(np.array([7]), a[1:2])[0], a[:2].mean(0), rtol=1e-5)
    # a new track id starts from its own frame; the old one keeps its history
    both = tracks.update(np.array([8, 7]), np.stack([b[0], a[2]]))
    np.testing.assert_allclose(both[0], b[0], rtol=1e-5)
    np.testing.assert_allclose(both[1], a[:3].mean(0), rtol=1e-5)
    for _ in range(3):  # track 7 gone for longer than forget_after: it starts again when its id comes back
        tracks.update(np.array([8]), b[1:2])
    np.testing.assert_allclose(tracks.update(np.array([7]), a[3:4])[0], a[3], rtol=1e-5)


@pytest.fixture(scope="module")
def pn_run(tiny, tmp_path_factory):  # noqa: F811 - the imported fixture
    """A person-normalised AU net trained a few real steps on a shared video, exported as a run folder."""
    from facegraph.nodes.training.facepose import AUTask
    from facegraph.nodes.training.facepose_export import export_all

    d = h5data.read(tiny)
    tr, va = h5data.split_by_video(d.video_names, ["ytf_1461_01_021_noam_chomsky"])
    train, val = d.subset(tr), d.subset(va)
    train = train.subset(np.arange(8))  # one video, its 8 frames: every step sees the same batch
    task = AUTask(train, val, width_mult=0.25, augment=False, person_norm=True, frames_per_video=8)
    task.monitor, task.mode = "val_mae", "min"
    out = tmp_path_factory.mktemp("pn")
    result = _fit(task, out, epochs=6)
    paths = export_all(result.model, out, task, ["onnx"], data=str(tiny), command="test", seconds=1.0,
                       best=result.best_metrics, weights="checkpoint_final.pt")
    return task, result, out, paths


def test_a_few_steps_lower_the_person_normalised_loss(pn_run):
    task, result, _, _ = pn_run
    assert task.steps_per_epoch(8) == 1 and task.model_config()["person_norm"] is True
    losses = [row["train_loss"] for row in result.history]
    assert losses[-1] < losses[0], losses
    assert "val_r_AU12" in result.history[-1]


def test_two_file_onnx_export_agrees_with_torch_and_the_predictor_keeps_its_api(pn_run, tiny):  # noqa: F811
    task, result, out, paths = pn_run
    assert [p.name for p in paths] == ["au_net.onnx", "au_head.onnx", "au_net.json"]
    meta = json.loads((out / "au_net.json").read_text())
    assert meta["outputs"] == ["features"] and meta["person_norm"]["head"] == "au_head.onnx"
    assert meta["onnx_max_abs_diff"] <= 1e-4 and meta["onnx_head_max_abs_diff"] <= 1e-4
    p = fp.load_au_predictor(out, backend="onnx-cpu")
    assert p.person_norm and p.backend == "onnx-cpu"
    crops = task.val.images[:5][..., ::-1]  # BGR
    f = p.features_batch(crops)
    refs = np.stack([r for r in (lambda ref: [ref.update(x) for x in f])(p.new_reference())])
    got = p.predict_features(f, refs)["au_intensities"]
    model = result.model.cpu().eval()
    with torch.no_grad():
        x = torch.from_numpy(p.preprocess(crops))
        tf = model.features(x)
        want = model.from_features(tf, torch.from_numpy(causal_references(tf.numpy()))).numpy()
    assert np.abs(f - tf.numpy()).max() <= 1e-4 and np.abs(got - want).max() <= 1e-4
    # predict_batch: the batch as one person; predict: the frame against itself
    batch = p.predict_batch(crops)
    np.testing.assert_allclose(batch["au_intensities"], p.predict_features(f, f.mean(0))["au_intensities"], atol=1e-6)
    assert set(p.predict(crops[0])["au_dict"]) == set(fp.AU_NAMES)
    # the checkpoint (torch backend) answers the same
    t = fp.load_au_predictor(out, backend="torch")
    assert t.backend == "torch" and t.person_norm
    np.testing.assert_allclose(t.predict_features(t.features_batch(crops), refs)["au_intensities"], got, atol=1e-4)
    # a person-normalised net without its head says which file is missing
    (out / "au_head.onnx").rename(out / "moved.onnx")
    try:
        with pytest.raises(ModelError, match=r"au_head\.onnx: no such file"):
            fp.load_au_predictor(out, backend="onnx-cpu").predict_batch(crops)
    finally:
        (out / "moved.onnx").rename(out / "au_head.onnx")


@pytest.fixture(scope="module")
def pn_export(pn_run, tmp_path_factory):
    """An untrained net with outputs that move with the reference, exported the same way (ONNX pair + metadata)."""
    from facegraph.nodes.training.facepose_export import export_all

    task = pn_run[0]
    out = tmp_path_factory.mktemp("pn_wide")
    export_all(_net(), out, task, ["onnx"], data="test", command="test", seconds=0.0, best={})
    return task, out


def test_au_node_keeps_one_reference_per_track(pn_export, tmp_path):
    from facegraph.nodes.face.facenets import AUNN

    from facegraph import RunContext
    from facegraph.testing import run_node_frames

    task, out = pn_export
    crops = task.val.images[:4][..., ::-1]
    node = AUNN(model=str(out))
    frames = [{"crops": {"images": crops[i:i + 1], "matrices": np.eye(2, 3, dtype=np.float32)[None],
                         "track_id": np.array([tid], np.int32)}}
              for i, tid in enumerate([3, 3, 3, 9])]
    ctx = RunContext(output_dir=tmp_path)
    got = np.concatenate([o["aus"]["intensity"] for o in run_node_frames(node, frames, context=ctx)])
    p = fp.load_au_predictor(out)
    f = p.features_batch(crops)
    want3 = p.predict_features(f[:3], causal_references(f[:3]))["au_intensities"]
    np.testing.assert_allclose(got[:3], want3, atol=1e-5)
    # track 9 is new: its reference is its own frame (the answer of predict on that crop alone)
    np.testing.assert_allclose(got[3], p.predict(crops[3])["au_intensities"], atol=1e-5)
    assert np.abs(got[3] - p.predict_features(f[3:], f[:4].mean(0))["au_intensities"][0]).max() > 1e-2


def test_eval_au_follows_each_video_in_order(pn_export, tiny, tmp_path, capsys):  # noqa: F811
    """facegraph eval au on a person-normalised net: the reference per video, causal or from all its frames."""
    from facegraph.cli import main as cli

    task, out = pn_export
    scores = {}
    for mode in ("causal", "all"):
        path = tmp_path / f"{mode}.json"
        assert cli(["eval", "au", "--model", str(out), "--data", str(tiny), "--reference", mode, "--floor", "off",
                    "--json", str(path)]) == 0
        assert "person-normalised" in capsys.readouterr().out
        report = json.loads(path.read_text())
        assert report["reference"] == mode and report["faces"] == len(task.val)
        scores[mode] = report["scores"]
    # the held-out video's rows in order, through the predictor, give the same AU12 r as the command's
    p = fp.load_au_predictor(out)
    f = p.features_batch(task.val.images[..., ::-1])
    for mode in ("causal", "all"):
        aus = p.predict_features(f, references_by_group(f, task.val.video_names, mode))["au_intensities"]
        r = np.corrcoef(aus[:, 8], task.val.au_intensities[:, 8])[0, 1]
        assert abs(r - scores[mode]["val_r_AU12"]) < 1e-4
    assert scores["causal"]["val_r_AU12"] != scores["all"]["val_r_AU12"]
    assert "within_video_mean_r" in scores["causal"]
