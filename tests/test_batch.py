"""Batch runs on one machine: which files, where outputs go, the manifest, resume, failures, Ctrl-C."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from _clips import GRAPH, manifest, write_clips
from _process_checks import as_in_a_terminal, nothing_left_behind  # noqa: F401  - every test: no worker or segment left

from facegraph import Graph
from facegraph._batch import BatchError, BatchOptions, batch_items, expand_sources, run_batch
from facegraph.cli import main


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("clips")
    write_clips(folder)
    (folder / "notes.txt").write_text("not a video\n")
    return folder


@pytest.fixture
def graph_file(tmp_path) -> Path:
    path = tmp_path / "faces_csv.yaml"
    path.write_text(GRAPH)
    return path


def test_sources_glob_folder_list_and_unique_names(tmp_path):
    for rel in ("a/x.mp4", "b/x.mp4", "b/y.avi", "b/.hidden"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_bytes(b"")
    assert expand_sources(str(tmp_path / "*/*.mp4")) == [str(tmp_path / "a/x.mp4"), str(tmp_path / "b/x.mp4")]
    assert expand_sources(str(tmp_path / "**/*.avi")) == [str(tmp_path / "b/y.avi")]
    assert expand_sources(tmp_path / "b") == [str(tmp_path / "b/x.mp4"), str(tmp_path / "b/y.avi")]
    listing = tmp_path / "videos.txt"
    listing.write_text("# two videos\nb/y.avi\n\na/x.mp4  # relative to the list\n")
    assert expand_sources(listing) == [str(tmp_path / "b/y.avi"), str(tmp_path / "a/x.mp4")]
    assert expand_sources(str(tmp_path / "none/*.mp4")) == []
    names = [i.name for i in batch_items([*expand_sources(str(tmp_path / "*/*.mp4")), str(tmp_path / "b/y.avi")])]
    assert names == ["x", "x-2", "y"]


def test_batch_inline_outputs_manifest_and_non_videos(clips, graph_file, tmp_path, capsys):
    out = tmp_path / "out"
    code = main(["run", str(graph_file), "--source", str(clips / "*"), "--batch", "--executor", "inline",
                 "--output", str(out), "--quiet"])
    err = capsys.readouterr().err
    assert code == 0, err
    assert "notes.txt: skipped (not a video" in err and len(err.strip().splitlines()) == 1
    for k in range(3):
        assert (out / f"clip{k}" / "faces.csv").stat().st_size > 0
    lines = manifest(out / "batch.jsonl")
    final = {Path(r["video"]).name: r for r in lines if r["status"] != "running"}
    assert final["notes.txt"]["status"] == "skipped"
    assert [final[f"clip{k}.mp4"]["frames"] for k in range(3)] == [6, 12, 6]
    assert all(final[f"clip{k}.mp4"]["outputs"] == ["faces.csv"] for k in range(3))
    assert {"video", "status", "frames", "seconds", "outputs", "error"} <= set(final["clip0.mp4"])
    # the batch's CSV is the CSV of a separate run on that video
    single = tmp_path / "single"
    assert main(["run", str(graph_file), "--source", str(clips / "clip1.mp4"), "--executor", "inline",
                 "--output", str(single), "--quiet"]) == 0
    assert (single / "faces.csv").read_bytes() == (out / "clip1" / "faces.csv").read_bytes()


def test_batch_takes_a_list_file(clips, graph_file, tmp_path, capsys):
    listing = tmp_path / "videos.txt"
    listing.write_text(f"{clips / 'clip2.mp4'}\n")
    out = tmp_path / "out"
    assert main(["run", str(graph_file), "--batch", str(listing), "--executor", "inline", "--output", str(out)]) == 0
    assert "1 video (1 done), 6 frames in" in capsys.readouterr().out
    assert [r["status"] for r in manifest(out / "batch.jsonl")] == ["running", "done"]


def test_failed_video_is_reported_and_the_rest_run_then_resume(clips, graph_file, tmp_path, capsys):
    out = tmp_path / "out"
    args = ["run", str(graph_file), "--source", str(clips / "clip*.mp4"), "--batch", "--executor", "inline",
            "--output", str(out), "--quiet", "--set", "slow.fail_at=10"]
    assert main(args) == 1
    err = capsys.readouterr().err
    assert "clip1.mp4: failed: node 'slow' (delay) failed" in err
    assert err.strip().splitlines()[-1] == "facegraph: 1 of 3 videos failed"
    assert (out / "clip1" / "facegraph-error.log").exists()
    statuses = [(Path(r["video"]).name, r["status"]) for r in manifest(out / "batch.jsonl")]
    assert statuses.count(("clip1.mp4", "failed")) == 1 and statuses.count(("clip2.mp4", "done")) == 1
    # --resume runs only what is not done; the fault gone, it completes
    started = []
    graph = Graph.load(graph_file)
    result = run_batch(graph, str(clips / "clip*.mp4"), BatchOptions(
        output=out, resume=True, executor="inline", on_event=lambda ev, video, d: started.append((ev, video))))
    assert [Path(v).name for ev, v in started if ev == "started"] == ["clip1.mp4"]
    assert result.failed == 0 and result.count("done") == 3


def test_worker_killed_mid_video_fails_that_video_only(clips, graph_file, tmp_path):
    """The process executor: a node's worker SIGKILLed while the first video runs."""
    graph = Graph.load(graph_file)
    graph.set_param("slow", "ms", 30.0)

    def kill(event: str, video: str, details: dict) -> None:
        if event == "started" and video.endswith("clip0.mp4"):
            os.kill(details["workers"]["mesh"], signal.SIGKILL)

    result = run_batch(graph, [str(clips / "clip0.mp4"), str(clips / "clip2.mp4")],
                       BatchOptions(output=tmp_path / "out", on_event=kill))
    by_name = {Path(r["video"]).name: r for r in result.records}
    assert by_name["clip0.mp4"]["status"] == "failed" and "SIGKILL" in by_name["clip0.mp4"]["error"]
    assert by_name["clip2.mp4"]["status"] == "done" and by_name["clip2.mp4"]["frames"] == 6


