"""The ``facegraph`` command: run, validate, nodes, graph, bench, models.

Exit codes: 0 success, 1 failure while running, 2 bad graph or bad arguments,
130 interrupted. Messages are one or two lines; ``--debug`` adds tracebacks.
"""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import sys
import time
import traceback
from pathlib import Path
from typing import Any

import yaml

from ._errors import FacegraphError, GraphError, NodeFailure
from ._graph import Graph
from ._node import RunContext

log = logging.getLogger("facegraph")

#: subcommands that live in their own modules: name → (module, help)
PLUGGED = {
    "bench": ("facegraph._bench.cli", "measure FPS and latency of a graph"),
    "models": ("facegraph._models_cli", "list and fetch model files"),
}


def _missing_dependency(command: str, package: str) -> Any:
    def fail(args: argparse.Namespace) -> int:
        raise UsageError(f"'facegraph {command}' needs the Python package '{package}', which is not installed")

    return fail


def plugged_commands() -> dict[str, tuple[str, str]]:
    """Subcommands other packages add under the ``facegraph.commands`` entry-point group (``name = "module"``).

    The module has ``add_arguments(parser)``, ``main(args)`` and a one-line ``HELP``;
    its import is deferred to here so the engine never names the packages that plug in.
    """
    from importlib.metadata import entry_points

    return {ep.name: (ep.value, "") for ep in entry_points(group="facegraph.commands") if ep.name not in PLUGGED}


class UsageError(FacegraphError):
    exit_code = 2


def parse_set(items: list[str]) -> dict[str, Any]:
    """``node.param=value`` pairs; values are read as YAML scalars (``0.6``, ``true``, ``[1, 2]``)."""
    out = {}
    for item in items or []:
        key, eq, text = item.partition("=")
        if not eq or "." not in key:
            raise UsageError(f"--set expects node.param=value, got {item!r}")
        try:
            out[key] = yaml.safe_load(text) if text else ""
        except yaml.YAMLError:
            out[key] = text
    return out


def parse_source(text: str | None) -> Any:
    """A camera index stays an int; everything else is a path, URL or name."""
    if text is None:
        return None
    return int(text) if text.isdigit() else text


def load_graph(path: str, source: str | None = None, sets: list[str] | None = None) -> Graph:
    from ._run import set_source

    graph = Graph.load(path)
    if source is not None:
        set_source(graph, parse_source(source))
    by_node: dict[str, dict[str, Any]] = {}
    for key, value in parse_set(sets or []).items():
        node_id, _, name = key.partition(".")
        by_node.setdefault(node_id, {})[name] = value
    for node_id, params in by_node.items():  # one node's --set values are checked together, in any order
        graph.set_params(node_id, params)
    return graph.check()


def output_dir_for(graph: Graph, output: str | None) -> Path:
    from ._osutil import unwritable_folder

    path = Path(output) if output else Path("facegraph-out") / graph.name
    problem = unwritable_folder(path)
    if problem:
        raise UsageError(problem)
    return path


def cmd_run(args: argparse.Namespace) -> int:
    from ._run import Run, RunOptions

    if args.batch is not None:
        return cmd_batch(args)
    if args.executor == "ray":
        raise UsageError("--executor ray runs batches: add --batch (one graph per video, as Ray tasks)")
    if args.resume or args.jobs != 1:
        raise UsageError("--jobs and --resume apply to batches: add --batch")
    graph = load_graph(args.graph, args.source, args.set)
    missing = graph.requirements()
    if missing:  # a model or gallery that is not here: say so before any worker starts
        raise UsageError("\n".join(missing))
    out_dir = output_dir_for(graph, args.output)
    context = RunContext(output_dir=out_dir, graph_name=graph.name, quiet=args.quiet)
    bar = _Progress(enabled=not args.quiet)
    from ._bench.cli import pick_costs

    costs, costs_from = pick_costs(args.costs, graph, out_dir)
    options = RunOptions(context=context, max_frames=args.max_frames, on_start=bar.start, outputs=[],
                         placement=args.placement, costs=costs, renice=args.renice)
    if args.max_in_flight:
        options.max_in_flight = args.max_in_flight
    run = Run(graph, args.executor or "process", options)
    started = time.perf_counter()
    first = last = None  # when the first and last frames came out: FPS without the start-up
    try:
        for _ in run:
            last = time.perf_counter()
            first = first or last
            bar.update()
    except KeyboardInterrupt:
        bar.close()
        print(f"facegraph: interrupted; outputs so far are in {out_dir}", file=sys.stderr)
        return 130
    except NodeFailure as exc:
        bar.close()
        write_failure_log(out_dir, exc)
        raise
    finally:
        bar.close()
        if args.stats:
            Path(args.stats).write_text(json.dumps(run.stats.summary(), indent=2))
    summary = run.stats.summary()
    if run.stats.placement:
        from ._costs import FILE_NAME, save_costs

        save_costs(out_dir / FILE_NAME, graph, run.stats)  # what the next run into this folder places by
        if args.explain:
            from ._process._plan import format_placement

            print(f"placement by {costs_from} costs:\n{format_placement(run.stats.placement, run.stats.frames_out)}")
    if not args.quiet:
        dropped = f", {summary['dropped']} dropped" if summary["dropped"] else ""
        frames = summary["frames_out"]
        rate = ""
        if first is not None and last is not None and frames > 1 and last > first:
            rate = f", {(frames - 1) / (last - first):.1f} FPS after {first - started:.1f} s of start-up"
        print(f"facegraph: {frames} frames in {summary['wall_s']:.1f} s{rate}{dropped}; outputs in {out_dir}")
    return 0


