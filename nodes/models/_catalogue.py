"""The face model catalogue: insightface packs, mediapipe's bundled models, OpenCV Zoo's YuNet, our own exports.

Importing this module registers the entries with the engine's model store
(``facegraph._modelstore``), so ``facegraph models`` lists them and a node's
``model`` parameter may be a name (``buffalo_l/w600k_r50``) instead of a path.

SHA-256 values are filled only where we hashed the very file: mediapipe 0.10.21's
wheel, YuNet 2023mar, and the ``det_500m.onnx`` of buffalo_s (hashed from a copy
whose size and MD5 match the published file). Everything else says unknown, and
``facegraph models fetch`` then reports the hash it got instead of verifying it.
Sizes marked approximate come from the publishers' listings, not from our own hashing.
"""

from __future__ import annotations

from pathlib import Path

from facegraph import ModelError
from facegraph._modelstore import ModelEntry, locate, lookup, missing_message, register_models
from facegraph._modelstore import resolve as _store_resolve

INSIGHTFACE_LICENCE = "InsightFace pretrained models: non-commercial research only"
INSIGHTFACE_URLS = (
    "https://github.com/deepinsight/insightface/releases/download/v0.7/{name}.zip",
    "https://github.com/deepinsight/insightface/releases/download/model-zoo/{name}.zip",
)
#: insightface's own cache, so packs that insightface already downloaded are found too
INSIGHTFACE_DIRS = ("~/.insightface/models",)

_MB = 1_000_000

# (file stem, description, approximate size in bytes or None, sha256 or None)
_INSIGHTFACE_FILES = {
    "det_10g": ("SCRFD-10GF face detector, 5 keypoints", 16_900_000, None),
    "det_500m": ("SCRFD-500MF face detector, 5 keypoints", 2_524_817,
                 "5e4447f50245bbd7966bd6c0fa52938c61474a04ec7def48753668a9d8b4ea3a"),
    "w600k_r50": ("ArcFace iResNet-50 recognition, WebFace600K, 512-D, 112x112", 174_000_000, None),
    "w600k_mbf": ("ArcFace MobileFaceNet recognition, WebFace600K, 512-D, 112x112", 13_600_000, None),
    "2d106det": ("2-D 106-point landmarks, 192x192", 5_000_000, None),
    "1k3d68": ("3-D 68-point landmarks and pose, 192x192", 143_600_000, None),
    "genderage": ("gender and age, 96x96", 1_300_000, None),
}
_PACKS = {
    "buffalo_l": ("insightface default pack (large): SCRFD-10GF + ArcFace R50 + landmarks + gender/age",
                  ("det_10g", "w600k_r50", "2d106det", "1k3d68", "genderage")),
    "buffalo_s": ("insightface small pack: SCRFD-500MF + ArcFace MobileFaceNet + landmarks + gender/age",
                  ("det_500m", "w600k_mbf", "2d106det", "1k3d68", "genderage")),
}

_MEDIAPIPE = {
    "face_detection_short_range": ("modules/face_detection/face_detection_short_range.tflite",
                                   "BlazeFace short range (faces within ~2 m), 6 keypoints", 229_714,
                                   "bbff11cebd1eb27a1e004cae0b0e63ec8c551cbf34a4451148b4908b8db3eca8"),
    "face_detection_full_range": ("modules/face_detection/face_detection_full_range_sparse.tflite",
                                  "BlazeFace full range (faces within ~5 m), 6 keypoints", 676_746,
                                  "2c3728e6da56f21e21a320433396fb06d40d9088f2247c05e5635a688d45dfe1"),
    "face_landmark": ("modules/face_landmark/face_landmark.tflite",
                      "FaceMesh 468 points, 192x192", 1_242_398,
                      "1055cb9d4a9ca8b8c688902a3a5194311138ba256bcc94e336d8373a5f30c814"),
    "face_landmark_with_attention": ("modules/face_landmark/face_landmark_with_attention.tflite",
                                     "FaceMesh 478 points with irises (needs mediapipe's own graph)", 2_495_106,
                                     "e06a804e0144f9929eda782122916b35d60c697c3c9344013ca2bbe76a6ce2b4"),
    "iris_landmark": ("modules/iris_landmark/iris_landmark.tflite", "iris landmarks, 64x64", 2_640_568,
                      "d1744d2a09c25f501d39eba4faff47e53ecca8852c5ce19bce8eeac39357521f"),
}


