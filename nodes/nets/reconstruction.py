"""Expression transformer and expression reconstruction model, trained jointly on face clips.

``ExpressionTransformer``: face → K expression tokens. Patch tokens come from a
DINOv2 ViT-S/14 when the user has its weights (``tokenizer="dinov2"``, frozen by
default), else from a small convolutional patch tokenizer trained with the rest
(``tokenizer="conv"``). Learnable *delta* positional embeddings (zero at start) are
added to the tokenizer's own (DINOv2's, or a fixed 2-D sine-cosine table). The
sequence [subject token, K expression queries, patches] goes through an
``nn.TransformerEncoder``; the K query outputs are the expression tokens. The
subject token is a learnable **subject embedding** (an ``nn.Embedding`` row per
training subject, or a vector enrolled for a new person), so identity has its own
channel and the tokens are free to carry what changes: expression.

``ReconstructionModel``: (subject embedding, tokens) → face. One query per output
patch (plus the subject embedding) cross-attends to [subject, tokens] in an
``nn.TransformerDecoder`` (2 layers), an ``nn.TransformerEncoder`` (2 layers) mixes
the patches, and a small upsampling conv head turns the patch grid into the face
(sigmoid, [0, 1] RGB; ``head="linear"`` writes each patch's pixels from its query
instead, as MAE does, which learns far slower on a CPU budget).

The design's sizes are the defaults (embed 384, 4 heads, 4 + 2 + 2 layers, ff 768,
501 subjects, 518 px with DINOv2); :data:`PRESETS` holds the CPU-sized ones.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ._export import export

IMAGENET_MEAN = [0.485, 0.456, 0.406]
IMAGENET_STD = [0.229, 0.224, 0.225]


@dataclass
class TransformerConfig:
    """The expression transformer (the design's sizes by default)."""

    image_size: int = 518
    tokenizer: str = "conv"  # conv (trained jointly) | dinov2 (ViT-S/14 weights from `dinov2`)
    dinov2: str = ""  # path of a DINOv2 ViT-S/14 checkpoint (facebookresearch/dinov2's key names)
    train_dinov2: bool = False  # DINOv2 frozen unless this is set
    patch: int = 14  # DINOv2: 14; conv: a power of two (8, 16)
    embed_dim: int = 384
    heads: int = 4
    layers: int = 4
    ff: int = 768
    tokens: int = 16  # K expression tokens
    subjects: int = 501
    dropout: float = 0.0
    mean: list[float] = field(default_factory=lambda: list(IMAGENET_MEAN))
    std: list[float] = field(default_factory=lambda: list(IMAGENET_STD))


@dataclass
class ReconstructionConfig:
    """The expression reconstruction model (the design's sizes by default)."""

    image_size: int = 518
    patch: int = 14  # output patch side: (image_size / patch)² queries
    embed_dim: int = 384
    token_dim: int = 384  # the expression transformer's embed_dim
    tokens: int = 16
    cross_layers: int = 2
    self_layers: int = 2
    heads: int = 4
    ff: int = 768
    dropout: float = 0.0
    head: str = "conv"  # conv: upsampling convolutions from the patch grid (learns fast); linear: a patch per query
    head_width: int = 64  # conv head: channels after the first upsampling, halved per step (at least 16)


#: named sizes: ``design`` is the issue's; the CPU ones keep its shape (4 + 2 + 2 layers, 4 heads) at smaller widths
PRESETS: dict[str, dict[str, Any]] = {
    "design": {"image_size": 518, "patch": 14, "embed_dim": 384, "ff": 768, "tokens": 16, "subjects": 501},
    "design224": {"image_size": 224, "patch": 14, "embed_dim": 384, "ff": 768, "tokens": 16, "subjects": 501},
    "cpu112": {"image_size": 112, "patch": 8, "embed_dim": 192, "ff": 384, "tokens": 8, "subjects": 501},
    "cpu64": {"image_size": 64, "patch": 8, "embed_dim": 192, "ff": 384, "tokens": 8, "subjects": 501},
}


def preset_configs(name: str, **overrides: Any) -> tuple[TransformerConfig, ReconstructionConfig]:
    """The two configurations of a preset, with ``overrides`` (None values ignored) on top."""
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r} (one of {', '.join(PRESETS)})")
    p = {**PRESETS[name], **{k: v for k, v in overrides.items() if v is not None}}
    t_keys = set(TransformerConfig.__dataclass_fields__)
    tcfg = TransformerConfig(**{k: v for k, v in p.items() if k in t_keys})
    rcfg = ReconstructionConfig(image_size=tcfg.image_size, patch=p.get("out_patch", tcfg.patch),
                                embed_dim=p.get("rec_dim", tcfg.embed_dim), token_dim=tcfg.embed_dim,
                                tokens=tcfg.tokens, heads=tcfg.heads, ff=p.get("rec_ff", tcfg.ff),
                                head=p.get("head", "conv"))
    return tcfg, rcfg


