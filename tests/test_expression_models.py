"""The expression transformer and reconstruction model: shapes per design configuration, the loss schedule,
the freeze option, checkpoints of the joint model and of each part, ONNX parity, enrollment."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from facegraph.nodes.nets.reconstruction import (  # noqa: E402
    PRESETS,
    ExpressionAutoencoder,
    ExpressionTransformer,
    ReconstructionConfig,
    ReconstructionModel,
    TransformerConfig,
    load_checkpoint,
    preset_configs,
    save_checkpoint,
)
from facegraph.nodes.training.expression import (  # noqa: E402
    ClipSet,
    ExpressionTask,
    LossSchedule,
    diversity_loss,
    enroll,
    freeze_transformer,
)


def tiny(tokens: int = 3, size: int = 16, subjects: int = 5) -> tuple[TransformerConfig, ReconstructionConfig]:
    t = TransformerConfig(image_size=size, patch=8, embed_dim=16, heads=2, layers=1, ff=32, tokens=tokens,
                          subjects=subjects)
    r = ReconstructionConfig(image_size=size, patch=8, embed_dim=16, token_dim=16, tokens=tokens, heads=2, ff=32,
                             cross_layers=1, self_layers=1)
    return t, r


def clip_set(n_clips: int = 6, length: int = 4, size: int = 16, subjects: int = 3, seed: int = 0) -> ClipSet:
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, (n_clips * length, size, size, 3), dtype=np.uint8)
    clips = [np.arange(i * length, (i + 1) * length) for i in range(n_clips)]
    return ClipSet(images, clips, np.arange(n_clips) % subjects, [f"s{i}" for i in range(subjects)])


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_every_preset_has_the_designs_shape(name):
    t, r = preset_configs(name)
    assert (t.heads, t.layers, r.cross_layers, r.self_layers) == (4, 4, 2, 2)
    assert t.subjects == 501 and r.token_dim == t.embed_dim and r.tokens == t.tokens
    if name.startswith("design"):
        assert (t.embed_dim, t.ff, r.embed_dim, r.ff) == (384, 768, 384, 768)
    if name == "design":
        assert t.image_size == 518 and t.patch == 14


@pytest.mark.parametrize("name", ["design224", "cpu112", "cpu64"])
def test_preset_shapes(name):
    torch.manual_seed(0)
    t, r = preset_configs(name)
    model = ExpressionAutoencoder(ExpressionTransformer(t), ReconstructionModel(r)).eval()
    x = torch.rand(2, 3, t.image_size, t.image_size)
    with torch.no_grad():
        tokens, rec = model(x, torch.tensor([0, 500]))
    assert tokens.shape == (2, t.tokens, t.embed_dim)
    assert rec.shape == (2, 3, t.image_size, t.image_size) and 0 <= float(rec.min()) <= float(rec.max()) <= 1


def test_design_518_shapes_with_the_layer_counts():
    torch.manual_seed(0)
    t, r = preset_configs("design")
    enc, dec = ExpressionTransformer(t).eval(), ReconstructionModel(r).eval()
    assert len(enc.encoder.layers) == 4 and len(dec.cross.layers) == 2 and len(dec.mix.layers) == 2
    assert enc.subject_table.num_embeddings == 501 and enc.delta_pos.shape == (1, 37 * 37, 384)
    with torch.no_grad():
        s = enc.subject(torch.tensor([3]))
        tokens = enc(torch.rand(1, 3, 518, 518), s)
        assert tokens.shape == (1, 16, 384)
        assert dec(s, tokens).shape == (1, 3, 518, 518)


def test_dinov2_tokenizer_from_a_checkpoint(tmp_path):
    from facegraph.nodes.nets.dinov2 import DinoV2Small

    torch.manual_seed(0)
    vit = DinoV2Small(518)
    state = {k: torch.randn_like(v) * 0.02 for k, v in vit.state_dict().items()}
    state["mask_token"] = torch.zeros(1, 384)  # in the released checkpoint, unused here
    path = tmp_path / "dinov2_vits14_pretrain.pth"
    torch.save(state, path)  # 37×37 positions, resampled to the input below
    t = TransformerConfig(image_size=28, tokenizer="dinov2", dinov2=str(path), patch=14, embed_dim=32, heads=2,
                          layers=1, ff=64, tokens=2, subjects=3)
    enc = ExpressionTransformer(t).eval()
    assert not any(p.requires_grad for p in enc.tokenizer.vit.parameters())  # frozen by default
    assert enc.tokenizer.delta_pos.requires_grad and enc.tokenizer.delta_pos.shape == (1, 4, 384)
    assert torch.equal(enc.tokenizer.vit.blocks[3].ls1.gamma, state["blocks.3.ls1.gamma"])  # its key names
    with torch.no_grad():
        assert enc(torch.rand(2, 3, 28, 28), enc.subject(torch.tensor([0, 1]))).shape == (2, 2, 32)
    torch.save({"nothing": torch.zeros(1)}, tmp_path / "bad.pth")
    with pytest.raises(ValueError, match="not a ViT-S/14 checkpoint"):
        ExpressionTransformer(TransformerConfig(**{**t.__dict__, "dinov2": str(tmp_path / "bad.pth")}))


@pytest.mark.parametrize(("kwargs", "match"), [({"image_size": 20}, "not a multiple of patch"),
                                               ({"embed_dim": 18, "heads": 4}, "not divisible by"),
                                               ({"tokenizer": "vit"}, "unknown tokenizer"),
                                               ({"patch": 1}, "patch must be ≥ 2")])
def test_transformer_rejects_bad_configs(kwargs, match):
    t, _ = tiny()
    with pytest.raises(ValueError, match=match):
        ExpressionTransformer(TransformerConfig(**{**t.__dict__, **kwargs}))


def test_loss_schedule_at_given_steps():
    s = LossSchedule()
    assert s.weights(0) == pytest.approx({"rec": 0.01, "temporal": 0.4, "diversity": 0.3})
    assert s.weights(1500) == pytest.approx({"rec": 0.505, "temporal": 0.25, "diversity": 0.2})
    assert s.weights(3000) == s.weights(10**6) == pytest.approx({"rec": 1.0, "temporal": 0.1, "diversity": 0.1})
    assert LossSchedule(ramp_steps=0).weights(0)["rec"] == 1.0


def test_diversity_loss_punishes_collapse():
    collapsed = torch.zeros(8, 3, 4)
    spread = torch.randn(8, 3, 4) * 3
    assert float(diversity_loss(collapsed)) == pytest.approx(0.99, abs=1e-3)
    assert float(diversity_loss(spread)) < 0.2


def _one_step(task: ExpressionTask, model: torch.nn.Module) -> None:
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    batch = next(task.train_batches(0, 4, torch.Generator().manual_seed(0)))
    loss, logs = task.loss(model, batch, torch.device("cpu"))
    assert set(logs) == {"rec", "temporal", "diversity", "psnr"}
    opt.zero_grad()
    loss.backward()
    opt.step()


def test_freeze_keeps_the_transformer_and_trains_the_rest():
    torch.manual_seed(0)
    t, r = tiny()
    task = ExpressionTask(clip_set(), clip_set(2, seed=1), t, r, freeze_transformer=True)
    model = task.build_model()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    _one_step(task, model)
    after = model.state_dict()
    for k, v in before.items():
        changed = not torch.equal(v, after[k])
        if k.startswith("transformer.") and not k.startswith("transformer.subject_table."):
            assert not changed, k
    assert not torch.equal(before["reconstruction.head.out.weight"], after["reconstruction.head.out.weight"])
    assert not torch.equal(before["transformer.subject_table.weight"], after["transformer.subject_table.weight"])
    # and without the option every part learns
    model2 = ExpressionTask(clip_set(), clip_set(2), t, r).build_model()
    w = model2.transformer.queries.clone()
    _one_step(task, model2)
    assert not torch.equal(w, model2.transformer.queries)


def test_freeze_helper_is_what_the_task_uses():
    t, r = tiny()
    model = ExpressionAutoencoder(ExpressionTransformer(t), ReconstructionModel(r))
    freeze_transformer(model)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert "transformer.subject_table.weight" in trainable and "transformer.queries" not in trainable
    assert all(n in trainable for n, _ in model.reconstruction.named_parameters(prefix="reconstruction"))


def test_batches_pair_neighbouring_frames_of_one_clip():
    t, r = tiny()
    data = clip_set(4, length=5)
    task = ExpressionTask(data, clip_set(1), t, r, flip=False)
    x, ids, _ = next(task.train_batches(0, 4, torch.Generator().manual_seed(3)))
    assert x.shape == (8, 3, 16, 16) and torch.equal(ids[:4], ids[4:])
    flat = torch.from_numpy(data.images).permute(0, 3, 1, 2).float() / 255
    for i in range(4):
        a = int(np.flatnonzero([(flat[j] == x[i]).all() for j in range(len(flat))])[0])
        b = int(np.flatnonzero([(flat[j] == x[i + 4]).all() for j in range(len(flat))])[0])
        assert b == a + 1 and a // 5 == b // 5


def test_part_checkpoints_round_trip(tmp_path):
    torch.manual_seed(0)
    t, r = tiny()
    enc, dec = ExpressionTransformer(t).eval(), ReconstructionModel(r).eval()
    enc2, meta = load_checkpoint(save_checkpoint(enc, tmp_path / "t.pt", {"note": "x"}))
    dec2, meta2 = load_checkpoint(save_checkpoint(dec, tmp_path / "r.pt"))
    assert meta["kind"] == "expression_transformer" and meta["note"] == "x"
    assert meta2["kind"] == "expression_reconstruction"
    x, s = torch.rand(2, 3, 16, 16), enc.subject(torch.tensor([1, 2]))
    with torch.no_grad():
        assert torch.equal(enc(x, s), enc2(x, s))
        tok = enc(x, s)
        assert torch.equal(dec(s, tok), dec2(s, tok))
    torch.save({"kind": "fer"}, tmp_path / "bad.pt")
    with pytest.raises(ValueError, match="not an expression model checkpoint"):
        load_checkpoint(tmp_path / "bad.pt")


def test_onnx_parity_of_both_parts(tmp_path):
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    from facegraph.nodes.nets.reconstruction import export_reconstruction_onnx, export_transformer_onnx

    torch.manual_seed(0)
    t, r = tiny()
    enc, dec = ExpressionTransformer(t).eval(), ReconstructionModel(r).eval()
    p1 = export_transformer_onnx(enc, tmp_path / "t.onnx")
    p2 = export_reconstruction_onnx(dec, tmp_path / "r.onnx")
    assert p1.with_suffix(".json").is_file() and p2.with_suffix(".json").is_file()
    x = np.random.default_rng(0).normal(size=(3, 3, 16, 16)).astype(np.float32)
    with torch.no_grad():
        s = enc.subject(torch.tensor([0, 1, 2]))
        tok = enc(torch.from_numpy(x), s)
        img = dec(s, tok)
    got_tok = ort.InferenceSession(str(p1)).run(None, {"image": x, "subject": s.numpy()})[0]
    got_img = ort.InferenceSession(str(p2)).run(None, {"subject": s.numpy(), "tokens": tok.numpy()})[0]
    np.testing.assert_allclose(got_tok, tok.numpy(), atol=1e-4)
    np.testing.assert_allclose(got_img, img.numpy(), atol=1e-4)


def test_enrollment_moves_only_the_vector_and_fits_better():
    torch.manual_seed(0)
    t, r = tiny()
    enc, dec = ExpressionTransformer(t), ReconstructionModel(r)
    def weights():
        return {**enc.state_dict(), **{f"r.{k}": v for k, v in dec.state_dict().items()}}

    before = {k: v.clone() for k, v in weights().items()}
    x = torch.rand(4, 3, 16, 16)
    start = torch.zeros(16)
    vec = enroll(enc, dec, x, start, steps=30, lr=0.1)
    after = weights()
    assert all(torch.equal(v, after[k]) for k, v in before.items())
    assert all(p.requires_grad for p in enc.parameters())  # handed back as it was

    def err(v):
        mean = torch.tensor(t.mean).view(1, 3, 1, 1)
        std = torch.tensor(t.std).view(1, 3, 1, 1)
        with torch.no_grad():
            s = v[None].expand(4, -1)
            return float(((dec(s, enc((x - mean) / std, s)) - x) ** 2).mean())

    assert err(vec) < err(start)


def test_subject_dropout_feeds_the_transformer_the_mean_subject():
    torch.manual_seed(0)
    t, r = tiny()
    task = ExpressionTask(clip_set(), clip_set(2, seed=1), t, r, subject_dropout=1.0, flip=False)
    model = task.build_model().eval()
    x, ids, _ = next(task.train_batches(0, 4, torch.Generator().manual_seed(0)))
    with torch.no_grad():
        subject = model.transformer.subject(ids)
        all_mean = task.losses(model, x, subject, torch.zeros(len(x), dtype=torch.bool))
        tokens = model.transformer(task.normalise(x), task.mean_subject(model).expand_as(subject))
        assert torch.allclose(all_mean["recon"], model.reconstruction(subject, tokens))
        own = task.losses(model, x, subject, torch.ones(len(x), dtype=torch.bool))
        assert not torch.allclose(own["recon"], all_mean["recon"])
