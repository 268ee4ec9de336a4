"""facegraph.analyze, analyze_images and Results.to_pandas: the CSV sink's table, from Python."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
from _clips import GRAPH, write_clips
from facegraph.nodes.io import _openface as of

import facegraph
from facegraph.cli import main

pd = pytest.importorskip("pandas", reason="facegraph.analyze returns pandas DataFrames (pip install pandas)")


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("aclips")
    write_clips(folder, (10, 6))
    return folder


def _csv_text(path: Path) -> tuple[list[str], list[list[str]]]:
    rows = list(csv.reader(path.open(encoding="utf-8"), skipinitialspace=True))
    return rows[0], rows[1:]


def _as_text(frame) -> list[list[str]]:
    """Each cell as the CSV sink writes it (OpenFace's decimals; empty for missing)."""
    return [[of.format_value(c, None if pd.isna(v) else v) for c, v in zip(frame.columns, row, strict=True)]
            for row in frame.itertuples(index=False)]


def test_analyze_equals_the_csv_sink_for_the_shipped_graph(clips, tmp_path, monkeypatch):
    # no OpenFace models: au's auto backend is geometry (openface post-processes files at the end: its revised
    # values reach the table sinks, not analyze's streamed rows)
    monkeypatch.setenv("FACEGRAPH_MODELS", str(tmp_path / "no-models"))
    video = clips / "clip0.mp4"
    assert main(["run", "graphs/video_au.yaml", "--source", str(video), "--executor", "inline",
                 "--output", str(tmp_path), "--quiet"]) == 0
    header, body = _csv_text(tmp_path / "video_au.csv")
    (tmp_path / "cwd").mkdir()
    monkeypatch.chdir(tmp_path / "cwd")
    table = facegraph.analyze(video)  # graph="video_au": the shipped graph, found by name
    assert not list((tmp_path / "cwd").iterdir())  # its sinks are taken out: analyze writes no file
    assert list(table.columns) == header
    assert len(body) == len(table) > 0
    assert _as_text(table) == body
    assert table["frame"].dtype == "int64" and table["AU12_r"].dtype == "float64"


def test_analyze_has_the_openface_backends_post_processed_values(clips, tmp_path, monkeypatch):
    """The openface backend revises a file's AUs at the end of the run; analyze's table has the revised values
    (as the CSV does) and leaves nothing behind in the working folder (it used to write .facegraph/ there)."""
    from conftest import SHARED

    models = SHARED / "models" / "openface_2.2" / "AU_predictors"
    if not (models / "AU_all_best.txt").is_file():
        pytest.skip(f"needs OpenFace 2.2's AU models in {models} (../shared is not next to this checkout)")
    video = clips / "clip0.mp4"
    assert main(["run", "graphs/video_au.yaml", "--source", str(video), "--executor", "inline", "--output",
                 str(tmp_path), "--set", "au.backend=openface", "--set", f"au.model={models}", "--quiet"]) == 0
    header, body = _csv_text(tmp_path / "video_au.csv")
    (tmp_path / "cwd").mkdir()
    monkeypatch.chdir(tmp_path / "cwd")
    table = facegraph.analyze(video, au__backend="openface", au__model=str(models))
    assert not list((tmp_path / "cwd").iterdir())
    assert list(table.columns) == header and "AU28_c" in header
    assert _as_text(table) == body


def test_batch_mode_adds_a_video_column_and_params_apply(clips, tmp_path):
    graph = tmp_path / "faces_csv.yaml"
    graph.write_text(GRAPH)
    table = facegraph.analyze(str(clips / "*.mp4"), graph=graph, faces__min_score=0.5)
    assert list(table.columns[:3]) == ["video", "frame", "face_id"]
    assert sorted(set(table["video"])) == [str(clips / "clip0.mp4"), str(clips / "clip1.mp4")]
    none = facegraph.analyze(clips / "clip1.mp4", graph=graph, **{"faces.min_score": 1.0})
    assert len(none) == 0 and "pose_Rx" in none.columns


def test_results_to_pandas_from_any_run(clips, tmp_path):
    graph = tmp_path / "faces_csv.yaml"
    graph.write_text(GRAPH)
    results = facegraph.run(graph, str(clips / "clip1.mp4"), output_dir=tmp_path / "out").collect()
    assert isinstance(results, facegraph.Results) and len(results) == 6
    header, body = _csv_text(tmp_path / "out" / "faces.csv")
    table = results.to_pandas()
    assert list(table.columns) == header and _as_text(table) == body
    plain = facegraph.Graph("plain")
    src = plain.add("synthetic", id="src", frames_total=3, width=16, height=16)
    plain.add("passthrough", id="p", value=src.frame)
    frames = facegraph.run(plain).collect().to_pandas()
    assert list(frames["frame_id"]) == [0, 1, 2] and "p.out.timestamp" in frames.columns


def test_analyze_images_each_on_its_own(tmp_path):
    from facegraph.nodes.io import _sample

    folder = _sample.images_dir()
    images = [folder / "t1.jpg", folder / "Tom_Hanks_54745.png"]  # a group photo; a crop too tight to detect
    table = facegraph.analyze_images(images)
    assert list(table.columns[:2]) == ["image", "frame"]
    assert set(table["image"]) == {str(images[0])} and len(table) >= 3
    assert set(table["frame"]) == {1}  # each image is frame 1 of its own run


def test_unknown_graph_and_bad_params_are_one_line():
    with pytest.raises(facegraph.GraphError, match=r"shipped: .*video_au"):
        facegraph.analyze("x.mp4", graph="no_such_graph")
    with pytest.raises(facegraph.GraphError, match="must name its node"):
        facegraph.analyze("x.mp4", min_score=0.6)
    with pytest.raises(AttributeError):
        facegraph.no_such_function  # noqa: B018
