"""``facegraph.analyze`` and ``facegraph.analyze_images``: face results as a DataFrame, from Python.

They live in the node package, not the engine: the default graph ("video_au"),
the idea of a face table and OpenFace's columns are face knowledge, and the
engine imports nothing of the face stack. The engine exposes them as
``facegraph.analyze`` through the ``facegraph.api`` entry-point group (resolved
on first use by ``facegraph.__getattr__``), the same way it finds node types and
subcommands without naming the packages that provide them.

The graph runs as usual with its sinks taken out (``analyze`` writes no file):
what is kept is the table sink's upstream, and the table is made from what that
sink is fed, by the sink's own row and column code (``io/_dataframe.py``).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from facegraph import Graph, GraphError, OutputRef, Result, run

from .io._dataframe import records_frame, table_sink

if TYPE_CHECKING:
    import pandas

GRAPHS_PACKAGE = "facegraph.nodes.graphs"


def shipped_graph(name: str) -> Path | None:
    """The file of a shipped graph by name (``video_au``), from the installed package."""
    from importlib import resources

    try:
        path = resources.files(GRAPHS_PACKAGE) / f"{name}.yaml"
    except ModuleNotFoundError:
        return None
    return Path(str(path)) if path.is_file() else None


def resolve_graph(graph: Graph | str | Path) -> Graph:
    """A Graph, a graph file, or the name of a shipped graph; GraphError naming the choices otherwise."""
    if isinstance(graph, Graph):
        return graph.copy()
    path = Path(graph).expanduser()
    if path.is_file():
        return Graph.load(path)
    found = shipped_graph(str(graph)) if path.suffix == "" else None
    if found is None:
        names = sorted(p.stem for p in _shipped_files())
        raise GraphError(f"no graph file or shipped graph named '{graph}' (shipped: {', '.join(names) or 'none'})")
    return Graph.load(found)


def _shipped_files() -> list[Path]:
    from importlib import resources

    try:
        return [Path(str(p)) for p in resources.files(GRAPHS_PACKAGE).iterdir() if str(p).endswith(".yaml")]
    except ModuleNotFoundError:
        return []


def table_graph(graph: Graph) -> tuple[Graph, dict[str, OutputRef], dict[str, Any]]:
    """The graph without its sinks (and the nodes only they needed), the table sink's inputs and params."""
    spec = table_sink(graph)
    if spec is None:
        raise GraphError(f"graph '{graph.name}' has no table sink (sink.csv, sink.parquet ...): nothing to tabulate",
                         file=graph.file)
    inputs = dict(spec.inputs)
    params = {**{k: p.default for k, p in spec.cls.params.items() if not p.required}, **spec.params}
    keep: set[str] = set()
    todo = [ref.node for ref in inputs.values()]
    while todo:
        nid = todo.pop()
        if nid not in keep:
            keep.add(nid)
            todo += [ref.node for ref in graph.nodes[nid].inputs.values()]
    data = graph.to_dict()
    data["nodes"] = {n: body for n, body in data["nodes"].items() if n in keep}
    return Graph.from_dict(data, file=graph.file).check(), inputs, params


def _overrides(params: dict[str, Any]) -> dict[str, Any]:
    """``faces.min_score=0.6`` or ``faces__min_score=0.6`` → {"faces.min_score": 0.6}."""
    out = {}
    for key, value in params.items():
        name = key if "." in key else key.replace("__", ".", 1)
        if "." not in name:
            raise GraphError(f"parameter '{key}' must name its node: node.param or node__param (faces__min_score)")
        out[name] = value
    return out


def _one(graph: Graph, inputs: dict[str, OutputRef], sink_params: dict[str, Any], source: Any,
         executor: str, max_frames: int | None, lead: dict[str, Any] | None = None) -> pandas.DataFrame:
    import tempfile

    wanted = [str(r) for r in dict.fromkeys(inputs.values())]
    # what nodes leave for the sinks at the end (the AU node's post-processed values) goes to a folder of its
    # own, read back into the table, and removed: analyze writes no file, in the working folder or elsewhere
    with tempfile.TemporaryDirectory(prefix="facegraph-analyze-") as scratch:
        results: Iterable[Result] = run(graph, source, executor=executor, max_frames=max_frames, outputs=wanted,
                                        output_dir=scratch)
        return records_frame(inputs, results, constants=dict(sink_params.get("constants") or {}),
                             other_landmarks=bool(sink_params.get("other_landmarks", False)),
                             extras=bool(sink_params.get("extras", True)), lead=lead)


def _concat(tables: list[pandas.DataFrame]) -> pandas.DataFrame:
    """Tables of one graph, one after another; empty ones only give the columns."""
    import pandas as pd

    full = [t for t in tables if len(t)]
    return pd.concat(full, ignore_index=True) if full else tables[0]


def analyze(
    source: str | Path | Sequence[str | Path],
    graph: Graph | str | Path = "video_au",
    *,
    executor: str = "inline",
    max_frames: int | None = None,
    **params: Any,
) -> pandas.DataFrame:
    """Run a face graph on a video and return its table: one row per face per frame, OpenFace's column names.

    ``source`` is anything ``--source`` takes; a list of videos, a folder of videos or a
    glob matching videos runs each in turn and adds a ``video`` column first.
    ``params`` override node parameters: ``faces__min_score=0.6`` (or
    ``**{"faces.min_score": 0.6}``). ``executor="process"`` spreads the nodes over
    processes (faster on several cores; a script then needs ``if __name__ == "__main__":``).
    """
    base, inputs, sink_params = table_graph(resolve_graph(graph))
    for key, value in _overrides(params).items():
        node_id, _, name = key.partition(".")
        base.set_param(node_id, name, value)
    videos = _videos(base, source)
    if videos is None:
        return _one(base, inputs, sink_params, source, executor, max_frames)
    return _concat([_one(base, inputs, sink_params, v, executor, max_frames, {"video": v}) for v in videos])


def _videos(graph: Graph, source: Any) -> list[str] | None:
    """The videos of a batch source (a list, or a folder or glob holding videos); None for one stream."""
    from facegraph._batch import expand_sources

    if isinstance(source, (list, tuple)):
        return [str(s) for s in source]
    text = str(source)
    path = Path(text).expanduser()
    if not (path.is_dir() or (any(c in text for c in "*?[") and not path.exists())):
        return None
    probe = graph.source().cls.probe
    videos = [v for v in expand_sources(text) if probe(v) is None]
    return videos or None  # a folder or glob of images stays one stream, as for `facegraph run`


def analyze_images(
    paths: str | Path | Sequence[str | Path],
    graph: Graph | str | Path = "video_au",
    **params: Any,
) -> pandas.DataFrame:
    """Each image on its own: the same table as ``analyze``, with an ``image`` column first.

    Images are unrelated to each other, so each runs as its own short run: nothing a
    tracker or an AU baseline learnt on one image carries over to the next, and the
    detector runs on every image (``detect_every`` is set to 1).
    """
    from facegraph._batch import expand_sources

    base, inputs, sink_params = table_graph(resolve_graph(graph))
    for spec in base.nodes.values():
        if "detect_every" in spec.cls.params:
            base.set_param(spec.id, "detect_every", 1)
    for key, value in _overrides(params).items():
        node_id, _, name = key.partition(".")
        base.set_param(node_id, name, value)
    files = expand_sources(paths)
    if not files:
        raise GraphError(f"no image matches {paths!r}")
    return _concat([_one(base, inputs, sink_params, str(f), "inline", None, {"image": str(f)}) for f in files])
