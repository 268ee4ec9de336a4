"""``facegraph models``: list the known model files and packs, or fetch one into FACEGRAPH_MODELS.

    facegraph models                 # table: name, size, licence, sha256, present, path
    facegraph models fetch buffalo_l
    facegraph models path buffalo_l/w600k_r50
"""

from __future__ import annotations

import argparse
import sys

from . import _modelstore as store
from ._errors import ModelError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("action", nargs="?", default="list", choices=["list", "fetch", "path", "card"],
                        help="list (default), fetch NAME..., path NAME, or card NAME (data, command, scores)")
    parser.add_argument("names", nargs="*", metavar="NAME", help="model or pack names, as listed")
    parser.add_argument("--force", action="store_true", help="fetch again even when present")
    parser.add_argument("--timeout", type=float, default=30.0, help="seconds to wait for a server (default 30)")
    parser.add_argument("--from", dest="from_dir", metavar="DIR",
                        help="fetch: install the files from this folder instead of downloading them (hashes checked)")


def _size(entry: store.ModelEntry) -> str:
    if entry.size is None:
        return "?"
    mb = entry.size / 1e6
    text = f"{mb:.1f} MB" if mb >= 1 else f"{entry.size / 1e3:.0f} kB"
    return ("~" if entry.size_approx else "") + text


def list_models(names: list[str]) -> int:
    entries = store.entries()
    if names:
        missing = [n for n in names if store.lookup(n) is None]
        if missing:
            print(f"facegraph: unknown model '{missing[0]}'; run 'facegraph models' for the list", file=sys.stderr)
            return 2
        entries = {store.lookup(n).name: store.lookup(n) for n in names}  # type: ignore[union-attr]
    print(f"models folder: {store.cache_dir()} (set {store.ENV} to move it)")
    rows = []
    for name, entry in sorted(entries.items()):
        path = store.locate(entry)
        rows.append((
            name,
            _size(entry),
            entry.licence if len(entry.licence) <= 28 else entry.licence[:27] + "…",
            entry.sha256[:12] if entry.sha256 else "unknown",
            "yes" if path else "no",
            str(path) if path else f"(facegraph models fetch {entry.fetch_name})" if entry.urls or entry.pack
            else f"({entry.note or 'no download'})",
        ))
    header = ("NAME", "SIZE", "LICENCE", "SHA256", "PRESENT", "PATH")
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(5)]
    for row in [header, *rows]:
        print("  ".join(str(c).ljust(w) for c, w in zip(row[:5], widths, strict=True)) + "  " + row[5])
    return 0


def fetch_models(names: list[str], force: bool, timeout: float, from_dir: str | None = None) -> int:
    if not names:
        print("facegraph: models fetch needs a NAME; run 'facegraph models' for the list", file=sys.stderr)
        return 2
    for name in names:
        try:
            if from_dir:
                store.install_from(name, from_dir, log=print)
            else:
                store.fetch(name, force=force, timeout=timeout, log=print)
        except ModelError as exc:
            print(f"facegraph: {exc}", file=sys.stderr)
            return 1
    return 0


#: metadata keys a card shows first, in this order (the rest follow)
CARD_KEYS = ("description", "licence", "data", "data_licence", "command", "train_seconds", "scores",
             "onnx_max_abs_diff", "labels", "input_size", "color")


def show_card(name: str) -> int:
    """The catalogue entry and the metadata JSON beside its file: data, licence, command, wall time, scores."""
    entry = store.lookup(name)
    if entry is None:
        print(f"facegraph: unknown model '{name}'; run 'facegraph models' for the list", file=sys.stderr)
        return 2
    path = store.locate(entry)
    card: dict = {"name": entry.name, "description": entry.description, "licence": entry.licence,
                  "sha256": entry.sha256 or "unknown", "size": _size(entry), "path": str(path) if path else "absent"}
    meta_path = path.with_suffix(".json") if path else None
    if meta_path is not None and meta_path.is_file():
        import json

        try:
            meta = json.loads(meta_path.read_text())
        except (OSError, ValueError) as exc:
            print(f"facegraph: {meta_path}: unreadable model card ({exc})", file=sys.stderr)
            return 1
        card.update({k: meta[k] for k in CARD_KEYS if k in meta})
        card.update({k: v for k, v in meta.items() if k not in card and k != "config"})
    for key, value in card.items():
        if isinstance(value, dict):
            print(f"{key}:")
            for k, v in value.items():
                print(f"  {k}: {v}")
        else:
            print(f"{key}: {value}")
    return 0


def main(args: argparse.Namespace) -> int:
    if args.action == "card":
        if len(args.names) != 1:
            print("facegraph: models card needs exactly one NAME", file=sys.stderr)
            return 2
        return show_card(args.names[0])
    if args.action == "fetch":
        return fetch_models(args.names, args.force, args.timeout, getattr(args, "from_dir", None))
    if args.action == "path":
        if len(args.names) != 1:
            print("facegraph: models path needs exactly one NAME", file=sys.stderr)
            return 2
        try:
            print(store.resolve(args.names[0]))
        except ModelError as exc:
            print(f"facegraph: {exc}", file=sys.stderr)
            return 1
        return 0
    return list_models(args.names)
