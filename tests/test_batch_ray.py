"""The Ray executor on a local Ray (2 CPUs): same CSVs as a local batch, retries after a SIGKILL, no leftovers."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import psutil
import pytest
from _clips import GRAPH, manifest, write_clips

from facegraph import Graph
from facegraph._batch import BatchOptions, run_batch

ray = pytest.importorskip("ray", reason="the Ray executor tests need Ray (pip install 'facegraph[ray]')")

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def local_ray():
    """One local Ray for the module; afterwards not one of its processes may be left."""
    before = {p.pid for p in psutil.Process().children(recursive=True)}
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
    try:
        yield ray
    finally:
        ray.shutdown()
        left = [p for p in psutil.Process().children(recursive=True) if p.pid not in before]
        _, alive = psutil.wait_procs(left, timeout=15)
        for p in alive:
            p.kill()
        assert not alive, f"Ray left processes behind: {[p.pid for p in alive]}"


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("rayclips")
    write_clips(folder)
    return folder


@pytest.fixture
def graph(tmp_path) -> Graph:
    path = tmp_path / "faces_csv.yaml"
    path.write_text(GRAPH)
    return Graph.load(path)


def test_ray_csvs_equal_the_local_batch_and_returned_outputs(local_ray, clips, graph, tmp_path):
    local = run_batch(graph, str(clips / "*.mp4"), BatchOptions(output=tmp_path / "local", executor="inline"))
    remote = run_batch(graph, str(clips / "*.mp4"), BatchOptions(output=tmp_path / "ray", executor="ray"))
    sent = run_batch(graph, str(clips / "*.mp4"),
                     BatchOptions(output=tmp_path / "sent", executor="ray", return_outputs=True))
    assert local.count("done") == remote.count("done") == sent.count("done") == 3
    for k in range(3):
        want = (tmp_path / "local" / f"clip{k}" / "faces.csv").read_bytes()
        assert (tmp_path / "ray" / f"clip{k}" / "faces.csv").read_bytes() == want
        assert (tmp_path / "sent" / f"clip{k}" / "faces.csv").read_bytes() == want
    lines = manifest(tmp_path / "ray" / "batch.jsonl")
    assert sorted(r["status"] for r in lines) == ["done"] * 3 + ["running"] * 3
    assert local_ray.is_initialized()  # a batch leaves a Ray it did not start running


def test_sigkilled_ray_worker_is_retried_and_the_manifest_shows_it(local_ray, clips, graph, tmp_path):
    graph.set_param("slow", "ms", 300.0)  # each video runs for seconds, so the kill lands mid-video
    killed = []

    def kill(event: str, video: str, details: dict) -> None:
        if event == "started" and video.endswith("clip1.mp4") and details["attempt"] == 1:
            pid = int(details["worker"].rpartition(":")[2])
            os.kill(pid, signal.SIGKILL)
            killed.append(pid)

    result = run_batch(graph, str(clips / "*.mp4"),
                       BatchOptions(output=tmp_path / "out", executor="ray", on_event=kill))
    assert killed
    by_name = {Path(r["video"]).name: r for r in result.records}
    assert all(r["status"] == "done" for r in by_name.values()), by_name
    assert by_name["clip1.mp4"]["attempts"] == 2 and by_name["clip1.mp4"]["retried"]
    assert by_name["clip1.mp4"]["frames"] == 12
    lines = [(Path(r["video"]).name, r["status"]) for r in manifest(tmp_path / "out" / "batch.jsonl")]
    assert ("clip1.mp4", "retrying") in lines


def test_a_failing_video_on_ray_is_reported_not_retried(local_ray, clips, graph, tmp_path):
    graph.set_param("slow", "fail_at", 10)
    result = run_batch(graph, str(clips / "*.mp4"), BatchOptions(output=tmp_path / "out", executor="ray"))
    by_name = {Path(r["video"]).name: r for r in result.records}
    assert by_name["clip1.mp4"]["status"] == "failed" and by_name["clip1.mp4"]["attempts"] == 1
    assert "node 'slow' (delay) failed" in by_name["clip1.mp4"]["error"]
    assert by_name["clip0.mp4"]["status"] == by_name["clip2.mp4"]["status"] == "done"