def sincos_2d(side: int, dim: int) -> torch.Tensor:
    """Fixed 2-D sine-cosine positions [1, side², dim] (the base the delta embeddings are added to)."""
    if dim % 4:
        raise ValueError(f"embed dim {dim} must be a multiple of 4 for 2-D sine-cosine positions")
    quarter = dim // 4
    omega = 1.0 / (10000 ** (torch.arange(quarter, dtype=torch.float32) / quarter))
    ys, xs = torch.meshgrid(torch.arange(side, dtype=torch.float32), torch.arange(side, dtype=torch.float32),
                            indexing="ij")
    parts = [f(c.reshape(-1, 1) * omega) for c in (ys, xs) for f in (torch.sin, torch.cos)]
    return torch.cat(parts, dim=1)[None]


def _encoder_stack(dim: int, heads: int, ff: int, layers: int, dropout: float) -> nn.TransformerEncoder:
    layer = nn.TransformerEncoderLayer(dim, heads, ff, dropout, activation="gelu", batch_first=True,
                                       norm_first=True)
    return nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)


class ConvTokenizer(nn.Module):
    """A small conv stem that cuts the face into patch tokens [B, N, dim]: a stride-2 3×3 convolution per
    factor 2 of ``patch``, then one convolution of kernel = stride = what remains (7 for DINOv2's 14)."""

    def __init__(self, patch: int, dim: int) -> None:
        super().__init__()
        if patch < 2:
            raise ValueError(f"conv tokenizer: patch must be ≥ 2, got {patch}")
        halvings, rest = 0, patch
        while rest % 2 == 0 and rest > 1:
            halvings, rest = halvings + 1, rest // 2
        layers: list[nn.Module] = []
        c_in = 3
        for i in range(halvings):
            c_out = max(16, dim // 2 ** (halvings - i))
            layers += [nn.Conv2d(c_in, c_out, 3, 2, 1), nn.GELU()]  # no per-image norm: it would hide brightness
            c_in = c_out
        layers.append(nn.Conv2d(c_in, dim, rest, rest) if rest > 1 else nn.Conv2d(c_in, dim, 1))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).flatten(2).transpose(1, 2)


