"""Face ID on ``[RGB + landmark heatmaps (+ mask)]``: the shared trainer's task, joint transforms, the export.

``facegraph train face-id --data_root DIR --use_heatmaps`` trains a backbone with a
widened first convolution (``nets/faceid.py``) under an ArcFace (default) or
CosFace head on the training people's training images, then exports
``<out>/face_id.onnx`` (stacked input → 512-D) + ``face_id.json``: the channels the
model needs (``heatmaps`` spec, landmark extractor), so the ``embed`` node builds
the same heatmaps from landmarks, and the held-out scores of the exported file.

Joint transforms act on the stacked tensor, so image and heatmaps move together:
one random similarity (scale, rotation, shift) through ``grid_sample``, a
horizontal flip that also swaps the left/right eye and mouth-corner channels
(``_heatmaps.GROUP_FLIP``), and brightness/contrast on the RGB channels only.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812 - the usual torch alias
from torch import nn

from ..face import _heatmaps as hm
from ..nets.faceid import FaceIDConfig, FaceIDNet
from .faceid_data import IdentityData
from .faceid_distill import distill_loss
from .verify import pair_scores, rank1_gallery, roc_auc, tar_at_far

MEAN, STD = 127.5, 127.5  # RGB pixels → [-1, 1], insightface's convention (the embed node's default)


def resize_crops(crops: np.ndarray, size: int) -> np.ndarray:
    """uint8 [N,S,S,3] crops at the network's side (area interpolation), as training and ``embed`` both do."""
    import cv2

    crops = np.asarray(crops)
    if not len(crops) or crops.shape[1] == size:
        return crops
    return np.stack([cv2.resize(c, (size, size), interpolation=cv2.INTER_AREA) for c in crops])


def rgb_input(crops_bgr: np.ndarray) -> np.ndarray:
    """uint8 BGR [N,S,S,3] → float32 RGB [N,3,S,S], normalised."""
    x = np.asarray(crops_bgr)[..., ::-1].astype(np.float32)
    return np.ascontiguousarray(((x - MEAN) / STD).transpose(0, 3, 1, 2))


def flip_channels(spec: dict[str, Any] | None, points: int) -> list[int] | None:
    """Heatmap channel order after a horizontal flip (None: this scheme cannot be flipped)."""
    if not spec:
        return []
    if spec.get("scheme", "groups6") == "groups6":
        order = list(hm.GROUP_FLIP)
    elif int(spec.get("points", points)) == 68:
        order = hm.FLIP_68.tolist()
    else:
        return None
    return order + ([len(order)] if spec.get("mask") else [])


