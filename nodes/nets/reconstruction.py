"""Expression transformer and reconstruction decoder: face crop → K expression tokens → face image.

``ExpressionEncoder`` is a DINOv2-style ViT: patch embedding, a class token and K
learned expression tokens (like DINOv2's register tokens) prepended, pre-norm
transformer blocks, and the K tokens read out after the final norm.
``ReconstructionDecoder`` turns the tokens plus a subject code (an identity
embedding, or a subject id looked up in an ``nn.Embedding``) back into an image, so
the same expression can be rendered on another identity. Sizes are configurable;
the defaults are small. Attention is written out (no fused kernels) so both
export to ONNX with the TorchScript exporter.
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


@dataclass
class EncoderConfig:
    image_size: int = 64
    patch: int = 8
    channels: int = 3
    dim: int = 64
    depth: int = 2
    heads: int = 4
    mlp_ratio: float = 2.0
    tokens: int = 4  # K expression tokens
    mean: list[float] = field(default_factory=lambda: [0.485, 0.456, 0.406])
    std: list[float] = field(default_factory=lambda: [0.229, 0.224, 0.225])


@dataclass
class DecoderConfig:
    tokens: int = 4
    token_dim: int = 64
    subject_dim: int = 128  # width of the subject code (embedding input, or nn.Embedding width)
    subjects: int = 0  # > 0: condition on a subject id in [0, subjects) instead of an embedding
    image_size: int = 64
    base: int = 64  # channels at 4×4, halved per upsampling (at least 16)


class Attention(nn.Module):
    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        if dim % heads:
            raise ValueError(f"dim {dim} is not divisible by {heads} heads")
        self.heads, self.head_dim = heads, dim // heads
        self.qkv = nn.Linear(dim, dim * 3)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, d = x.shape
        qkv = self.qkv(x).reshape(b, n, 3, self.heads, self.head_dim).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]
        attn = torch.softmax(q @ k.transpose(-2, -1) / math.sqrt(self.head_dim), dim=-1)
        return self.proj((attn @ v).transpose(1, 2).reshape(b, n, d))


class Block(nn.Module):
    """Pre-norm transformer block: x + attn(LN x), then x + MLP(LN x)."""

    def __init__(self, dim: int, heads: int, mlp_ratio: float) -> None:
        super().__init__()
        hidden = int(dim * mlp_ratio)
        self.norm1, self.attn = nn.LayerNorm(dim, eps=1e-6), Attention(dim, heads)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class ExpressionEncoder(nn.Module):
    """image [B, C, S, S] (normalised) → expression tokens [B, K, dim]."""

    def __init__(self, config: EncoderConfig | None = None, **overrides: Any) -> None:
        super().__init__()
        self.config = cfg = config or EncoderConfig(**overrides)
        if cfg.image_size % cfg.patch:
            raise ValueError(f"image_size {cfg.image_size} is not a multiple of patch {cfg.patch}")
        patches = (cfg.image_size // cfg.patch) ** 2
        self.patch_embed = nn.Conv2d(cfg.channels, cfg.dim, cfg.patch, stride=cfg.patch)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, cfg.dim))
        self.expr_tokens = nn.Parameter(torch.randn(1, cfg.tokens, cfg.dim) * 0.02)
        self.pos_embed = nn.Parameter(torch.randn(1, 1 + patches, cfg.dim) * 0.02)
        self.blocks = nn.ModuleList(Block(cfg.dim, cfg.heads, cfg.mlp_ratio) for _ in range(cfg.depth))
        self.norm = nn.LayerNorm(cfg.dim, eps=1e-6)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b = x.shape[0]
        x = self.patch_embed(x).flatten(2).transpose(1, 2)
        x = torch.cat([self.cls_token.expand(b, -1, -1), x], dim=1) + self.pos_embed
        x = torch.cat([x[:, :1], self.expr_tokens.expand(b, -1, -1), x[:, 1:]], dim=1)
        for block in self.blocks:
            x = block(x)
        return self.norm(x)[:, 1 : 1 + self.config.tokens]


class ReconstructionDecoder(nn.Module):
    """(tokens [B, K, E], subject [B, subject_dim] float or [B] int64 id) → image [B, 3, S, S] in [0, 1]."""

    def __init__(self, config: DecoderConfig | None = None, **overrides: Any) -> None:
        super().__init__()
        self.config = cfg = config or DecoderConfig(**overrides)
        ups = round(math.log2(cfg.image_size / 4))
        if 4 * 2**ups != cfg.image_size:
            raise ValueError(f"image_size must be 4 × a power of two, got {cfg.image_size}")
        self.subject_table = nn.Embedding(cfg.subjects, cfg.subject_dim) if cfg.subjects > 0 else None
        self.fc = nn.Linear(cfg.tokens * cfg.token_dim + cfg.subject_dim, cfg.base * 16)
        layers: list[nn.Module] = []
        c = cfg.base
        for _ in range(ups):
            c_out = max(16, c // 2)
            layers += [nn.ConvTranspose2d(c, c_out, 4, stride=2, padding=1), nn.GroupNorm(1, c_out), nn.GELU()]
            c = c_out
        layers.append(nn.Conv2d(c, 3, 3, padding=1))
        self.up = nn.Sequential(*layers)

    def forward(self, tokens: torch.Tensor, subject: torch.Tensor) -> torch.Tensor:
        code = self.subject_table(subject) if self.subject_table is not None else subject
        h = self.fc(torch.cat([tokens.flatten(1), code], dim=1)).view(-1, self.config.base, 4, 4)
        return torch.sigmoid(self.up(h))


# ---- metadata, checkpoints and export ------------------------------------------------------------


def encoder_metadata(encoder: ExpressionEncoder) -> dict[str, Any]:
    cfg = encoder.config
    return {
        "kind": "expression_encoder",
        "input_size": cfg.image_size,
        "color": "rgb",
        "mean": list(cfg.mean),
        "std": list(cfg.std),
        "scale": 1.0 / 255.0,
        "tokens": cfg.tokens,
        "dim": cfg.dim,
        "config": asdict(cfg),
    }


def decoder_metadata(decoder: ReconstructionDecoder) -> dict[str, Any]:
    cfg = decoder.config
    return {
        "kind": "reconstruction_decoder",
        "subject": "id" if cfg.subjects > 0 else "embedding",
        "subject_dim": cfg.subject_dim,
        "subjects": cfg.subjects,
        "tokens": cfg.tokens,
        "token_dim": cfg.token_dim,
        "image_size": cfg.image_size,
        "color": "rgb",
        "output_range": [0.0, 1.0],
        "config": asdict(cfg),
    }


def _metadata(model: nn.Module) -> dict[str, Any]:
    if isinstance(model, ExpressionEncoder):
        return encoder_metadata(model)
    if isinstance(model, ReconstructionDecoder):
        return decoder_metadata(model)
    raise TypeError(f"expected an ExpressionEncoder or ReconstructionDecoder, got {type(model).__name__}")


def save_checkpoint(model: nn.Module, path: str | Path, metadata: Mapping[str, Any] | None = None) -> Path:
    """A .pt the ``reconstruct`` node can load: kind, config, state_dict and metadata."""
    meta = {**_metadata(model), **(metadata or {})}
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"kind": meta["kind"], "config": asdict(model.config), "state_dict": model.state_dict(),
                "metadata": meta}, path)
    return path


def load_checkpoint(path: str | Path) -> tuple[nn.Module, dict[str, Any]]:
    """Rebuild the module a checkpoint describes (in eval mode) and return it with its metadata."""
    data = torch.load(Path(path), map_location="cpu", weights_only=True)
    kinds = {"expression_encoder": (ExpressionEncoder, EncoderConfig),
             "reconstruction_decoder": (ReconstructionDecoder, DecoderConfig)}
    if not isinstance(data, dict) or data.get("kind") not in kinds:
        kind = data.get("kind") if isinstance(data, dict) else "?"
        raise ValueError(f"not a reconstruction checkpoint (kind {kind})")
    cls, cfg_cls = kinds[data["kind"]]
    model = cls(cfg_cls(**data["config"]))
    model.load_state_dict(data["state_dict"])
    return model.eval(), dict(data.get("metadata") or _metadata(model))


def export_encoder_onnx(
    encoder: ExpressionEncoder, path: str | Path, metadata: Mapping[str, Any] | None = None
) -> Path:
    """ONNX ``image`` [N, 3, S, S] → ``tokens`` [N, K, E], metadata in ``<stem>.json``."""
    cfg = encoder.config
    example = torch.zeros(2, cfg.channels, cfg.image_size, cfg.image_size)
    return export(encoder, (example,), path, ["image"], ["tokens"], {**encoder_metadata(encoder), **(metadata or {})})


def export_decoder_onnx(
    decoder: ReconstructionDecoder, path: str | Path, metadata: Mapping[str, Any] | None = None
) -> Path:
    """ONNX (``tokens`` [N, K, E], ``subject`` [N, D] float or [N] int64) → ``image`` [N, 3, S, S] in [0, 1]."""
    cfg = decoder.config
    tokens = torch.zeros(2, cfg.tokens, cfg.token_dim)
    subject = torch.zeros(2, dtype=torch.int64) if cfg.subjects > 0 else torch.zeros(2, cfg.subject_dim)
    meta = {**decoder_metadata(decoder), **(metadata or {})}
    return export(decoder, (tokens, subject), path, ["tokens", "subject"], ["image"], meta)
