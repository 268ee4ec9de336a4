"""The model store and `facegraph models`: catalogue, cache folder, verified fetch (file:// URLs), packs, offline."""

from __future__ import annotations

import hashlib
import urllib.error
import zipfile
from pathlib import Path

import pytest

from facegraph import ModelError
from facegraph import _modelstore as store
from facegraph.cli import main


@pytest.fixture
def models_dir(tmp_path, monkeypatch):
    folder = tmp_path / "models"
    monkeypatch.setenv(store.ENV, str(folder))
    return folder


@pytest.fixture
def temp_entries():
    """Register entries for one test and remove them afterwards."""
    added: list[str] = []

    def add(*entries: store.ModelEntry) -> None:
        store.register_models(*entries)
        added.extend(e.name for e in entries)

    yield add
    for name in added:
        store._ENTRIES.pop(name, None)
    for alias in [a for a, n in store._ALIASES.items() if n in added]:
        store._ALIASES.pop(alias)


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_cache_dir_follows_the_environment(models_dir, monkeypatch):
    assert store.cache_dir() == models_dir
    monkeypatch.delenv(store.ENV)
    monkeypatch.setenv("XDG_CACHE_HOME", "/somewhere")
    assert store.cache_dir().parts[-2:] == ("facegraph", "models")


def test_catalogue_knows_the_packs_and_bundled_models(models_dir):
    entries = store.entries()
    assert {"buffalo_l", "buffalo_s", "buffalo_l/w600k_r50", "buffalo_s/w600k_mbf", "buffalo_s/det_500m",
            "mediapipe/face_landmark", "yunet_2023mar"} <= set(entries)
    assert entries["buffalo_l"].members == tuple(
        f"buffalo_l/{m}" for m in ("det_10g", "w600k_r50", "2d106det", "1k3d68", "genderage"))
    assert store.lookup("w600k_r50").name == "buffalo_l/w600k_r50"
    assert store.lookup("buffalo_l/w600k_r50").fetch_name == "buffalo_l"
    for entry in entries.values():
        assert entry.sha256 is None or len(entry.sha256) == 64


def test_bundled_mediapipe_model_is_present_and_matches_its_hash():
    pytest.importorskip("mediapipe")
    entry = store.lookup("mediapipe/face_detection_short_range")
    path = store.resolve(entry.name)
    assert path.is_file() and store.sha256_file(path) == entry.sha256


def test_missing_model_message(models_dir):
    with pytest.raises(ModelError, match=r"^needs model buffalo_s/w600k_mbf \(facegraph models fetch buffalo_s\)$"):
        store.resolve("buffalo_s/w600k_mbf")
    with pytest.raises(ModelError, match="unknown model"):
        store.resolve("no_such_model")


def test_onnx_resolve_model_accepts_names(models_dir):
    from facegraph.nodes.models._onnx import resolve_model

    with pytest.raises(ModelError, match="facegraph models fetch buffalo_l"):
        resolve_model("buffalo_l/w600k_r50")
    (models_dir / "buffalo_l").mkdir(parents=True)
    (models_dir / "buffalo_l" / "w600k_r50.onnx").write_bytes(b"x")
    assert resolve_model("buffalo_l/w600k_r50") == models_dir / "buffalo_l" / "w600k_r50.onnx"
    assert resolve_model("w600k_r50") == models_dir / "buffalo_l" / "w600k_r50.onnx"


def test_fetch_verifies_and_renames(models_dir, temp_entries, tmp_path):
    payload = b"onnx bytes" * 100
    src = tmp_path / "served.onnx"
    src.write_bytes(payload)
    temp_entries(
        store.ModelEntry("t/good", "t/good.onnx", urls=(src.as_uri(),), sha256=sha(payload)),
        store.ModelEntry("t/bad", "t/bad.onnx", urls=(src.as_uri(),), sha256="0" * 64),
        store.ModelEntry("t/nohash", "t/nohash.onnx", urls=(src.as_uri(),)),
    )
    lines: list[str] = []
    assert store.fetch("t/good", log=lines.append).read_bytes() == payload
    assert store.fetch("t/good", log=lines.append) == models_dir / "t" / "good.onnx"
    assert "already present" in lines[-1]
    with pytest.raises(ModelError, match="SHA-256"):
        store.fetch("t/bad", log=lines.append)
    assert sorted(p.name for p in (models_dir / "t").iterdir()) == ["good.onnx"], "no partial file may remain"
    store.fetch("t/nohash", log=lines.append)
    assert any("not verified" in line and sha(payload) in line for line in lines)