def cmd_batch(args: argparse.Namespace) -> int:
    """``run --batch``: the graph once per video; exit 1 when any video failed, 130 when interrupted."""
    from ._batch import MANIFEST, BatchOptions, BatchProgress, run_batch

    sources = args.batch or args.source
    if not sources:
        raise UsageError("--batch needs videos: --source 'videos/*.mp4', --batch FOLDER or --batch LIST.txt")
    if args.jobs < 1:
        raise UsageError(f"--jobs must be at least 1, got {args.jobs}")
    if args.num_cpus_per_video <= 0:
        raise UsageError(f"--num-cpus-per-video must be positive, got {args.num_cpus_per_video}")
    if args.executor == "ray" and args.jobs != 1:
        raise UsageError("--jobs is for local batches; Ray runs as many videos as the cluster has CPUs for")
    graph = load_graph(args.graph, None, args.set)
    missing = graph.requirements()
    if missing:
        raise UsageError("\n".join(missing))
    output = Path(args.output) if args.output else Path("facegraph-out") / graph.name
    opts = BatchOptions(
        output=output, jobs=args.jobs, resume=args.resume, max_frames=args.max_frames,
        executor=args.executor or "auto", max_in_flight=args.max_in_flight, address=args.address,
        num_cpus_per_video=args.num_cpus_per_video, max_retries=args.max_retries, return_outputs=args.return_outputs,
    )
    result = run_batch(graph, sources, opts, progress=None if args.quiet else BatchProgress())
    for rec in result.records:
        if rec["status"] == "skipped":
            print(f"facegraph: {rec['video']}: skipped ({rec['error']})", file=sys.stderr)
        elif rec["status"] == "failed":
            print(f"facegraph: {rec['video']}: failed: {rec['error']}", file=sys.stderr)
    counts = {k: result.count(k) for k in ("done", "failed", "skipped", "interrupted")}
    ran = [r for r in result.records if r["status"] != "skipped"]
    parts = [f"{n} {k}" for k, n in counts.items() if n]
    resumed = sum(1 for r in result.records if r.get("resumed"))
    if resumed:
        parts.append(f"{resumed} already done")
    rate = f", {result.frames / result.wall_s:.1f} FPS" if result.frames and result.wall_s > 0 else ""
    where = f"outputs in {output}/<video>/, manifest {output / MANIFEST}"
    if result.interrupted:
        print(f"facegraph: interrupted; {', '.join(parts) or 'nothing finished'}; {where} "
              "(--resume runs the rest)", file=sys.stderr)
        return 130
    if not args.quiet or counts["failed"]:
        noun = "video" if len(ran) == 1 else "videos"
        print(f"facegraph: {len(ran)} {noun} ({', '.join(parts) or 'none'}), {result.frames} frames in "
              f"{result.wall_s:.1f} s{rate}; {where}", file=sys.stderr if counts["failed"] else sys.stdout)
    if counts["failed"]:
        print(f"facegraph: {counts['failed']} of {len(ran)} videos failed", file=sys.stderr)
        return 1
    return 0