def test_jobs_two_gives_the_same_csvs(clips, graph_file, tmp_path):
    graph = Graph.load(graph_file)
    one = run_batch(graph, str(clips / "clip*.mp4"), BatchOptions(output=tmp_path / "one", executor="inline"))
    two = run_batch(graph, str(clips / "clip*.mp4"), BatchOptions(output=tmp_path / "two", jobs=2))
    assert one.count("done") == two.count("done") == 3
    for k in range(3):
        a = (tmp_path / "one" / f"clip{k}" / "faces.csv").read_bytes()
        assert a == (tmp_path / "two" / f"clip{k}" / "faces.csv").read_bytes()


@pytest.mark.parametrize(
    ("source", "output", "message"),
    [
        ("nothing/*.mp4", None, "no file matches"),
        ("CLIPS/*.txt", None, "is a video (CLIPS/notes.txt: not a video"),
        ("CLIPS/clip0.mp4", "FILE/sub", "output folder cannot be written"),
    ],
)
def test_bad_batch_input_is_one_line_exit_2(clips, graph_file, tmp_path, capsys, source, output, message):
    blocker = tmp_path / "file"
    blocker.write_text("")
    args = ["run", str(graph_file), "--source", source.replace("CLIPS", str(clips)), "--batch", "--quiet"]
    if output:
        args += ["--output", output.replace("FILE", str(blocker))]
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert message.replace("CLIPS", str(clips)) in err and len(err.splitlines()) == 1


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full to stand in for a full disk")
def test_full_disk_fails_each_video_in_one_line(clips, graph_file, tmp_path, capsys):
    out = tmp_path / "out"
    code = main(["run", str(graph_file), "--source", str(clips / "clip[02].mp4"), "--batch", "--executor", "inline",
                 "--output", str(out), "--quiet", "--set", "table.path=/dev/full"])
    err = capsys.readouterr().err
    assert code == 1 and "Traceback" not in err
    assert err.count("No space left on device") >= 2 and "2 of 2 videos failed" in err
    assert [r["status"] for r in manifest(out / "batch.jsonl")] == ["running", "failed"] * 2


def test_batch_flags_without_batch_are_refused(graph_file, capsys):
    assert main(["run", str(graph_file), "--executor", "ray"]) == 2
    assert "add --batch" in capsys.readouterr().err
    assert main(["run", str(graph_file), "--batch", "x", "--jobs", "0"]) == 2
    assert "--jobs must be at least 1" in capsys.readouterr().err
    with pytest.raises(BatchError):
        run_batch(Graph.load(graph_file), [], BatchOptions(output=Path("unused")))


def test_ctrl_c_keeps_finished_videos_and_resume_completes(clips, graph_file, tmp_path):
    """SIGINT to the command while its second video runs: exit 130, the manifest says which was interrupted."""
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "facegraph", "run", str(graph_file), "--source", str(clips / "clip*.mp4"),
           "--batch", "--executor", "inline", "--output", str(out), "--quiet", "--set", "slow.ms=400"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=as_in_a_terminal)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            lines = manifest(out / "batch.jsonl") if (out / "batch.jsonl").exists() else []
            if any(r["status"] == "running" and r["video"].endswith("clip1.mp4") for r in lines):
                break
            time.sleep(0.1)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err
    assert "Traceback" not in err and "--resume runs the rest" in err
    last = {Path(r["video"]).name: r["status"] for r in manifest(out / "batch.jsonl")}
    assert last == {"clip0.mp4": "done", "clip1.mp4": "interrupted"}
    done_csv = (out / "clip0" / "faces.csv").read_bytes()
    code = main([*cmd[3:-2], "--resume"])  # the same command, without the slow-down, resumed
    assert code == 0
    last = {Path(r["video"]).name: r["status"] for r in manifest(out / "batch.jsonl")}
    assert last == {"clip0.mp4": "done", "clip1.mp4": "done", "clip2.mp4": "done"}
    assert (out / "clip0" / "faces.csv").read_bytes() == done_csv