def test_fetch_pack_extracts_members(models_dir, temp_entries, tmp_path):
    archive = tmp_path / "pk.zip"
    with zipfile.ZipFile(archive, "w") as zf:  # insightface packs hold a top folder of the pack's name
        zf.writestr("pk/a.onnx", b"a")
        zf.writestr("pk/b.onnx", b"b")
    temp_entries(
        store.ModelEntry("pk", "pk", urls=(archive.as_uri(),), members=("pk/a", "pk/b")),
        store.ModelEntry("pk/a", "pk/a.onnx", pack="pk", sha256=sha(b"a")),
        store.ModelEntry("pk/b", "pk/b.onnx", pack="pk"),
    )
    path = store.fetch("pk/b", log=lambda _: None)  # a member fetches its pack
    assert path == models_dir / "pk" / "b.onnx" and path.read_bytes() == b"b"
    assert (models_dir / "pk" / "a.onnx").read_bytes() == b"a"
    assert not list(models_dir.glob("*.zip")) and not list(models_dir.glob(".pk*"))


def test_offline_fetch_is_one_line_and_exit_1(models_dir, monkeypatch, capsys):
    def offline(*args, **kwargs):
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(store.urllib.request, "urlopen", offline)
    assert main(["models", "fetch", "buffalo_l"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "cannot download buffalo_l.zip (offline?)" in err[0]
    assert not models_dir.exists() or not any(models_dir.rglob("*.part"))


def test_models_list_command(models_dir, capsys):
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    assert str(models_dir) in out
    line = next(x for x in out.splitlines() if x.startswith("buffalo_l/w600k_r50 "))
    assert "no" in line.split() and "facegraph models fetch buffalo_l" in line and "unknown" in line
    yunet = next(x for x in out.splitlines() if x.startswith("yunet_2023mar "))
    assert "8f2383e4dd3c" in yunet and "MIT" in yunet
    assert main(["models", "list", "nope"]) == 2


def test_models_path_command(models_dir, capsys):
    assert main(["models", "path", "buffalo_l/det_10g"]) == 1
    assert "facegraph models fetch buffalo_l" in capsys.readouterr().err
    (models_dir / "buffalo_l").mkdir(parents=True)
    (models_dir / "buffalo_l" / "det_10g.onnx").write_bytes(b"x")
    assert main(["models", "path", "buffalo_l/det_10g"]) == 0
    assert Path(capsys.readouterr().out.strip()) == models_dir / "buffalo_l" / "det_10g.onnx"


def test_validate_reports_missing_models(models_dir, capsys):
    graph = Path(__file__).resolve().parents[1] / "graphs" / "extract_embeddings.yaml"
    assert main(["validate", str(graph)]) == 0  # a model not fetched yet is a note ...
    out = capsys.readouterr().out
    assert "note: " in out
    assert "node 'emb' (embed): needs model buffalo_l/w600k_r50 (facegraph models fetch buffalo_l)" in out
    assert main(["validate", "--strict", str(graph)]) == 2  # ... and an error under --strict
    err = capsys.readouterr().err
    assert "node 'emb' (embed): needs model buffalo_l/w600k_r50 (facegraph models fetch buffalo_l)" in err


def test_every_shipped_model_file_is_in_the_checkout():
    """Each SHIPPED_MODELS entry's file exists with its catalogue hash (a git-ignored .onnx once left two out)."""
    import hashlib
    from pathlib import Path

    from facegraph.nodes.models import _modelparams

    root = Path(_modelparams.__file__).parent
    for entry in _modelparams.SHIPPED_MODELS:
        name, rel, sha = entry[0], entry[1], entry[-2]
        path = root / rel
        assert path.is_file(), f"{name}: {path} missing"
        assert hashlib.sha256(path.read_bytes()).hexdigest() == sha, f"{name}: {path} differs from its hash"
