"""The default AU graph on a shared face video: every executor, the hand-written loop, and a 30 FPS camera.

    python benchmarks/bench_au.py [--video PATH] [--frames N] [--realtime 30] [--json FILE]

Prints the figures and the markdown rows for benchmarks/README.md; writes the full report as JSON.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

from _common import DEFAULT_GRAPH, DEFAULT_VIDEO, RESULTS, load_checked, markdown_table, top_nodes


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--graph", type=Path, default=DEFAULT_GRAPH)
    parser.add_argument("--video", type=Path, default=DEFAULT_VIDEO)
    parser.add_argument("--frames", type=int, help="frames per run (default: the whole video)")
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--realtime", type=float, default=30.0, help="camera pace for the latency run; 0 to skip")
    parser.add_argument("--executor", default="all", help="process, inline or all (default)")
    parser.add_argument("--set", action="append", default=[], metavar="NODE.PARAM=VALUE")
    parser.add_argument("--json", type=Path, default=RESULTS / "bench_au.json")
    args = parser.parse_args(argv)

    from facegraph._bench.harness import BenchOptions, bench, resolve_executors, run_once, to_json_ready
    from facegraph._bench.report import format_report, headline, write_json

    graph = load_checked(args.graph, args.video, args.set)
    executors = resolve_executors(args.executor)
    with tempfile.TemporaryDirectory(prefix="facegraph-bench-") as tmp:
        options = BenchOptions(frames=args.frames, warmup=args.warmup, executors=executors, sequential=True,
                               output_dir=Path(tmp))
        report = bench(graph, options)
        print(format_report(report))
        realtime = None
        if args.realtime:
            rt_options = BenchOptions(frames=args.frames, warmup=args.warmup, realtime=args.realtime,
                                      output_dir=Path(tmp) / "realtime")
            (Path(tmp) / "realtime").mkdir()
            realtime = run_once(graph, executors[0], rt_options, Path(tmp) / "realtime").summary
            print("\nrealtime " + headline(realtime))
    out = to_json_ready(report)
    if realtime is not None:
        out["realtime"] = {k: v for k, v in realtime.items() if k != "latency_series"}
    write_json(args.json, out)

    rows = []
    for run in out.get("runs") or [out]:
        lat = run["latency_ms"]
        rows.append([run["executor"], f"{run['fps']:.1f}", f"{lat['p50']:.1f}", f"{lat['p95']:.1f}",
                     run["dropped"], f"{run.get('speedup', 0):.2f}×", top_nodes(run)])
    rows.append(["sequential loop", f"{out['sequential_fps']:.1f}", "", "", "", "1.00×", ""])
    if realtime is not None:
        lat = realtime["latency_ms"]
        rows.append([f"{realtime['executor']} @ {args.realtime:g} FPS", f"{realtime['fps']:.1f}", f"{lat['p50']:.1f}",
                     f"{lat['p95']:.1f}", f"{realtime['dropped']} ({realtime['dropped_pct']:.1f} %)", "",
                     top_nodes(realtime)])
    print("\n" + markdown_table(["run", "FPS", "p50 ms", "p95 ms", "dropped", "vs sequential", "costliest nodes (ms)"],
                                rows))
    print(f"\nmachine: {json.dumps(out['machine'])}\nwrote {args.json}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