def _entries() -> list[ModelEntry]:
    out: list[ModelEntry] = []
    for pack, (desc, members) in _PACKS.items():
        out.append(ModelEntry(
            name=pack, filename=pack, description=desc, licence=INSIGHTFACE_LICENCE,
            urls=tuple(u.format(name=pack) for u in INSIGHTFACE_URLS),
            members=tuple(f"{pack}/{m}" for m in members), search_dirs=INSIGHTFACE_DIRS,
        ))
        for stem in members:
            text, size, sha = _INSIGHTFACE_FILES[stem]
            aliases = [f"{pack}/{stem}.onnx"]
            if pack == "buffalo_l" or stem in ("det_500m", "w600k_mbf"):
                aliases.append(stem)  # a bare stem means the file of the pack that introduced it
            out.append(ModelEntry(
                name=f"{pack}/{stem}", filename=f"{pack}/{stem}.onnx", description=text,
                licence=INSIGHTFACE_LICENCE, sha256=sha, size=size, size_approx=sha is None,
                pack=pack, search_dirs=INSIGHTFACE_DIRS, aliases=tuple(aliases),
            ))
    for name, (rel, desc, size, sha) in _MEDIAPIPE.items():
        out.append(ModelEntry(
            name=f"mediapipe/{name}", filename=rel, description=desc + " (bundled with mediapipe 0.10.21)",
            licence="Apache-2.0", sha256=sha, size=size, package="mediapipe",
        ))
    out.append(ModelEntry(
        name="yunet_2023mar", filename="opencv_zoo/face_detection_yunet_2023mar.onnx",
        description="OpenCV Zoo YuNet face detector, 5 keypoints (cv2.FaceDetectorYN)", licence="MIT",
        urls=("https://github.com/opencv/opencv_zoo/raw/main/models/face_detection_yunet/"
              "face_detection_yunet_2023mar.onnx",),
        sha256="8f2383e4dd3cfbb4553ea8718107fc0423210dc964f9f4280604804ed2552fa4", size=232_589,
        aliases=("face_detection_yunet_2023mar",),
    ))
    for name, desc in (
        ("facegraph/iresnet50_arcface", "our ArcFace iResNet-50 export (nodes/nets/iresnet.py export_onnx) + .json"),
        ("facegraph/iresnet50_heatmaps", "our face-ID iResNet-50 with landmark heatmap channels + .json"),
    ):
        out.append(ModelEntry(
            name=name, filename=f"{name}.onnx", description=desc, licence="MIT (weights: per training data)",
            note="built by the project's training scripts; no public download yet",
        ))
    return out


register_models(*_entries())


def known(name: str) -> bool:
    """Is ``name`` a catalogue name or alias (not a path)?"""
    return lookup(str(name)) is not None


def resolve(name: str) -> Path:
    """The file of a catalogue name; ModelError 'needs model X (facegraph models fetch X)' when it is absent."""
    return _store_resolve(str(name))


def model_requirements(spec: str | Path | None, what: str = "model") -> list[str]:
    """``requirements()`` lines for a node's model parameter: empty when the model can be loaded here."""
    if spec is None or str(spec) == "":
        return []
    if Path(str(spec)).expanduser().exists():
        return []
    entry = lookup(str(spec))
    if entry is not None:
        return [] if locate(entry) is not None else [missing_message(entry)]
    return [f"{what} {spec}: file not found (pass a path, or a name listed by 'facegraph models')"]


def model_hash(path: Path) -> str:
    """A short content hash of a model file, for cache keys (memoised on path, size and mtime)."""
    stat = path.stat()
    key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
    if key not in _HASHES:
        from facegraph._modelstore import sha256_file

        _HASHES[key] = sha256_file(path)[:16]
    return _HASHES[key]


_HASHES: dict[tuple[str, int, int], str] = {}

__all__ = ["ModelError", "known", "model_hash", "model_requirements", "resolve"]
