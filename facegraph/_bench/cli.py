"""``facegraph bench GRAPH``: throughput, latency and per-node figures of a graph on this machine."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from .._errors import FacegraphError
from ..cli import add_placement_arguments


class BenchUsageError(FacegraphError):
    exit_code = 2


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("graph")
    parser.add_argument("--source", help="replace the graph's source: a file, folder, glob, URL or camera index")
    parser.add_argument("--frames", type=int, help="frames to run (default: the whole source)")
    parser.add_argument("--warmup", type=int, default=20, help="first frames left out of FPS and latency (default 20)")
    parser.add_argument("--executor", default="process", choices=["process", "inline", "all"],
                        help="executor to measure, or all of those available here (default process)")
    parser.add_argument("--realtime", type=float, metavar="FPS",
                        help="feed the source at this camera pace; frames the graph cannot take are dropped")
    parser.add_argument("--sequential", action="store_true",
                        help="also run the nodes in a plain hand-written loop and report the speed-up")
    parser.add_argument("--json", metavar="FILE", help="write the figures as JSON")
    parser.add_argument("--plot", metavar="FILE.png", help="write per-node times and latency over time (matplotlib)")
    parser.add_argument("--trace", metavar="FILE.json", help="write per-node spans as a Chrome / Perfetto trace")
    parser.add_argument("--set", action="append", default=[], metavar="NODE.PARAM=VALUE", help="override a parameter")
    parser.add_argument("--output", help="folder for the sinks' files (default ./facegraph-out/<graph name>-bench/)")
    parser.add_argument("--max-in-flight", type=int,
                        help="frames inside the graph at once (default 4 for a live source, 16 for a file)")
    parser.add_argument("--quiet", action="store_true", help="no table on the terminal")
    add_placement_arguments(parser)
    parser.add_argument("--threads", type=int, metavar="N",
                        help="thread budget of each node under inline and in the sequential loop "
                        "(default: every usable core; 1 is a loop that leaves libraries single-threaded)")


def pick_costs(asked: str, graph: Any, out_dir: Path) -> tuple[dict[str, float] | None, str]:
    """(measured costs or None, where they came from) for ``--costs``."""
    from .._costs import FILE_NAME, load_costs

    if asked == "declared":
        return None, "declared"
    path = out_dir / FILE_NAME if asked == "auto" else Path(asked)
    if asked != "auto" and not path.is_file():
        raise BenchUsageError(f"--costs {asked}: no such file")
    costs = load_costs(path, graph)
    if costs is None:
        if asked != "auto":
            raise BenchUsageError(f"--costs {asked}: not the costs of this graph (other nodes or parameters)")
        return None, "declared"
    return costs, f"measured ({path})"


def main(args: argparse.Namespace) -> int:
    from ..cli import load_graph, output_dir_for
    from .harness import BenchOptions, bench, resolve_executors, to_json_ready
    from .report import print_report, write_json

    if args.frames is not None and args.frames <= 0:
        raise BenchUsageError(f"--frames must be positive, got {args.frames}")
    if args.warmup < 0:
        raise BenchUsageError(f"--warmup must be 0 or more, got {args.warmup}")
    if args.realtime is not None and args.realtime <= 0:
        raise BenchUsageError(f"--realtime must be a positive FPS, got {args.realtime:g}")
    graph = load_graph(args.graph, args.source, args.set)
    from .._run import available_executors

    executors = resolve_executors(args.executor)
    missing = [e for e in executors if e not in available_executors()]
    if missing or not executors:
        raise BenchUsageError(
            f"executor '{(missing or ['any'])[0]}' is not available here; available: {', '.join(available_executors())}"
        )
    out_dir = output_dir_for(graph, args.output or str(Path("facegraph-out") / f"{graph.name}-bench"))
    costs, costs_from = pick_costs(args.costs, graph, out_dir)
    options = BenchOptions(
        frames=args.frames,
        warmup=args.warmup,
        executors=executors,
        realtime=args.realtime,
        sequential=args.sequential,
        output_dir=out_dir,
        max_in_flight=args.max_in_flight,
        threads=args.threads,
        placement=args.placement,
        renice=args.renice,
        costs=costs,
        costs_from=costs_from,
    )
    report = bench(graph, options)
    if not args.quiet:
        print_report(report, explain=args.explain)
    if args.json:
        write_json(args.json, to_json_ready(report))
    main_run = next((r for r in report["_runs"] if r.executor == report["executor"]), report["_runs"][0])
    if main_run.executor == "process" and main_run.stats.placement:
        from .._costs import FILE_NAME, save_costs

        save_costs(out_dir / FILE_NAME, graph, main_run.stats)  # what the next bench of this graph places by
    if args.trace:
        from .trace import write_trace

        write_trace(args.trace, main_run.stats.nodes, label=f"{graph.name} ({main_run.executor})")
    if args.plot:
        from .plot import write_plot

        write_plot(args.plot, main_run.summary, title=f"{graph.name} — {main_run.executor}")
    written = [p for p in (args.json, args.plot, args.trace) if p]
    if written and not args.quiet:
        print(f"wrote {', '.join(written)}", file=sys.stderr)
    return 0