class JointTransform:
    """Random similarity + flip on stacked [N, 3+C, S, S] (RGB first): the heatmaps move with the image."""

    def __init__(self, flip_order: list[int] | None, *, scale: float = 0.05, rotate: float = 6.0,
                 shift: float = 0.04, color: float = 0.15, mask_channel: bool = False) -> None:
        self.flip_order, self.scale, self.rotate, self.shift = flip_order, scale, rotate, shift
        self.mirror = mirror_index(flip_order) if flip_order is not None else None
        self.color, self.mask_channel = color, mask_channel

    def matrices(self, n: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """(theta [N,2,3] in ``affine_grid``'s normalised output → input coordinates, flip [N] bool)."""
        u = torch.rand(n, 5, generator=generator) * 2 - 1
        s = 1.0 + self.scale * u[:, 0]
        a = torch.deg2rad(self.rotate * u[:, 1])
        cos, sin = torch.cos(a) / s, torch.sin(a) / s
        theta = torch.stack([torch.stack([cos, -sin, self.shift * u[:, 2]], 1),
                             torch.stack([sin, cos, self.shift * u[:, 3]], 1)], 1)
        flip = (u[:, 4] > 0) if self.flip_order is not None else torch.zeros(n, dtype=torch.bool)
        return theta, flip

    def apply(self, x: torch.Tensor, theta: torch.Tensor, flip: torch.Tensor) -> torch.Tensor:
        grid = F.affine_grid(theta.to(x.dtype), list(x.shape), align_corners=False)
        out = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
        if self.mask_channel:
            out[:, -1] = x[:, -1]  # the mask says "landmarks valid", not "inside the image"
        if flip.any():
            out[flip] = mirror_input(out[flip], self.mirror)
        return out

    def __call__(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        return self.transform(x, generator)[0]

    def transform(self, x: torch.Tensor, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """(transformed batch, which samples were mirrored [N] bool: the teacher's flipped descriptor for those)."""
        theta, flip = self.matrices(len(x), generator)
        out = self.apply(x, theta, flip)
        if self.color:
            g = torch.rand(len(x), 2, 1, 1, generator=generator) * 2 - 1
            rgb = out[:, :3]
            mean = rgb.mean((1, 2, 3), keepdim=True)
            out[:, :3] = ((rgb - mean) * (1 + self.color * g[:, :1]) + mean + self.color * g[:, 1:]).clamp(-1, 1)
        return out, flip


def transform_points(points: np.ndarray, theta: np.ndarray, flip: bool, size: int) -> np.ndarray:
    """Where ``JointTransform.apply`` moves landmark pixels [K,2] (before relabelling): the inverse of ``theta``
    in pixel coordinates (align_corners=False), then the mirror."""
    a, t = np.asarray(theta, np.float64)[:, :2], np.asarray(theta, np.float64)[:, 2]
    norm = (np.asarray(points, np.float64) + 0.5) / size * 2 - 1  # pixel → [-1, 1] (input)
    out = (np.linalg.solve(a, (norm - t).T).T + 1) / 2 * size - 0.5
    if flip:
        out[:, 0] = size - 1 - out[:, 0]
    return out


class FaceIDTask:
    """Margin-head classification over the training people (+ distillation of a teacher's descriptors into
    ``model.projection`` when ``teacher`` is given); validation: probe accuracy and held-out verification."""

    kind = "face-id"

    def __init__(self, data: IdentityData, config: FaceIDConfig, *, heatmaps: np.ndarray | None,
                 spec: dict[str, Any] | None, points: int = 68, augment: bool = True, extractor: str = "",
                 margin_warmup: float = 0.0, margin: float | None = None, teacher: np.ndarray | None = None,
                 distill_weight: float = 1.0, distill_kind: str = "cosine", morphs: Any = None,
                 flip_test: bool = True) -> None:
        self.data, self.config, self.spec, self.extractor = data, config, spec, extractor
        self.teacher = torch.from_numpy(np.asarray(teacher, np.float32)) if teacher is not None else None
        self.distill_weight, self.distill_kind = float(distill_weight), distill_kind
        self.margin_warmup = margin_warmup
        self.margin = margin if margin is not None else 0.5 if config.head == "arcface" else 0.4
        self.size = config.input_size
        self.rgb = torch.from_numpy(rgb_input(resize_crops(data.images, self.size)))
        self.maps = torch.from_numpy(np.asarray(heatmaps)) if heatmaps is not None else None
        self.person_class = {data.people.index(p): i for i, p in enumerate(data.train_people)}
        self.train_index = data.where("train")
        self.train_labels = torch.tensor([self.person_class[int(c)] for c in data.labels[self.train_index]])
        if morphs is not None and self.teacher is not None:
            self._add_morphs(morphs)
        order = flip_channels(spec, points)
        self.augment = JointTransform(order, mask_channel=bool(spec and spec.get("mask"))) if augment else None
        #: ``mirror_index`` of the input when every vector is the sum of the face's and its mirror's (the usual
        #: face-ID "flip test"); None when off or when this heatmap scheme has no mirror table
        self.flip_index = mirror_index(order) if flip_test and order is not None else None

    def _add_morphs(self, morphs: Any) -> None:
        """Blended crops (``faceid_distill.Morphs``) as unlabelled training rows after the real images:
        distillation only; their heatmaps blended like their pixels."""
        first = len(self.rgb)
        self.rgb = torch.cat([self.rgb, torch.from_numpy(rgb_input(resize_crops(morphs.images, self.size)))])
        if self.maps is not None:
            w = torch.from_numpy(np.asarray(morphs.alpha, np.float32))[:, None, None, None]
            a, b = torch.from_numpy(morphs.pairs[:, 0]), torch.from_numpy(morphs.pairs[:, 1])
            blend = w * self.maps[a].float() + (1 - w) * self.maps[b].float()
            self.maps = torch.cat([self.maps, blend.to(self.maps.dtype)])
        extra = np.arange(first, first + len(morphs.alpha))
        self.train_index = np.concatenate([self.train_index, extra])
        self.train_labels = torch.cat([self.train_labels, torch.full((len(extra),), -1, dtype=torch.long)])
        self.teacher = torch.cat([self.teacher, torch.from_numpy(np.asarray(morphs.teacher, np.float32))])

    def stacked(self, index: np.ndarray | torch.Tensor) -> torch.Tensor:
        x = self.rgb[index]
        if self.maps is not None:
            x = torch.cat([x, self.maps[index].float()], 1)
        return x

    def model_config(self) -> dict[str, Any]:
        return {**asdict(self.config), "heatmaps": self.spec, "train_people": self.data.train_people}

    def build_model(self) -> nn.Module:
        return FaceIDNet(self.config)

    def steps_per_epoch(self, batch_size: int) -> int:
        return max(1, len(self.train_index) // batch_size)

    def train_batches(self, epoch: int, batch_size: int, generator: torch.Generator) -> Iterator[Any]:
        order = torch.randperm(len(self.train_index), generator=generator)
        for b in range(self.steps_per_epoch(batch_size)):
            pick = order[b * batch_size:(b + 1) * batch_size]
            index = torch.from_numpy(self.train_index)[pick]
            x = self.stacked(index)
            flip = torch.zeros(len(index), dtype=torch.bool)
            if self.augment is not None:
                x, flip = self.augment.transform(x, generator)
            target = self.teacher[index, flip.long()] if self.teacher is not None else None
            yield x, self.train_labels[pick], self.margin_at(epoch + b / self.steps_per_epoch(batch_size)), target

    def margin_at(self, epochs: float) -> float:
        """The head's margin after ``epochs`` (fractional): linear from 0 over ``margin_warmup`` epochs."""
        if self.margin_warmup <= 0:
            return self.margin
        return self.margin * min(1.0, epochs / self.margin_warmup)

    def loss(self, model: nn.Module, batch: Any, device: torch.device) -> tuple[torch.Tensor, dict[str, float]]:
        x, y = batch[0].to(device), batch[1].to(device)
        emb = model.backbone(x)
        loss, logs = emb.new_zeros(()), {}
        labelled = y >= 0  # blended crops (morphs) have no person
        if model.head is not None and bool(labelled.any()):
            model.head.set_margin(batch[2])
            ce = F.cross_entropy(model.head(emb[labelled], y[labelled]), y[labelled])
            loss, logs = loss + ce, {"margin": float(batch[2]), "ce": float(ce.detach())}
        if batch[3] is not None and model.projection is not None:
            d = distill_loss(model.projection(emb), batch[3].to(device), self.distill_kind)
            loss, logs["distill"] = loss + self.distill_weight * d, float(d.detach())
        return loss, logs

    def embed(self, model: nn.Module, index: np.ndarray, device: torch.device, batch: int = 128,
              projection: bool = False) -> np.ndarray:
        """Unit vectors of images ``index``: the embedding, or with ``projection`` its map into the teacher's space."""
        return self.embed_both(model, index, device, batch)[1 if projection else 0]

    def embed_both(self, model: nn.Module, index: np.ndarray, device: torch.device, batch: int = 128
                   ) -> tuple[np.ndarray, np.ndarray | None]:
        """(unit embeddings [N, D], unit projections [N, teacher dim] or None without a projection)."""
        out, proj = [], []
        head = getattr(model, "projection", None)
        with torch.no_grad():
            for i in range(0, len(index), batch):
                x = self.stacked(index[i:i + batch]).to(device)
                views = [x] if self.flip_index is None else [x, mirror_input(x, self.flip_index)]
                embs = [model.backbone(v).float() for v in views]
                out.append(flip_sum(embs).cpu().numpy())
                if head is not None:
                    proj.append(flip_sum([head(e).float() for e in embs]).cpu().numpy())
        vec = np.concatenate(out) if out else np.zeros((0, self.config.embedding), np.float32)
        pvec = (np.concatenate(proj) if proj else np.zeros((0, self.config.distill_dim), np.float32)
                ) if head is not None else None
        return _unit(vec), (_unit(pvec) if pvec is not None else None)

    def validate(self, model: nn.Module, device: torch.device) -> dict[str, float]:
        """Per epoch, the cheap part: probe accuracy of the trained people, verification on the unseen ones
        (rank-1 against the whole gallery is measured once, on the export); with distillation also the mean
        teacher cosine on the trained people's probes (``val_teacher_cos``, selectable: no unseen person in it)
        and the projection's unseen-people figures (``*_proj``, logged, never selected on)."""
        index = np.flatnonzero(np.isin(self.data.role, ("probe", "unseen")))
        emb, proj = self.embed_both(model, index, device)
        vectors = np.zeros((len(self.data.labels), self.config.embedding), np.float32)
        vectors[index] = emb
        scores = held_out_scores(vectors, self.data, model=model, person_class=self.person_class, rank1=False)
        if proj is not None:
            pv = np.zeros((len(self.data.labels), proj.shape[1]), np.float32)
            pv[index] = proj
            scores.update({f"{k}_proj": v for k, v in held_out_scores(pv, self.data, rank1=False).items()})
            if self.teacher is not None:
                probe = self.data.where("probe")
                scores["val_teacher_cos"] = float((pv[probe] * self.teacher[probe, 0].numpy()).sum(1).mean())
        return scores

    def choose_output(self, model: nn.Module, device: torch.device, rule: str = "embedding"
                      ) -> tuple[str, dict[str, float]]:
        """Which vector the export gives: ``rule`` ``embedding`` / ``projection``, or ``auto``: whichever ranks
        the trained people's probe images better against their training images (no unseen person takes part in
        the choice). Both rank-1 figures are returned, whichever the rule."""
        if getattr(model, "projection", None) is None:
            return "embedding", {}
        probe, train = self.data.where("probe"), self.data.where("train")
        emb, proj = self.embed_both(model, np.concatenate([probe, train]), device)
        labels = self.data.labels
        n = len(probe)
        scores = {name: rank1_gallery(v[:n], labels[probe], v[n:], labels[train])
                  for name, v in (("embedding", emb), ("projection", proj))}
        if rule != "auto":
            return rule, scores
        return ("projection" if scores["projection"] > scores["embedding"] else "embedding"), scores


def held_out_scores(vectors: np.ndarray, data: IdentityData, *, model: nn.Module | None = None,
                    person_class: dict[int, int] | None = None, rank1: bool = True) -> dict[str, float]:
    """The bars' figures from unit embeddings of every image of ``data``:

    * ``rank1_probe``: each probe image (never trained on) of every person against a gallery of the other
      non-probe images of all people (the training images; for unseen people their own non-probe images);
    * ``auc_unseen`` / ``tar_unseen``: verification over all pairs of the held-out people's images;
    * ``val_accuracy``: the margin head's class for the trained people's probe images (no margin).
    """
    labels, role = data.labels, data.role
    probe = np.flatnonzero(role == "probe")
    unseen = np.flatnonzero(role == "unseen")
    rng = np.random.default_rng(0)
    unseen_probe = np.concatenate([rng.choice(i, max(1, len(i) // 5), replace=False)
                                   for i in (unseen[labels[unseen] == c] for c in np.unique(labels[unseen]))]
                                  ) if len(unseen) else np.zeros(0, np.int64)
    probes = np.concatenate([probe, unseen_probe]).astype(np.int64)
    gallery = np.setdiff1d(np.arange(len(labels)), probes)
    out: dict[str, float] = {}
    if rank1:
        out["rank1_probe"] = rank1_gallery(vectors[probes], labels[probes], vectors[gallery], labels[gallery])
    if rank1 and len(probe):
        out["rank1_probe_seen"] = rank1_gallery(vectors[probe], labels[probe], vectors[gallery], labels[gallery])
    if len(unseen) and len(np.unique(labels[unseen])) > 1:
        scores, genuine = pair_scores(vectors[unseen], labels[unseen])
        out["auc_unseen"] = roc_auc(scores, genuine)
        out["tar_unseen_far1e-3"] = tar_at_far(scores, genuine, 1e-3)[0]
    if model is not None and person_class is not None and len(probe) and getattr(model, "head", None) is not None:
        with torch.no_grad():
            w = F.normalize(model.head.weight.detach().float().cpu(), dim=1).numpy()
        pred = (vectors[probe] @ w.T).argmax(1)
        truth = np.array([person_class[int(c)] for c in labels[probe]])
        out["val_accuracy"] = float((pred == truth).mean())
    return out


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def mirror_index(flip_order: list[int]) -> torch.Tensor:
    """Channel order of a mirrored stacked input: RGB stay, heatmaps follow ``flip_channels``' order."""
    return torch.tensor([0, 1, 2] + [3 + c for c in flip_order], dtype=torch.long)


def mirror_input(x: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """Stacked [N, 3+C, S, S] mirrored left-right, its channels reordered by ``mirror_index`` (left and right
    heatmaps swap): the one mirror of the joint transform, the training's flip test and the export."""
    return x.flip(-1).index_select(1, index.to(x.device))


def flip_sum(views: list[torch.Tensor]) -> torch.Tensor:
    """The vector of one view as it is; of a face and its mirror, the sum of their unit vectors (flip test)."""
    return views[0] if len(views) == 1 else F.normalize(views[0], dim=1) + F.normalize(views[1], dim=1)


class _Embedding(nn.Module):
    """The export: stacked input → embedding, or its projection into the teacher's space (no margin head).

    With ``flip_index`` (``mirror_index``) it returns the sum of the unit vectors of the face and of its mirror
    (the flip test): the same vector whichever way the face looks, inside the one ONNX file, so ``embed`` and
    ``eval verify`` need not know."""

    def __init__(self, model: FaceIDNet, projection: bool = False, flip_index: torch.Tensor | None = None) -> None:
        super().__init__()
        self.backbone = model.backbone
        self.projection = model.projection if projection else None
        self.flip_index = flip_index

    def one_view(self, x: torch.Tensor) -> torch.Tensor:
        emb = self.backbone(x)
        return self.projection(emb) if self.projection is not None else emb

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.flip_index is None:
            return self.one_view(x)
        both = self.one_view(torch.cat([x, mirror_input(x, self.flip_index)]))  # one batched pass
        return flip_sum([both[: x.shape[0]], both[x.shape[0]:]])


def export(model: FaceIDNet, out: Path, task: FaceIDTask, *, command: str, seconds: float, data_root: str,
           best: dict[str, float], split: dict[str, Any], fp16: bool = True,
           distill: dict[str, Any] | None = None, wall_seconds: float | None = None,
           output_rule: str = "embedding") -> tuple[Path, dict[str, Any]]:
    """``out/face_id.onnx`` + ``face_id.json``: channels, heatmap spec, extractor, provenance, ONNX held-out scores;
    with a projection, the vector ``output_rule`` names (``FaceIDTask.choose_output``).
    ``wall_seconds``: the whole command until the export (landmarks, teacher and epochs), for the card."""
    import onnxruntime as ort

    from ..nets.iresnet import export_onnx

    model = model.cpu().eval()
    output, choice = task.choose_output(model, torch.device("cpu"), output_rule)
    wrapped = _Embedding(model, projection=output == "projection", flip_index=task.flip_index).eval()
    cfg = model.config
    path = out / "face_id.onnx"
    meta = {
        "task": "recognition", "kind": "face-id", "input_size": [cfg.input_size, cfg.input_size],
        "dim": cfg.distill_dim if output == "projection" else cfg.embedding, "output": output,
        "mean": MEAN, "std": STD, "color": "rgb", "resize": "area", "in_channels": cfg.in_channels,
        "channels": hm.channel_names(task.spec), "heatmaps": task.spec,
        "landmarks": ({"extractor": task.extractor, "crop": "arcface", "crop_size": int(task.data.images.shape[1])}
                      if task.spec else None),
        "config": asdict(cfg), "data": {"path": data_root, **split}, "command": command,
        "train_seconds": round(seconds, 1), "best_epoch_torch": best, "flip_test": task.flip_index is not None,
    }
    if wall_seconds is not None:
        meta["wall_seconds"] = round(wall_seconds, 1)
    if distill:
        by = ("rank-1 of the trained people's probe images against their training images" if output_rule == "auto"
              else f"--export-output {output_rule} (the rank-1 figures of the trained people's probes are reported)")
        meta["distill"] = {**distill, "output_choice": {"by": by, **choice}}
        if cfg.distill_dim:
            meta["distill"]["held_out_torch"] = both_outputs_scores(model, task)
    export_onnx(wrapped, path, input_size=cfg.input_size, in_channels=cfg.in_channels, metadata=meta)
    sample = task.stacked(np.arange(min(16, len(task.data.labels))))
    with torch.no_grad():
        ref = wrapped(sample).numpy()
    diff32 = _onnx_diff(path, sample.numpy(), ref)
    meta["onnx_max_abs_diff"] = diff32
    if fp16:
        import onnx
        from onnxruntime.transformers.float16 import convert_float_to_float16

        half = convert_float_to_float16(onnx.load(str(path)), keep_io_types=True)
        half_path = path.with_name("face_id_fp16.onnx")
        onnx.save(half, str(half_path))
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    scores = {"fp32": _onnx_scores(session, task)}
    if fp16:
        session16 = ort.InferenceSession(str(half_path), providers=["CPUExecutionProvider"])
        scores["fp16"] = _onnx_scores(session16, task)
    meta["scores"] = scores
    meta["exported"] = time.strftime("%Y-%m-%d %H:%M:%S")
    path.with_suffix(".json").write_text(json.dumps(meta, indent=2) + "\n")
    if fp16:
        half_path.with_suffix(".json").write_text(json.dumps({**meta, "precision": "fp16"}, indent=2) + "\n")
    return path, scores


def both_outputs_scores(model: FaceIDNet, task: FaceIDTask) -> dict[str, dict[str, float]]:
    """The held-out figures of the embedding and of the projection side by side (reported, not selected on)."""
    emb, proj = task.embed_both(model, np.arange(len(task.data.labels)), torch.device("cpu"))
    out = {"embedding": held_out_scores(emb, task.data)}
    if proj is not None:
        out["projection"] = held_out_scores(proj, task.data)
    return {k: {m: round(float(x), 4) for m, x in v.items()} for k, v in out.items()}


def _onnx_diff(path: Path, x: np.ndarray, ref: np.ndarray) -> float:
    import onnxruntime as ort

    got = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"input.1": x})[0]
    return float(np.abs(got - ref).max())


def _onnx_scores(session: Any, task: FaceIDTask) -> dict[str, float]:
    vecs = []
    index = np.arange(len(task.data.labels))
    for i in range(0, len(index), 128):
        vecs.append(session.run(None, {"input.1": task.stacked(index[i:i + 128]).numpy()})[0])
    v = np.concatenate(vecs)
    v /= np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-12)
    return {k: round(float(x), 4) for k, x in held_out_scores(v, task.data).items()}


def heatmap_spec(use_heatmaps: bool, add_mask: bool, group_all: bool, sigma: float, points: int
                 ) -> dict[str, Any] | None:
    if not use_heatmaps:
        return None
    spec: dict[str, Any] = {"scheme": "all" if group_all else "groups6", "sigma": sigma, "mask": bool(add_mask)}
    if group_all:
        spec["points"] = points
    return spec


def default_sigma(size: int) -> float:
    return round(2.0 * size / 112, 2) if size else 2.0

