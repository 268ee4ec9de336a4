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

OPENFACE_LICENCE = "OpenFace academic licence: non-commercial research only, no redistribution"
#: OpenFace 2.2.0's AU models, PDM and triangulation, as they sit in its repository at the release tag; hashes taken
#: from copies checked against the tag's files (shared/models/openface_2.2)
OPENFACE_AU_URL = ("https://raw.githubusercontent.com/TadasBaltrusaitis/OpenFace/OpenFace_2.2.0/"
                   "lib/local/FaceAnalyser/AU_predictors/{file}")
OPENFACE_AU_FILES = tuple(
    (path, sha) for sha, path in (line.split() for line in """
61704fa352733807e54410b30bfb60a44e99d94482cc6b46f19ae0549a06fddf AU_all_best.txt
56073ec8a2d971f20d9f2d97a706a139093a02016544f2b8f1e58f5166a1215b AU_all_static.txt
b9eafb292b18505b55cdbc5d8ba45413709cd300cf3e7e8d1946cd0f5c5b94b1 In-the-wild_aligned_PDM_68.txt
12fe3cce73070e193137bc6b87a22f5a4a2f0a4dcd03f20bfbc3a9e60e198e49 svm_combined/AU_10_static.dat
a714ce6d56f7d6347cace0e82555a615300f5f6cee3bd68ad3e3c40834344017 svm_combined/AU_12_static.dat
5fa7b19767808b9dd97ca49ff773ba7fdf6bbf2e754dded9d305b80e002497f5 svm_combined/AU_14_static.dat
5bb2e37ccd2dacedfd9fbb3b2ed0a13aa0c16d35e95df5285b98c39eb7b42804 svm_combined/AU_15_dynamic.dat
ad20720efc7fd21b7f13e2a24f27b4350cda8bc5ec1d3d032694b08bc51f054c svm_combined/AU_15_static.dat
734269d134ca4c6ef2f021aac0de62efe0c6c454b58a92201aaec0b823a07e14 svm_combined/AU_17_dynamic.dat
56b99b0ab96524588f084c129e89a6fdb2ed83b1d1ebba9383d2908ff9c775d7 svm_combined/AU_17_static.dat
5c1e0e5a0370d0e633890b111fdd598c785f52a8146f315f02a7cc08e0c25d72 svm_combined/AU_1_dynamic.dat
1dd31442ee057facb5ee1c5f2ab7e265fefcaf43d864a371ca19cfdd8fe4af53 svm_combined/AU_1_static.dat
a40479450306a82ce4fd097a68195dda46683e62415c6e76503a4b4bc8e470be svm_combined/AU_20_dynamic.dat
e4a0e078f77ac58d90fdbd7963a890a699a6a9b705f3849a1ac54eacf00c2c13 svm_combined/AU_20_static.dat
2954a061adc4eccd5cfd21396be3a89a6cd8c1894e42247aa7eae19539f54504 svm_combined/AU_23_static.dat
c7fc5b453787d4f68c49da83b32db55b32cf1ac59770473955d7bbbec866f6e4 svm_combined/AU_25_dynamic.dat
782fc00d022fef813882e0957f730a23088978c85786c7c87d8422c27a433e8b svm_combined/AU_25_static.dat
61ebe15997c34d0a90ef8829492475d51bdb7ca02900a213bf481083a2f3df1b svm_combined/AU_26_dynamic.dat
78fafce9fdbeaf27671e86ebaf913165b6cc181b09bde7989a847035f7de51f0 svm_combined/AU_26_static.dat
5cb9f6cc232d0cb3a4a0e8c733a4fe4f2fea5e3ca6df97225e10ab10cbc89d1c svm_combined/AU_28_dynamic.dat
f2a991837cb00e2c1a6983dace2458822beb64499da22548b3839b06b74e2bbc svm_combined/AU_28_static.dat
67b27c091673808dd75b0c3cfe64f8ce03d8b7b94db2a6ed31ec18c8c90b6983 svm_combined/AU_2_dynamic.dat
f86dff9012730ea95b2dc0434f74fbf799da47c187b51e7e61b91c23612710dc svm_combined/AU_2_static.dat
5bc5ecbaf851434b1242a816755c591fe3a3ab89e25b70f496d5382192d0e944 svm_combined/AU_45_dynamic.dat
ef59f6cf576dafd95067a422fc76e6bdbe0e3b4b0b01fb513588897fada29152 svm_combined/AU_45_static.dat
641668301d463723bc1f5d27532a6f334b1943382f115d6fdd584b3ab2fccf6d svm_combined/AU_4_static.dat
b17cf060623b42679e0cabd2d3831e5a0b964d899424d228a70e933d96a3bed9 svm_combined/AU_5_static.dat
488232893383fbcd966e48b99578f7529b1cdef14475fc6c00b5a6494ff24333 svm_combined/AU_6_static.dat
1d9811e094f568a411fdb64d11655c227e1e4fe11f06736c80cd78bc0eae9b23 svm_combined/AU_7_static.dat
d9ee8c0901d9cbc85f89615b9f77fd6e7527c02140beed5b03fd8cd86c38062a svm_combined/AU_9_dynamic.dat
db71cd0204da64ca2e1dfd74d1f2f84958a0501dfcd99e809ee44549a47bf458 svm_combined/AU_9_static.dat
f97e1f9dd70810e59e356cdfa5dcceedec184b831f680a01f629467c6930f474 svr_combined/AU_10_static_intensity_comb.dat
fd895c3272abb0a3c612d0e9d002cf2fb86b93c79b477126a1ae10f310e6a928 svr_combined/AU_12_static_intensity_comb.dat
dce666400f38454807ce2bfb0553b3175eb34ab555db0b2bd0658518d6d9e2d2 svr_combined/AU_14_static_intensity.dat
f1dcf770fbd52e102f8e904cb087414b880b7924bb717bb9b791d94a2186bbf1 svr_combined/AU_15_dynamic_intensity_comb.dat
2d10fcda0b7cffe6f66348edae70ad6c055e0759ac6c3ce5ce3d567ae724709a svr_combined/AU_15_static_intensity_comb.dat
7dc6a65e21e4c3686517af8c68c741f300781cda7b1ea9c972f3cae968e55c50 svr_combined/AU_17_dynamic_intensity_comb.dat
a96b9717bac55fa3055e8278f39bb624ecbd10bd42343d10f574588f1704f09f svr_combined/AU_17_static_intensity_comb.dat
ee09197389d14c15c04239158db550368122d7c57bca16cf47d5a31ab35d78d0 svr_combined/AU_1_dynamic_intensity_comb.dat
969a11366e8e481ce5162c8a543f50e9a3aeeee687c0182c561886712298ee4a svr_combined/AU_1_static_intensity_comb.dat
3bcd6639ee770970f4507344b7ed78b73035d108c41bfe8fad82d64b9ea2af4f svr_combined/AU_20_dynamic_intensity.dat
3575b65364f39aff17a38e4b0d08fa167c166859be11c6f918f43d9b4fe652c9 svr_combined/AU_20_static_intensity.dat
415d2fb7b3d4b2a384f584b6081a72497fdabaf1d9bbb13f7b147b8a1fada2b7 svr_combined/AU_23_dynamic_intensity_comb.dat
019e8c56b0951969fd8b4f39d740c35ffe53719cbc16589bb65beb1bf316b690 svr_combined/AU_23_static_intensity_comb.dat
4e1f4b79e309bbb7104a6ff0ad269790f6c23ae50f8901ed4e5f5772e3cd74e7 svr_combined/AU_25_dynamic_intensity_comb.dat
b8110ef45db372507fc3449ff7e273003053794d313473865a1d6a905f132a46 svr_combined/AU_25_static_intensity.dat
d1bf66b8d31e26ca2fc4d2b9223535563eefdfe88ccbd0d9a2372cd7958d2882 svr_combined/AU_26_dynamic_intensity_comb.dat
2d7c1a8fd1a964c4091af39c5c4b94b7840e8df9d0501aaefb8c2f32236806c1 svr_combined/AU_26_static_intensity_comb.dat
d47d0444f225528f70a66d57634a1d6127dab902a3a54104ff7fa6f0c0f2f94b svr_combined/AU_2_dynamic_intensity_comb.dat
99c30b5abd61c0665e4687cf8b60b80d5406c2fe570c0e1c3a399889ab698790 svr_combined/AU_2_static_intensity_comb.dat
2b69232af9fc7cd1014623b53fb36a20a4a3b0f6ee2388583ad4bc383f6e356d svr_combined/AU_45_dynamic_intensity_comb.dat
7a87cbe04e2cbca5176ab1c1ed7f3a253fde0686defb018ebe159b4f51cb957f svr_combined/AU_45_static_intensity_comb.dat
40944f7bdb63506a01347edacb113d7f3073a82d926a782b264a5cbfde2127c6 svr_combined/AU_4_static_intensity_comb.dat
d9aa0162f10b9d066484095f1d45543fae18f384f4fc3e95ccc7b453a30c04d6 svr_combined/AU_5_dynamic_intensity.dat
be0fe3db756c6178a54c62c2a149f1ba242e6c37a67e3205358390f57d9640a4 svr_combined/AU_5_static_intensity.dat
3b63e59596ece180bd20757cc59916b27d258b77346a0d01fbae000a00b48408 svr_combined/AU_6_static_intensity_comb.dat
a577f1192b954bebec36a88360e15162bb06b76209e574af249ef6f824d9188d svr_combined/AU_7_static_intensity_comb.dat
fc12e797479e02489f8a809d5d81d025bd2e75a9fd7ba8333211a9ac8355341b svr_combined/AU_9_dynamic_intensity.dat
c795e596f5babba317cd1060029747797a0da8451be1c69ff3d4da3dd377965c svr_combined/AU_9_static_intensity.dat
d79b0c786bf497ddf18b97080e5949c67781ca1c017e558374883a1821b17181 tris_68_full.txt
""".strip().splitlines())
)


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
    out.append(ModelEntry(
        name="openface-au", filename="openface_2.2/AU_predictors",
        description="OpenFace 2.2.0 action-unit models: linear SVR/SVM per AU, PDM, triangulation "
                    "(au backend openface)",
        licence=OPENFACE_LICENCE, urls=(OPENFACE_AU_URL,), files=OPENFACE_AU_FILES, size=4_288_549,
        note="never bundled: fetched for each user from OpenFace's own release tag",
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