def write_failure_log(out_dir: Path, exc: NodeFailure) -> None:
    path = out_dir / "facegraph-error.log"
    try:
        path.write_text(f"{exc}\n\n{exc.traceback}")
        exc.args = (f"{exc.args[0]} (traceback in {path})",)
    except OSError:
        pass


class _Progress:
    """A tqdm bar for file sources; nothing when quiet or when the total is unknown and stderr is no tty."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self.bar = None

    def start(self, total: int | None) -> None:
        if not self.enabled:
            return
        from tqdm import tqdm

        self.bar = tqdm(total=total, unit="frame", dynamic_ncols=True, file=sys.stderr, leave=False)

    def update(self) -> None:
        if self.bar is not None:
            self.bar.update(1)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def cmd_validate(args: argparse.Namespace) -> int:
    """Check graphs. Errors (bad wiring, a model path that does not exist) exit 2; things the graph
    needs that are simply not here yet (a catalogue model not fetched, a gallery) are notes, or
    errors under ``--strict``."""
    status = 0
    for path in args.graphs:
        try:
            graph = load_graph(path)
        except GraphError as exc:
            print(str(exc), file=sys.stderr)
            status = 2
            continue
        problems = graph.requirements()
        errors = [p for p in problems if not _is_note(p) or args.strict]
        notes = [p for p in problems if p not in errors]
        for line in errors:
            print(line, file=sys.stderr)
        if errors:
            status = 2
            continue
        print(f"{path}: ok ({len(graph.nodes)} nodes)")
        for line in notes:
            print(f"  note: {line}")
    return status


def _is_note(problem: str) -> bool:
    return ": needs " in problem


def cmd_nodes(args: argparse.Namespace) -> int:
    from ._registry import node_class, node_types

    types = {args.type: node_class(args.type)} if args.type else node_types()
    for name, cls in types.items():
        doc = (cls.__doc__ or "").strip().splitlines()
        print(f"{name}: {doc[0] if doc else ''}")
        if not args.type:
            ins = ", ".join(f"{p}: {i.type.name}{'?' if i.optional else ''}" for p, i in cls.inputs.items())
            outs = ", ".join(f"{p}: {o.type.name}" for p, o in cls.outputs.items())
            print(f"    in: {ins or '-'}    out: {outs or '-'}")
            continue
        for port, decl in cls.inputs.items():
            print(f"  input  {port}: {decl.type!r}{' (optional)' if decl.optional else ''}  {decl.doc}")
        for port, decl in cls.outputs.items():
            print(f"  output {port}: {decl.type!r}  {decl.doc}")
        for pname, param in cls.params.items():
            default = "required" if param.required else f"default {param.default!r}"
            extra = f", one of {list(param.choices)}" if param.choices else ""
            rng = "".join(f", {op} {v}" for op, v in ((">=", param.ge), ("<=", param.le)) if v is not None)
            print(f"  param  {pname}: {param.kind_name()} ({default}{extra}{rng})  {param.doc}")
    return 0


def cmd_graph(args: argparse.Namespace) -> int:
    from . import _render

    graph = load_graph(args.graph)
    if args.format == "mermaid":
        sys.stdout.write(_render.to_mermaid(graph))
    elif args.format == "dot":
        sys.stdout.write(_render.to_dot(graph))
    else:
        data = _render.to_png(graph)
        target = Path(args.out or f"{graph.name}.png")
        target.write_bytes(data)
        print(f"wrote {target}")
    return 0


def add_placement_arguments(p: argparse.ArgumentParser) -> None:
    """--placement, --costs, --explain: the same for ``run`` and ``bench``."""
    p.add_argument("--placement", default="cost", choices=["cost", "separate"],
                   help="process executor: place nodes by cost (default), or one worker per node")
    p.add_argument("--costs", default="declared", metavar="declared|auto|FILE",
                   help="node costs for placement: declared (default), auto (what the previous run into this output "
                   "folder measured, kept in its costs.json, else the declared ones), or a costs.json")
    p.add_argument("--explain", action="store_true", help="print the placement and each node's cost")
    p.add_argument("--no-renice", dest="renice", action="store_false",
                   help="process executor: keep every worker at this priority (default: with more workers than "
                        "cores, those well below the heaviest's load run at a higher niceness)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="facegraph", description="Streaming dataflow graphs for face analysis.")
    parser.add_argument("--debug", action="store_true", help="show tracebacks and debug logs")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    p = sub.add_parser("run", help="run a graph")
    p.add_argument("graph")
    p.add_argument("--source", help="replace the graph's source: a file, folder, glob, URL, camera index or 'sample'")
    p.add_argument("--output", help="folder for the sinks' relative paths (default ./facegraph-out/<graph name>/)")
    p.add_argument("--set", action="append", default=[], metavar="NODE.PARAM=VALUE", help="override a parameter")
    p.add_argument("--max-frames", type=int, help="stop after N frames")
    p.add_argument("--executor", choices=["process", "inline", "ray"],
                   help="how the graph runs (default process; for --batch, process per video when each job has "
                   "2+ cores, inline when it has one); ray: one Ray task per video (with --batch)")
    p.add_argument("--max-in-flight", type=int,
                   help="frames inside the graph at once (live sources drop beyond; default 4 live, 16 for a file)")
    p.add_argument("--stats", metavar="FILE.json", help="write per-node statistics at the end")
    add_placement_arguments(p)
    p.add_argument("--quiet", action="store_true", help="no progress bar or summary")
    b = p.add_argument_group("many videos")
    b.add_argument("--batch", nargs="?", const="", metavar="FOLDER|LIST",
                   help="run the graph once per video: of --source's glob, of a folder, or of a list file; "
                   "outputs in OUTPUT/<video stem>/, manifest OUTPUT/batch.jsonl")
    b.add_argument("--jobs", type=int, default=1, help="videos side by side on this machine (cores are shared out)")
    b.add_argument("--resume", action="store_true", help="skip the videos the manifest says are done")
    b.add_argument("--address", help="Ray cluster to join (auto, ray://host:10001); default: start Ray here")
    b.add_argument("--num-cpus-per-video", type=float, default=1, metavar="K",
                   help="CPUs Ray reserves per video (1: the inline executor; more: the process executor)")
    b.add_argument("--max-retries", type=int, default=3, help="Ray: times a video is re-run when its worker dies")
    b.add_argument("--return-outputs", action="store_true",
                   help="Ray: workers send their output files back and the driver writes them (no shared folder)")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("validate", help="check graph files without running them")
    p.add_argument("graphs", nargs="+")
    p.add_argument("--strict", action="store_true", help="models or galleries that are not here yet are errors")
    p.set_defaults(func=cmd_validate)

    p = sub.add_parser("nodes", help="list node types, or describe one")
    p.add_argument("type", nargs="?")
    p.set_defaults(func=cmd_nodes)

    p = sub.add_parser("graph", help="draw a graph as mermaid, dot or png")
    p.add_argument("graph")
    p.add_argument("--format", choices=["mermaid", "dot", "png"], default="mermaid")
    p.add_argument("--out", help="PNG file to write (default <name>.png)")
    p.set_defaults(func=cmd_graph)

    for name, (module, help_text) in {**PLUGGED, **plugged_commands()}.items():
        try:
            mod = importlib.import_module(module)
        except ImportError as exc:
            if exc.name and exc.name.startswith("facegraph"):
                continue
            if name in PLUGGED:
                raise
            # a plug-in whose own dependency is missing: the command says so when used; the others still work
            p = sub.add_parser(name, help=f"(needs the Python package '{exc.name}')", add_help=False)
            p.add_argument("rest", nargs=argparse.REMAINDER)
            p.set_defaults(func=_missing_dependency(name, str(exc.name)))
            continue
        except Exception as exc:  # a broken plug-in must not take the other commands down with it
            log.warning("command '%s' (%s) cannot load: %s: %s", name, module, type(exc).__name__, exc)
            continue
        p = sub.add_parser(name, help=help_text or getattr(mod, "HELP", ""))
        mod.add_arguments(p)
        p.set_defaults(func=mod.main)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:
        return int(exc.code or 0)
    logging.basicConfig(level=logging.DEBUG if args.debug else logging.WARNING, format="facegraph: %(message)s")
    try:
        return int(args.func(args) or 0)
    except FacegraphError as exc:
        if args.debug:
            traceback.print_exc()
            tb = getattr(exc, "traceback", "")
            if tb:
                print(tb, file=sys.stderr)
        print(f"facegraph: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("facegraph: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # a bug of ours: still one line, traceback under --debug
        if args.debug:
            traceback.print_exc()
        print(
            f"facegraph: internal error: {type(exc).__name__}: {exc} (run with --debug for the traceback)",
            file=sys.stderr,
        )
        return 1


if __name__ == "__main__":
    sys.exit(main())
