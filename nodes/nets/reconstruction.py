"""Expression transformer and expression reconstruction model, trained jointly on face clips.

``ExpressionTransformer``: face → K expression tokens. Patch tokens come from a
DINOv2 ViT-S/14 when the user has its weights (``tokenizer="dinov2"``, frozen by
default), else from a small convolutional patch tokenizer trained with the rest
(``tokenizer="conv"``); ``tokenizer="conv+fer"`` adds, beside the conv patches, the
patch tokens of the project's own FER-2013 emotion CNN (frozen, read from its ONNX
export), a pretrained backbone that already separates expressions, as DINOv2 would
where its weights are at hand. Learnable *delta* positional embeddings (zero at start) are
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
instead, as MAE does, which learns far slower on a CPU budget). ``head="conv+ref"``
also reads the subject's **reference face** (the mean of its crops, or of the
enrollment frames for someone new): its patch features join the queries and the
image itself joins the last convolution, so identity comes from a picture of the
person, and an identity swap renders the source's tokens on the target's reference.
(A head that warped the reference by a predicted flow, starting from the mean face,
stayed at the mean face for 280 steps where this one learnt: not kept.)

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
    tokenizer: str = "conv"  # conv (trained jointly) | conv+fer (+ the frozen FER CNN) | dinov2 (ViT-S/14)
    dinov2: str = ""  # path of a DINOv2 ViT-S/14 checkpoint (facebookresearch/dinov2's key names)
    train_dinov2: bool = False  # DINOv2 frozen unless this is set
    fer_onnx: str = ""  # conv+fer: the FER CNN's ONNX export its weights are read from (kept in checkpoints)
    fer_widths: list[int] = field(default_factory=lambda: [32, 64, 128, 256])  # its conv blocks' channels
    patch: int = 14  # DINOv2: 14; conv: a power of two (8, 16)
    embed_dim: int = 384
    heads: int = 4
    layers: int = 4
    ff: int = 768
    tokens: int = 16  # K expression tokens (readout "patches": one per patch, K = (image_size / patch)²)
    readout: str = "queries"  # queries: K learned query tokens; patches: the encoder's output at each patch
    token_dim: int = 0  # width of each output token (0: embed_dim); smaller is a bottleneck
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
    token_dim: int = 384  # the expression transformer's token width
    subject_dim: int = 0  # the subject embedding's width (0: token_dim)
    tokens: int = 16
    spatial_tokens: bool = False  # one token per output patch (readout "patches"): token i also feeds query i
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
    if tcfg.readout == "patches":
        tcfg.tokens = readout_tokens(tcfg)
    rcfg = ReconstructionConfig(image_size=tcfg.image_size, patch=p.get("out_patch", tcfg.patch),
                                embed_dim=p.get("rec_dim", tcfg.embed_dim), token_dim=tcfg.token_dim or tcfg.embed_dim,
                                subject_dim=tcfg.embed_dim, tokens=tcfg.tokens, heads=tcfg.heads,
                                ff=p.get("rec_ff", tcfg.ff), head=p.get("head", "conv"),
                                spatial_tokens=tcfg.readout == "patches")
    return tcfg, rcfg


def readout_tokens(cfg: TransformerConfig) -> int:
    """Tokens of readout "patches": one per patch, plus the FER embedding's own token with the conv+fer tokenizer."""
    return (cfg.image_size // cfg.patch) ** 2 + (cfg.tokenizer == "conv+fer")


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


def _patch_grid(image_size: int, patch: int, embed_dim: int, heads: int) -> int:
    """Patches per side, after the checks both models share (whole patches, whole attention heads)."""
    if embed_dim % heads:
        raise ValueError(f"embed_dim {embed_dim} is not divisible by {heads} heads")
    if image_size % patch:
        raise ValueError(f"image_size {image_size} is not a multiple of patch {patch}")
    return image_size // patch


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


class FerTokenizer(nn.Module):
    """The FER-2013 emotion CNN's (``nets/expression.py``, gray 48 px) patch tokens, frozen.

    Its weights come from the ONNX export (batch norm folded into the convolutions,
    as the exporter writes it), so the blocks here are conv + bias + ReLU pairs and a
    max-pool. Tokens: the second-to-last block's map ((48 / 2^(n-1))² cells) and one
    token of the CNN's 128-D embedding, the vector a linear probe reads expressions from.
    """

    def __init__(self, widths: list[int], image_mean: list[float], image_std: list[float],
                 embed_dim: int = 128) -> None:
        super().__init__()
        blocks, c_in = [], 1
        for w in widths:
            blocks.append(nn.Sequential(nn.Conv2d(c_in, w, 3, 1, 1), nn.ReLU(), nn.Conv2d(w, w, 3, 1, 1), nn.ReLU(),
                                        nn.MaxPool2d(2)))
            c_in = w
        self.blocks = nn.ModuleList(blocks)
        self.embed = nn.Linear(c_in, embed_dim)
        self.map_dim, self.embed_dim = widths[-2], embed_dim
        self.side = 48 // 2 ** (len(widths) - 1)
        self.register_buffer("image_mean", torch.tensor(image_mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("image_std", torch.tensor(image_std).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("gray", torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1), persistent=False)
        for q in self.parameters():
            q.requires_grad_(False)

    def load_onnx(self, path: str | Path) -> None:
        """Copy the convolution and embedding weights of a ``facegraph train fer`` ONNX export (gray input)."""
        import onnx
        from onnx import numpy_helper

        model = onnx.load(str(path))
        init = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
        convs = [n for n in model.graph.node if n.op_type == "Conv"]
        mine = [m for b in self.blocks for m in b if isinstance(m, nn.Conv2d)]
        if len(convs) != len(mine) or "model.embed.weight" not in init:
            raise ValueError(f"{path}: not a FER CNN export with {len(mine)} convolutions and an embedding")
        with torch.no_grad():
            for node, conv in zip(convs, mine, strict=True):
                w = torch.from_numpy(init[node.input[1]].copy())
                if w.shape != conv.weight.shape:
                    raise ValueError(f"{path}: convolution {tuple(w.shape)} where {tuple(conv.weight.shape)} "
                                     "was expected")
                conv.weight.copy_(w)
                conv.bias.copy_(torch.from_numpy(init[node.input[2]].copy()))
            self.embed.weight.copy_(torch.from_numpy(init["model.embed.weight"].copy()))
            self.embed.bias.copy_(torch.from_numpy(init["model.embed.bias"].copy()))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Normalised RGB [B, 3, S, S] → (map tokens [B, side², C], embedding [B, 1, 128])."""
        rgb = x * self.image_std + self.image_mean
        g = (rgb * self.gray).sum(1, keepdim=True)
        g = nn.functional.interpolate(g, size=(48, 48), mode="bilinear", align_corners=False)
        h = (g - 0.5) / 0.5
        for block in self.blocks[:-1]:
            h = block(h)
        grid = h.flatten(2).transpose(1, 2)
        emb = self.embed(self.blocks[-1](h).mean(dim=(2, 3)))
        return grid, emb[:, None]

    def embed_gray(self, h: torch.Tensor) -> torch.Tensor:
        """The raw 128-D embedding of gray 48 px faces already normalised as FER's input ([B, 1, 48, 48])."""
        for block in self.blocks:
            h = block(h)
        return self.embed(h.mean(dim=(2, 3)))


class ExpressionTransformer(nn.Module):
    """(image [B, 3, S, S] normalised, subject embedding [B, D]) → expression tokens [B, K, D]."""

    def __init__(self, config: TransformerConfig | None = None, **overrides: Any) -> None:
        super().__init__()
        self.config = cfg = config or TransformerConfig(**overrides)
        side = _patch_grid(cfg.image_size, cfg.patch, cfg.embed_dim, cfg.heads)
        if cfg.readout not in ("queries", "patches"):
            raise ValueError(f"unknown readout {cfg.readout!r} (queries or patches)")
        if cfg.readout == "patches" and cfg.tokens != readout_tokens(cfg):
            raise ValueError(f"readout patches gives one token per patch (and one for the FER embedding): tokens "
                             f"must be {readout_tokens(cfg)}")
        self.token_dim = cfg.token_dim or cfg.embed_dim
        if cfg.tokenizer == "dinov2":
            if cfg.patch != 14:
                raise ValueError("the DINOv2 tokenizer has 14-pixel patches: set patch 14")
            self.tokenizer: nn.Module = DinoTokenizer(cfg.image_size, cfg.dinov2, cfg.train_dinov2)
            self.project = nn.Linear(self.tokenizer.dim, cfg.embed_dim)
            self.register_buffer("base_pos", torch.zeros(1, side * side, cfg.embed_dim), persistent=False)
            self.delta_pos = None  # DINOv2's tokenizer holds its own delta positions
        elif cfg.tokenizer in ("conv", "conv+fer"):
            self.tokenizer = ConvTokenizer(cfg.patch, cfg.embed_dim)
            self.project = nn.Identity()
            self.register_buffer("base_pos", sincos_2d(side, cfg.embed_dim), persistent=False)
            self.delta_pos = nn.Parameter(torch.zeros(1, side * side, cfg.embed_dim))
        else:
            raise ValueError(f"unknown tokenizer {cfg.tokenizer!r} (conv, conv+fer or dinov2)")
        self.fer: FerTokenizer | None = None
        if cfg.tokenizer == "conv+fer":
            self.fer = FerTokenizer(cfg.fer_widths, cfg.mean, cfg.std)
            if cfg.fer_onnx and Path(cfg.fer_onnx).is_file():  # else the weights come from a checkpoint
                self.fer.load_onnx(cfg.fer_onnx)
            self.fer_map_in = nn.Linear(self.fer.map_dim, cfg.embed_dim)
            self.fer_embed_in = nn.Linear(self.fer.embed_dim, cfg.embed_dim)
            self.register_buffer("fer_pos", sincos_2d(self.fer.side, cfg.embed_dim), persistent=False)
            self.fer_delta_pos = nn.Parameter(torch.zeros(1, self.fer.side**2 + 1, cfg.embed_dim))
        self.subject_table = nn.Embedding(cfg.subjects, cfg.embed_dim)
        nn.init.normal_(self.subject_table.weight, std=0.02)
        self.subject_proj = nn.Linear(cfg.embed_dim, cfg.embed_dim)
        queries = cfg.tokens if cfg.readout == "queries" else 0
        self.queries = nn.Parameter(torch.randn(1, queries, cfg.embed_dim) * 0.02)
        self.encoder = _encoder_stack(cfg.embed_dim, cfg.heads, cfg.ff, cfg.layers, cfg.dropout)
        self.norm = nn.LayerNorm(cfg.embed_dim)
        self.out = nn.Linear(cfg.embed_dim, self.token_dim) if cfg.token_dim else nn.Identity()

    def subject(self, ids: torch.Tensor) -> torch.Tensor:
        """Subject ids [B] → their learnt embeddings [B, D]."""
        return self.subject_table(ids)

    def forward(self, image: torch.Tensor, subject: torch.Tensor) -> torch.Tensor:
        b = image.shape[0]
        patches = self.project(self.tokenizer(image)) + self.base_pos
        if self.delta_pos is not None:
            patches = patches + self.delta_pos
        if self.fer is not None:
            grid, emb = self.fer(image)
            fer = torch.cat([self.fer_map_in(grid) + self.fer_pos, self.fer_embed_in(emb)], dim=1)
            patches = torch.cat([patches, fer + self.fer_delta_pos], dim=1)
        x = torch.cat([self.subject_proj(subject)[:, None], self.queries.expand(b, -1, -1), patches], dim=1)
        x = self.norm(self.encoder(x))
        if self.config.readout == "patches" and self.fer is not None:  # the patches and the FER embedding's token
            side2 = self.config.tokens - 1
            return self.out(torch.cat([x[:, 1 : 1 + side2], x[:, -1:]], dim=1))
        return self.out(x[:, 1 : 1 + self.config.tokens])  # the queries, or the patches


class ReconstructionModel(nn.Module):
    """(subject embedding [B, D], tokens [B, K, E][, reference face [B, 3, S, S]]) → face [B, 3, S, S] in [0, 1],
    RGB. The reference (in [0, 1]; one face is broadcast to the batch) is taken by the conv+ref head only
    (``uses_reference``)."""

    def __init__(self, config: ReconstructionConfig | None = None, **overrides: Any) -> None:
        super().__init__()
        self.config = cfg = config or ReconstructionConfig(**overrides)
        self.side = _patch_grid(cfg.image_size, cfg.patch, cfg.embed_dim, cfg.heads)
        d = cfg.embed_dim
        self.register_buffer("base_pos", sincos_2d(self.side, d), persistent=False)
        if cfg.spatial_tokens and cfg.tokens not in (self.side**2, self.side**2 + 1):
            raise ValueError(f"spatial tokens: one per output patch (and at most one more), so tokens must be "
                             f"{self.side**2} or {self.side**2 + 1}")
        self.queries = nn.Parameter(torch.randn(1, self.side**2, d) * 0.02)
        self.subject_in = nn.Linear(cfg.subject_dim or cfg.token_dim, d)
        self.tokens_in = nn.Linear(cfg.token_dim, d)
        layer = nn.TransformerDecoderLayer(d, cfg.heads, cfg.ff, cfg.dropout, activation="gelu", batch_first=True,
                                           norm_first=True)
        self.cross = nn.TransformerDecoder(layer, cfg.cross_layers)
        self.mix = _encoder_stack(d, cfg.heads, cfg.ff, cfg.self_layers, cfg.dropout)
        self.norm = nn.LayerNorm(d)
        self.uses_reference = cfg.head == "conv+ref"
        if cfg.head == "linear":
            self.head: nn.Module = nn.Linear(d, cfg.patch * cfg.patch * 3)
        elif cfg.head == "conv":
            self.head = ConvHead(d, cfg.patch, cfg.image_size, cfg.head_width)
        elif cfg.head == "conv+ref":
            self.reference_in = ConvTokenizer(cfg.patch, d)  # the reference's features, per query patch
            self.head = ConvHead(d, cfg.patch, cfg.image_size, cfg.head_width, skip_channels=3)
        else:
            raise ValueError(f"unknown head {cfg.head!r} (conv, linear or conv+ref)")

    def forward(self, subject: torch.Tensor, tokens: torch.Tensor,
                reference: torch.Tensor | None = None) -> torch.Tensor:
        b = tokens.shape[0]
        s = self.subject_in(subject)[:, None]
        t = self.tokens_in(tokens)
        q = self.queries.expand(b, -1, -1) + self.base_pos + s
        if self.config.spatial_tokens:  # token i is patch i's: it feeds its query directly and keeps its place
            n = self.side**2
            q = q + t[:, :n]
            t = torch.cat([t[:, :n] + self.base_pos, t[:, n:]], dim=1)
        memory = torch.cat([s, t], dim=1)
        if self.uses_reference:
            if reference is None:
                raise ValueError("the conv+ref head renders from a reference face: pass reference [B, 3, S, S]")
            reference = reference.expand(b, -1, -1, -1)
            q = q + self.reference_in(reference * 2 - 1)
        x = self.norm(self.mix(self.cross(q, memory)))
        p, side = self.config.patch, self.side
        if self.uses_reference:  # the reference also joins the last convolution at full size
            return torch.sigmoid(self.head(x.transpose(1, 2).reshape(b, -1, side, side), reference * 2 - 1))
        if self.config.head == "conv":
            return torch.sigmoid(self.head(x.transpose(1, 2).reshape(b, -1, side, side)))
        x = self.head(x).reshape(b, side, side, p, p, 3).permute(0, 5, 1, 3, 2, 4).reshape(b, 3, side * p, side * p)
        return torch.sigmoid(x)


class ConvHead(nn.Module):
    """Patch grid [B, D, g, g] → image logits [B, 3, S, S]: ×2 nearest upsampling + 3×3 convolutions per step,
    a resize to S at the end where ``patch`` is not a power of two (DINOv2's 14)."""

    def __init__(self, dim: int, patch: int, image_size: int, width: int, out_channels: int = 3,
                 skip_channels: int = 0) -> None:
        super().__init__()
        steps = max(1, math.ceil(math.log2(patch)))
        layers: list[nn.Module] = []
        c_in = dim
        for i in range(steps):
            c_out = max(16, width // 2**i)
            layers += [nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv2d(c_in, c_out, 3, 1, 1), nn.GELU()]
            c_in = c_out
        self.body = nn.Sequential(*layers)
        self.out = nn.Conv2d(c_in + skip_channels, out_channels, 3, 1, 1)  # skip: an image joined at full size
        self.size = image_size
        self.resize = 2**steps != patch

    def forward(self, x: torch.Tensor, skip: torch.Tensor | None = None) -> torch.Tensor:
        x = self.body(x)
        if self.resize:
            x = nn.functional.interpolate(x, size=(self.size, self.size), mode="bilinear", align_corners=False)
        return self.out(x if skip is None else torch.cat([x, skip], dim=1))


class ExpressionAutoencoder(nn.Module):
    """Both parts, trained jointly: (image, subject id[, reference]) → (tokens, reconstruction)."""

    def __init__(self, transformer: ExpressionTransformer, reconstruction: ReconstructionModel) -> None:
        super().__init__()
        if transformer.token_dim != reconstruction.config.token_dim:
            raise ValueError("the reconstruction model's token_dim must be the transformer's token width")
        self.transformer, self.reconstruction = transformer, reconstruction

    def forward(self, image: torch.Tensor, subject_ids: torch.Tensor,
                reference: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        subject = self.transformer.subject(subject_ids)
        tokens = self.transformer(image, subject)
        return tokens, self.reconstruction(subject, tokens, reference)


# ---- metadata, checkpoints and export ------------------------------------------------------------


def transformer_metadata(model: ExpressionTransformer) -> dict[str, Any]:
    cfg = model.config
    return {"kind": "expression_transformer", "input_size": cfg.image_size, "color": "rgb", "mean": list(cfg.mean),
            "std": list(cfg.std), "scale": 1.0 / 255.0, "tokens": cfg.tokens, "dim": model.token_dim,
            "subject_dim": cfg.embed_dim, "config": asdict(cfg)}


def reconstruction_metadata(model: ReconstructionModel) -> dict[str, Any]:
    cfg = model.config
    return {"kind": "expression_reconstruction", "subject": "embedding",
            "subject_dim": cfg.subject_dim or cfg.token_dim,
            "reference": model.uses_reference,
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
    """``<path>``: inputs ``subject`` [N, D], ``tokens`` [N, K, D] (and ``reference`` [N, 3, S, S] in [0, 1] for
    the conv+ref head); output ``image`` [N, 3, S, S] in [0, 1]."""
    cfg = model.config
    meta = {**reconstruction_metadata(model), **(metadata or {})}
    args: tuple[torch.Tensor, ...] = (torch.zeros(2, cfg.subject_dim or cfg.token_dim),
                                      torch.zeros(2, cfg.tokens, cfg.token_dim))
    names = ["subject", "tokens"]
    if model.uses_reference:
        args, names = (*args, torch.full((2, 3, cfg.image_size, cfg.image_size), 0.5)), [*names, "reference"]
    return _export_plain(model, args, path, names, ["image"], meta)
