"""Model files by path or catalogue name, for the training-side commands (eval, predict, export)."""

from __future__ import annotations

from pathlib import Path

from .errors import TrainingError


def resolve_model(spec: str, flag: str = "--model") -> Path:
    """A file path as given, else a catalogue name (``fer``, ``facegraph/fer_cnn``) resolved to its file."""
    path = Path(spec).expanduser()
    if path.is_file():
        return path
    if path.suffix in (".onnx", ".pt") or ("/" in spec and not spec.startswith("facegraph/")):
        raise TrainingError(f"{flag} {spec}: no such file")
    import facegraph.nodes  # noqa: F401 - registers the catalogue

    from facegraph import ModelError
    from facegraph._modelstore import lookup, resolve

    if lookup(spec) is None:
        raise TrainingError(f"{flag} {spec}: neither a file nor a model name listed by 'facegraph models'")
    try:
        return resolve(spec)
    except ModelError as exc:
        raise TrainingError(f"{flag} {spec}: {exc}") from None
