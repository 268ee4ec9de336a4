"""Many short videos three ways: one `facegraph run` after another, `--batch --jobs 2`, `--executor ray`.

    python benchmarks/batch.py                      # 8 clips of 90 frames → benchmarks/results/batch.json
    python benchmarks/batch.py --videos 4 --frames 30 --ways loop,jobs2

The clips are consecutive pieces of the shared single-face videos, re-encoded to
H.264 MP4 (their size kept), so every way runs the same frames. FPS is all frames
of all clips over the wall time of the whole command(s), start-up included: that
is what a user waits for. After the runs the per-video CSVs are compared byte for byte.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from _common import REPO, RESULTS, SHARED, fail, markdown_table

SOURCES = (
    "openface_2015-10-15-15-14.avi",
    "pyfeat_WolfgangLanger_Pexels.mp4",
    "ytf_0188_03_021_al_pacino.avi",
    "ytf_1461_01_021_noam_chomsky.avi",
)
FACEGRAPH = str(Path(sys.executable).with_name("facegraph"))


def make_clips(folder: Path, count: int, frames: int) -> list[Path]:
    """``count`` clips of ``frames`` frames, cut in turn from the shared videos."""
    import av

    videos = [SHARED / "data" / "videos" / name for name in SOURCES]
    missing = [v for v in videos if not v.exists()]
    if missing:
        fail(f"{missing[0]}: not found (set FACEGRAPH_SHARED to the folder holding data/videos)")
    folder.mkdir(parents=True, exist_ok=True)
    clips: list[Path] = []
    offsets = dict.fromkeys(videos, 0)
    while len(clips) < count:
        video = videos[len(clips) % len(videos)]
        path = folder / f"{video.stem[:24]}_{offsets[video]:04d}.mp4"
        with av.open(str(video)) as src, av.open(str(path), "w") as out:
            stream = out.add_stream("libx264", rate=25)
            taken = 0
            for i, frame in enumerate(src.decode(video=0)):
                if i < offsets[video]:
                    continue
                if taken == 0:
                    stream.width, stream.height, stream.pix_fmt = frame.width, frame.height, "yuv420p"
                fresh = av.VideoFrame.from_ndarray(frame.to_ndarray(format="bgr24"), format="bgr24")
                for packet in stream.encode(fresh):
                    out.mux(packet)
                taken += 1
                if taken == frames:
                    break
            for packet in stream.encode():
                out.mux(packet)
        offsets[video] += frames
        clips.append(path)
    return clips


def timed(cmd: list[str]) -> float:
    start = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if done.returncode != 0:
        fail(f"{' '.join(cmd)} exited {done.returncode}: {done.stderr.strip()[-400:]}")
    return wall


def run_way(way: str, graph: str, clips: list[Path], out: Path) -> float:
    if way == "loop":  # what a user writes today: one command per video
        start = time.perf_counter()
        for clip in clips:
            timed([FACEGRAPH, "run", graph, "--source", str(clip), "--output", str(out / clip.stem), "--quiet"])
        return time.perf_counter() - start
    batch = [FACEGRAPH, "run", graph, "--source", str(clips[0].parent / "*.mp4"), "--batch", "--output", str(out),
             "--quiet"]
    if way.startswith("jobs"):  # jobs2 (the default executor choice), jobs2-process, jobs2-inline
        jobs, _, executor = way[4:].partition("-")
        return timed([*batch, "--jobs", jobs, *(["--executor", executor] if executor else [])])
    if way == "ray":
        return timed([*batch, "--executor", "ray"])
    if way == "ray-kill":  # the same, with the Ray worker of the first video SIGKILLed once it runs
        return killed_run([*batch, "--executor", "ray"], out / "batch.jsonl")
    fail(f"unknown way '{way}' (loop, jobsN, jobsN-process, jobsN-inline, ray)")
    return 0.0


def killed_run(cmd: list[str], manifest: Path) -> float:
    """Run ``cmd``, SIGKILL the worker named by the manifest's first ``running`` line, check the retry."""
    import os
    import signal

    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    killed = None
    while proc.poll() is None and killed is None:
        time.sleep(0.05)
        lines = [json.loads(x) for x in manifest.read_text().splitlines()] if manifest.exists() else []
        running = [r for r in lines if r["status"] == "running"]
        if running:
            killed = running[0]
            os.kill(int(killed["worker"].rpartition(":")[2]), signal.SIGKILL)
    _, err = proc.communicate()
    wall = time.perf_counter() - start
    if proc.returncode != 0 or killed is None:
        fail(f"ray-kill: exit {proc.returncode}, killed {killed}: {err.strip()[-400:]}")
    lines = [json.loads(x) for x in manifest.read_text().splitlines()]
    final = [r for r in lines if r["video"] == killed["video"] and r["status"] not in ("running", "retrying")]
    retried = [r for r in lines if r["video"] == killed["video"] and r["status"] == "retrying"]
    print(f"ray-kill: SIGKILLed worker {killed['worker']} running {Path(killed['video']).name}; manifest: "
          f"{len(retried)} retrying line(s), final status {final[-1]['status']}, attempts {final[-1]['attempts']}; "
          f"{sum(r['status'] == 'done' for r in lines)} of {len({r['video'] for r in lines})} videos done")
    return wall


def frame_count(clips: list[Path]) -> int:
    import av

    total = 0
    for clip in clips:
        with av.open(str(clip)) as c:
            total += sum(1 for _ in c.decode(video=0))
    return total


def same_csvs(a: Path, b: Path, clips: list[Path], name: str) -> bool:
    return all((a / c.stem / name).read_bytes() == (b / c.stem / name).read_bytes() for c in clips)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--graph", default=str(REPO / "graphs" / "video_au.yaml"))
    parser.add_argument("--videos", type=int, default=8)
    parser.add_argument("--frames", type=int, default=90)
    parser.add_argument("--ways", default="loop,jobs2,ray")
    parser.add_argument("--json", default=str(RESULTS / "batch.json"))
    parser.add_argument("--keep", help="keep clips and outputs in this folder")
    args = parser.parse_args()
    work = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="fg-batch-bench-"))
    try:
        clips = make_clips(work / "clips", args.videos, args.frames)
        frames = frame_count(clips)
        ways = args.ways.split(",")
        walls: dict[str, float] = {}
        for way in ways:
            walls[way] = run_way(way, args.graph, clips, work / way)
            print(f"{way}: {frames} frames in {walls[way]:.1f} s = {frames / walls[way]:.1f} FPS", flush=True)
        csv_name = Path(args.graph).stem + ".csv"
        base = ways[0]
        identical = {w: same_csvs(work / base, work / w, clips, csv_name) for w in ways[1:]}
        rows = [[w, f"{walls[w]:.1f}", f"{frames / walls[w]:.1f}", f"{walls[base] / walls[w]:.2f}×",
                 "—" if w == base else ("yes" if identical[w] else "NO")] for w in ways]
        print(markdown_table(["way", "wall s", "FPS", f"vs {base}", f"CSVs == {base}"], rows))
        report: dict[str, Any] = {"videos": len(clips), "frames": frames, "graph": args.graph,
                                  "wall_s": walls, "fps": {w: frames / walls[w] for w in ways},
                                  "csvs_identical_to_" + base: identical}
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(report, indent=2))
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