class DinoTokenizer(nn.Module):
    """DINOv2 ViT-S/14 patch tokens with learnable delta positional embeddings added to DINOv2's own."""

    def __init__(self, image_size: int, weights: str, trainable: bool = False) -> None:
        super().__init__()
        from .dinov2 import DinoV2Small, load_dinov2

        self.vit = DinoV2Small(image_size)
        if weights:
            load_dinov2(self.vit, weights)
        for p in self.vit.parameters():
            p.requires_grad_(trainable)
        self.dim = DinoV2Small.embed_dim
        self.delta_pos = nn.Parameter(torch.zeros(1, self.vit.grid**2, self.dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.vit(x, self.delta_pos)


class ExpressionTransformer(nn.Module):
    """(image [B, 3, S, S] normalised, subject embedding [B, D]) → expression tokens [B, K, D]."""

    def __init__(self, config: TransformerConfig | None = None, **overrides: Any) -> None:
        super().__init__()
        self.config = cfg = config or TransformerConfig(**overrides)
        if cfg.embed_dim % cfg.heads:
            raise ValueError(f"embed_dim {cfg.embed_dim} is not divisible by {cfg.heads} heads")
        if cfg.image_size % cfg.patch:
            raise ValueError(f"image_size {cfg.image_size} is not a multiple of patch {cfg.patch}")
        side = cfg.image_size // cfg.patch
        if cfg.tokenizer == "dinov2":
            if cfg.patch != 14:
                raise ValueError("the DINOv2 tokenizer has 14-pixel patches: set patch 14")
            self.tokenizer: nn.Module = DinoTokenizer(cfg.image_size, cfg.dinov2, cfg.train_dinov2)
            self.project = nn.Linear(self.tokenizer.dim, cfg.embed_dim)
            self.register_buffer("base_pos", torch.zeros(1, side * side, cfg.embed_dim), persistent=False)
            self.delta_pos = None  # DINOv2's tokenizer holds its own delta positions
        elif cfg.tokenizer == "conv":
            self.tokenizer = ConvTokenizer(cfg.patch, cfg.embed_dim)
            self.project = nn.Identity()
            self.register_buffer("base_pos", sincos_2d(side, cfg.embed_dim), persistent=False)
            self.delta_pos = nn.Parameter(torch.zeros(1, side * side, cfg.embed_dim))
        else:
            raise ValueError(f"unknown tokenizer {cfg.tokenizer!r} (conv or dinov2)")
        self.subject_table = nn.Embedding(cfg.subjects, cfg.embed_dim)
        nn.init.normal_(self.subject_table.weight, std=0.02)
        self.subject_proj = nn.Linear(cfg.embed_dim, cfg.embed_dim)
        self.queries = nn.Parameter(torch.randn(1, cfg.tokens, cfg.embed_dim) * 0.02)
        self.encoder = _encoder_stack(cfg.embed_dim, cfg.heads, cfg.ff, cfg.layers, cfg.dropout)
        self.norm = nn.LayerNorm(cfg.embed_dim)

    def subject(self, ids: torch.Tensor) -> torch.Tensor:
        """Subject ids [B] → their learnt embeddings [B, D]."""
        return self.subject_table(ids)

    def forward(self, image: torch.Tensor, subject: torch.Tensor) -> torch.Tensor:
        b = image.shape[0]
        patches = self.project(self.tokenizer(image)) + self.base_pos
        if self.delta_pos is not None:
            patches = patches + self.delta_pos
        x = torch.cat([self.subject_proj(subject)[:, None], self.queries.expand(b, -1, -1), patches], dim=1)
        x = self.norm(self.encoder(x))
        return x[:, 1 : 1 + self.config.tokens]


class ReconstructionModel(nn.Module):
    """(subject embedding [B, D], tokens [B, K, E]) → face [B, 3, S, S] in [0, 1], RGB."""

    def __init__(self, config: ReconstructionConfig | None = None, **overrides: Any) -> None:
        super().__init__()
        self.config = cfg = config or ReconstructionConfig(**overrides)
        if cfg.image_size % cfg.patch:
            raise ValueError(f"image_size {cfg.image_size} is not a multiple of patch {cfg.patch}")
        if cfg.embed_dim % cfg.heads:
            raise ValueError(f"embed_dim {cfg.embed_dim} is not divisible by {cfg.heads} heads")
        self.side = cfg.image_size // cfg.patch
        d = cfg.embed_dim
        self.register_buffer("base_pos", sincos_2d(self.side, d), persistent=False)
        self.queries = nn.Parameter(torch.randn(1, self.side**2, d) * 0.02)
        self.subject_in = nn.Linear(cfg.token_dim, d)
        self.tokens_in = nn.Linear(cfg.token_dim, d)
        layer = nn.TransformerDecoderLayer(d, cfg.heads, cfg.ff, cfg.dropout, activation="gelu", batch_first=True,
                                           norm_first=True)
        self.cross = nn.TransformerDecoder(layer, cfg.cross_layers)
        self.mix = _encoder_stack(d, cfg.heads, cfg.ff, cfg.self_layers, cfg.dropout)
        self.norm = nn.LayerNorm(d)
        if cfg.head == "linear":
            self.head: nn.Module = nn.Linear(d, cfg.patch * cfg.patch * 3)
        elif cfg.head == "conv":
            self.head = ConvHead(d, cfg.patch, cfg.image_size, cfg.head_width)
        else:
            raise ValueError(f"unknown head {cfg.head!r} (conv or linear)")

    def forward(self, subject: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        b = tokens.shape[0]
        s = self.subject_in(subject)[:, None]
        memory = torch.cat([s, self.tokens_in(tokens)], dim=1)
        q = self.queries.expand(b, -1, -1) + self.base_pos + s
        x = self.norm(self.mix(self.cross(q, memory)))
        p, side = self.config.patch, self.side
        if self.config.head == "conv":
            return torch.sigmoid(self.head(x.transpose(1, 2).reshape(b, -1, side, side)))
        x = self.head(x).reshape(b, side, side, p, p, 3).permute(0, 5, 1, 3, 2, 4).reshape(b, 3, side * p, side * p)
        return torch.sigmoid(x)


class ConvHead(nn.Module):
    """Patch grid [B, D, g, g] → image logits [B, 3, S, S]: ×2 nearest upsampling + 3×3 convolutions per step,
    a resize to S at the end where ``patch`` is not a power of two (DINOv2's 14)."""

    def __init__(self, dim: int, patch: int, image_size: int, width: int) -> None:
        super().__init__()
        steps = max(1, math.ceil(math.log2(patch)))
        layers: list[nn.Module] = []
        c_in = dim
        for i in range(steps):
            c_out = max(16, width // 2**i)
            layers += [nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv2d(c_in, c_out, 3, 1, 1), nn.GELU()]
            c_in = c_out
        self.body = nn.Sequential(*layers)
        self.out = nn.Conv2d(c_in, 3, 3, 1, 1)
        self.size = image_size
        self.resize = 2**steps != patch

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.body(x)
        if self.resize:
            x = nn.functional.interpolate(x, size=(self.size, self.size), mode="bilinear", align_corners=False)
        return self.out(x)


class ExpressionAutoencoder(nn.Module):
    """Both parts, trained jointly: (image, subject id) → (tokens, reconstruction)."""

    def __init__(self, transformer: ExpressionTransformer, reconstruction: ReconstructionModel) -> None:
        super().__init__()
        if transformer.config.embed_dim != reconstruction.config.token_dim:
            raise ValueError("the reconstruction model's token_dim must be the transformer's embed_dim")
        self.transformer, self.reconstruction = transformer, reconstruction

    def forward(self, image: torch.Tensor, subject_ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        subject = self.transformer.subject(subject_ids)
        tokens = self.transformer(image, subject)
        return tokens, self.reconstruction(subject, tokens)


# ---- metadata, checkpoints and export ------------------------------------------------------------


def transformer_metadata(model: ExpressionTransformer) -> dict[str, Any]:
    cfg = model.config
    return {"kind": "expression_transformer", "input_size": cfg.image_size, "color": "rgb", "mean": list(cfg.mean),
            "std": list(cfg.std), "scale": 1.0 / 255.0, "tokens": cfg.tokens, "dim": cfg.embed_dim,
            "subject_dim": cfg.embed_dim, "config": asdict(cfg)}


def reconstruction_metadata(model: ReconstructionModel) -> dict[str, Any]:
    cfg = model.config
    return {"kind": "expression_reconstruction", "subject": "embedding", "subject_dim": cfg.token_dim,
            "tokens": cfg.tokens, "token_dim": cfg.token_dim, "image_size": cfg.image_size, "color": "rgb",
            "output_range": [0.0, 1.0], "config": asdict(cfg)}


def _metadata(model: nn.Module) -> dict[str, Any]:
    if isinstance(model, ExpressionTransformer):
        return transformer_metadata(model)
    if isinstance(model, ReconstructionModel):
        return reconstruction_metadata(model)
    raise TypeError(f"expected an ExpressionTransformer or ReconstructionModel, got {type(model).__name__}")


def save_checkpoint(model: nn.Module, path: str | Path, metadata: Mapping[str, Any] | None = None) -> Path:
    """One part as a .pt (kind, config, state_dict, metadata) that :func:`load_checkpoint` rebuilds."""
    meta = {**_metadata(model), **(metadata or {})}
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v for k, v in model.state_dict().items() if not k.startswith("tokenizer.vit.")} \
        if isinstance(model, ExpressionTransformer) and model.config.tokenizer == "dinov2" \
        and not model.config.train_dinov2 else model.state_dict()
    torch.save({"kind": meta["kind"], "config": asdict(model.config), "state_dict": state, "metadata": meta}, path)
    return path


def load_checkpoint(path: str | Path) -> tuple[nn.Module, dict[str, Any]]:
    """Rebuild the part a checkpoint describes (eval mode) and return it with its metadata."""
    data = torch.load(Path(path), map_location="cpu", weights_only=True)
    kinds = {"expression_transformer": (ExpressionTransformer, TransformerConfig),
             "expression_reconstruction": (ReconstructionModel, ReconstructionConfig)}
    if not isinstance(data, dict) or data.get("kind") not in kinds:
        kind = data.get("kind") if isinstance(data, dict) else "?"
        raise ValueError(f"{path}: not an expression model checkpoint (kind {kind!r})")
    cls, cfg_cls = kinds[data["kind"]]
    model = cls(cfg_cls(**data["config"]))
    strict = not (data["kind"] == "expression_transformer" and data["config"].get("tokenizer") == "dinov2")
    model.load_state_dict(data["state_dict"], strict=strict)
    return model.eval(), dict(data.get("metadata", {}))


class _EncoderExport(nn.Module):
    def __init__(self, model: ExpressionTransformer) -> None:
        super().__init__()
        self.model = model

    def forward(self, image: torch.Tensor, subject: torch.Tensor) -> torch.Tensor:
        return self.model(image, subject)


def _export_plain(*args: Any) -> Path:
    """torch's fused attention inference path has no ONNX export: trace the plain one."""
    before = torch.backends.mha.get_fastpath_enabled()
    torch.backends.mha.set_fastpath_enabled(False)
    try:
        return export(*args)
    finally:
        torch.backends.mha.set_fastpath_enabled(before)


def export_transformer_onnx(model: ExpressionTransformer, path: str | Path,
                            metadata: Mapping[str, Any] | None = None) -> Path:
    """``<path>``: inputs ``image`` [N, 3, S, S] (normalised), ``subject`` [N, D]; output ``tokens`` [N, K, D]."""
    cfg = model.config
    meta = {**transformer_metadata(model), **(metadata or {})}
    args = (torch.zeros(2, 3, cfg.image_size, cfg.image_size), torch.zeros(2, cfg.embed_dim))
    return _export_plain(_EncoderExport(model), args, path, ["image", "subject"], ["tokens"], meta)


def export_reconstruction_onnx(model: ReconstructionModel, path: str | Path,
                               metadata: Mapping[str, Any] | None = None) -> Path:
    """``<path>``: inputs ``subject`` [N, D], ``tokens`` [N, K, D]; output ``image`` [N, 3, S, S] in [0, 1]."""
    cfg = model.config
    meta = {**reconstruction_metadata(model), **(metadata or {})}
    args = (torch.zeros(2, cfg.token_dim), torch.zeros(2, cfg.tokens, cfg.token_dim))
    return _export_plain(model, args, path, ["subject", "tokens"], ["image"], meta)
