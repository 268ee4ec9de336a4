"""Model files on disk: a catalogue of named entries, the cache folder, and a thin verified download.

The engine knows nothing about faces here: node packages describe their model
files as ``ModelEntry`` values and add them with ``register_models``; the
``facegraph models`` command lists and fetches them. A download goes to a
temporary file beside its target, is checked against its SHA-256 when one is
known, and only then renamed into place, so a broken transfer never leaves a
file that looks complete. Zip packs (insightface's ``buffalo_l.zip``) are
unpacked into a folder named after the pack.

insightface has its own downloader, but it checks SHA-1 prefixes only, prints
progress unconditionally and writes in place; urllib does the job in fewer
lines with the checks we want, so it is used instead.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import sys
import tempfile
import urllib.error
import urllib.request
import zipfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from ._errors import ModelError

ENV = "FACEGRAPH_MODELS"


@dataclass(frozen=True)
class ModelEntry:
    """One named model file (or a zip pack of files) that ``facegraph models`` knows.

    ``filename`` is relative to the cache folder (``buffalo_l/w600k_r50.onnx``);
    a pack's ``filename`` is its folder. ``pack`` names the pack a member comes
    in: fetching a member fetches its pack. ``bundled`` entries live inside an
    installed Python package (``package``, ``filename`` relative to it) and are
    never downloaded. ``sha256``/``size`` are None where not known for sure.
    """

    name: str
    filename: str
    description: str = ""
    licence: str = "unknown"
    urls: tuple[str, ...] = ()
    sha256: str | None = None
    size: int | None = None
    size_approx: bool = False
    pack: str | None = None
    members: tuple[str, ...] = ()
    package: str | None = None
    search_dirs: tuple[str, ...] = ()
    aliases: tuple[str, ...] = ()
    note: str = ""
    extra: dict[str, str] = field(default_factory=dict, compare=False)
    #: a folder of loose files (OpenFace's AU models): (path inside the folder, sha256) each, fetched from
    #: ``urls`` formatted with ``{file}``; ``filename`` is the folder
    files: tuple[tuple[str, str], ...] = ()

    @property
    def is_pack(self) -> bool:
        return bool(self.members)

    @property
    def bundled(self) -> bool:
        return self.package is not None

    @property
    def fetch_name(self) -> str:
        """The name to pass to ``facegraph models fetch`` to get this file."""
        return self.pack or self.name


_ENTRIES: dict[str, ModelEntry] = {}
_ALIASES: dict[str, str] = {}
_loaders: list[Callable[[], None]] = []


def register_models(*entries: ModelEntry) -> None:
    """Add catalogue entries (node packages call this when imported); a later entry replaces an earlier one."""
    for entry in entries:
        _ENTRIES[entry.name] = entry
        for alias in entry.aliases:
            _ALIASES[alias] = entry.name


def _load() -> None:
    """Import the node packages, which register their models as a side effect."""
    from ._registry import _load_all

    _load_all()


def entries() -> dict[str, ModelEntry]:
    """Every known entry by name, node packages loaded."""
    _load()
    return dict(_ENTRIES)


def lookup(name: str) -> ModelEntry | None:
    """The entry called ``name`` (or one of its aliases), or None."""
    if name not in _ENTRIES and name not in _ALIASES:
        _load()
    key = _ALIASES.get(name, name)
    return _ENTRIES.get(key)


def cache_dir() -> Path:
    """``$FACEGRAPH_MODELS``, else the user cache folder of this platform + ``facegraph/models``."""
    env = os.environ.get(ENV)
    if env:
        return Path(env).expanduser()
    if sys.platform == "darwin":
        base = Path.home() / "Library" / "Caches"
    elif os.name == "nt":
        base = Path(os.environ.get("LOCALAPPDATA", Path.home() / "AppData" / "Local"))
    else:
        base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "facegraph" / "models"


def _package_dir(package: str) -> Path | None:
    """Where an installed package lives, found without importing it (mediapipe's import is slow)."""
    import importlib.util

    try:
        spec = importlib.util.find_spec(package)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def candidates(entry: ModelEntry) -> list[Path]:
    """Where the entry's file may be, in the order searched."""
    if entry.bundled:
        root = _package_dir(entry.package or "")
        return [root / entry.filename] if root else []
    paths = [cache_dir() / entry.filename]
    paths += [Path(d).expanduser() / entry.filename for d in entry.search_dirs]
    return paths


def locate(entry: ModelEntry) -> Path | None:
    """The first existing file (or pack folder) of the entry, or None; a file set's folder must hold every file."""
    for path in candidates(entry):
        if entry.files:
            if all((path / rel).is_file() for rel, _ in entry.files):
                return path
        elif path.exists():
            return path
    return None


def missing_message(entry: ModelEntry) -> str:
    """The one line every node and ``facegraph validate`` print for an absent model."""
    if entry.bundled:
        return f"needs model {entry.name} (inside the Python package '{entry.package}'; install or reinstall it)"
    return f"needs model {entry.name} (facegraph models fetch {entry.fetch_name})"


def resolve(name: str) -> Path:
    """The file of a catalogue entry; ModelError 'needs model X (facegraph models fetch X)' when absent."""
    entry = lookup(name)
    if entry is None:
        raise ModelError(f"unknown model '{name}'; 'facegraph models' lists the known names")
    path = locate(entry)
    if path is None:
        raise ModelError(missing_message(entry))
    return path


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def download(urls: Iterable[str], target: Path, *, sha256: str | None = None, timeout: float = 30.0,
             progress: Callable[[int, int | None], None] | None = None) -> str:
    """Fetch the first URL that answers into ``target`` (atomically); return the file's SHA-256.

    Raises ModelError with one line when every URL fails (offline, 404) or the hash differs.
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    errors = []
    for url in urls:
        fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".part", dir=target.parent)
        tmp = Path(tmp_name)
        try:
            digest = hashlib.sha256()
            with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=timeout) as response:
                total = response.headers.get("Content-Length")
                total_n = int(total) if total and total.isdigit() else None
                done = 0
                while block := response.read(1 << 20):
                    out.write(block)
                    digest.update(block)
                    done += len(block)
                    if progress:
                        progress(done, total_n)
            got = digest.hexdigest()
            if sha256 and got != sha256.lower():
                raise ModelError(f"{url}: downloaded file has SHA-256 {got[:12]}…, expected {sha256[:12]}…; not kept")
            os.replace(tmp, target)
            return got
        except ModelError:
            tmp.unlink(missing_ok=True)
            raise
        except (urllib.error.URLError, OSError, ValueError) as exc:
            tmp.unlink(missing_ok=True)
            reason = getattr(exc, "reason", None) or exc
            errors.append(f"{url}: {reason}")
    if not errors:
        raise ModelError(f"{target.name}: no download address is known; place the file at {target}")
    raise ModelError(f"cannot download {target.name} (offline?): {errors[0]}")


def extract_pack(archive: Path, folder: Path) -> list[Path]:
    """Unpack a zip into ``folder`` (flattening one top-level folder of the same name); return the files."""
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
    try:
        with zipfile.ZipFile(archive) as zf:
            for member in zf.namelist():
                resolved = (tmp / member).resolve()
                if not str(resolved).startswith(str(tmp.resolve())):
                    raise ModelError(f"{archive}: unsafe path in the archive: {member}")
            zf.extractall(tmp)
        inner = [p for p in tmp.iterdir() if not p.name.startswith(("__MACOSX", "."))]
        root = inner[0] if len(inner) == 1 and inner[0].is_dir() else tmp
        folder.mkdir(parents=True, exist_ok=True)
        files = []
        for path in sorted(root.rglob("*")):
            if path.is_file():
                dest = folder / path.relative_to(root)
                dest.parent.mkdir(parents=True, exist_ok=True)
                os.replace(path, dest)
                files.append(dest)
        return files
    except zipfile.BadZipFile as exc:
        raise ModelError(f"{archive}: not a valid zip archive ({exc})") from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def fetch(name: str, *, force: bool = False, timeout: float = 30.0,
          progress: Callable[[int, int | None], None] | None = None, log: Callable[[str], None] = print) -> Path:
    """Download an entry (a member fetches its pack) into the cache folder; return the entry's path."""
    entry = lookup(name)
    if entry is None:
        raise ModelError(f"unknown model '{name}'; 'facegraph models' lists the known names")
    if entry.bundled:
        return resolve(entry.name)
    if entry.pack:
        fetch(entry.pack, force=force, timeout=timeout, progress=progress, log=log)
        return resolve(entry.name)
    present = locate(entry)
    if present is not None and not force:
        log(f"{entry.name}: already present at {present}")
        return present
    if entry.files:
        return _fetch_files(entry, timeout, progress, log)
    if not entry.urls:
        raise ModelError(f"{entry.name}: no download address is known; place it at {cache_dir() / entry.filename}")
    target = cache_dir() / entry.filename
    if entry.is_pack:
        archive = target.with_name(target.name + ".zip")
        got = download(entry.urls, archive, sha256=entry.sha256, timeout=timeout, progress=progress)
        extract_pack(archive, target)
        archive.unlink(missing_ok=True)
        _check_members(entry, log)
    else:
        got = download(entry.urls, target, sha256=entry.sha256, timeout=timeout, progress=progress)
    if entry.sha256 is None:
        log(f"{entry.name}: SHA-256 not in the catalogue, so not verified; got {got}")
    log(f"{entry.name}: saved to {target}")
    return target


def _check_members(pack: ModelEntry, log: Callable[[str], None]) -> None:
    """After unpacking: every member present, and its hash as catalogued where one is."""
    for member_name in pack.members:
        member = _ENTRIES.get(member_name)
        if member is None:
            continue
        path = cache_dir() / member.filename
        if not path.exists():
            log(f"{pack.name}: warning: the pack has no {member.filename}")
        elif member.sha256 and sha256_file(path) != member.sha256:
            log(f"{pack.name}: warning: {member.filename} differs from the catalogued SHA-256 {member.sha256[:12]}…")


def _fetch_files(entry: ModelEntry, timeout: float, progress: Callable[[int, int | None], None] | None,
                 log: Callable[[str], None]) -> Path:
    """Download each file of a file set, verified; files already there with the right hash are kept."""
    target = cache_dir() / entry.filename
    for rel, sha in entry.files:
        dest = target / rel
        if dest.is_file() and sha256_file(dest) == sha:
            continue
        download([u.format(file=rel) for u in entry.urls], dest, sha256=sha, timeout=timeout, progress=progress)
    log(f"{entry.name}: {len(entry.files)} files saved to {target}")
    return target


def install_from(name: str, folder: str | Path, *, log: Callable[[str], None] = print) -> Path:
    """Copy an entry's files from a local folder (an OpenFace checkout, a USB stick) into the cache, verified.

    The folder may hold the files directly or under the entry's folder name; a file whose
    SHA-256 differs from the catalogue's is refused, so a wrong version never lands in the cache.
    """
    entry = lookup(name)
    if entry is None:
        raise ModelError(f"unknown model '{name}'; 'facegraph models' lists the known names")
    src = Path(folder).expanduser()
    if not src.is_dir():
        raise ModelError(f"--from {src}: not a folder")
    target = cache_dir() / entry.filename
    wanted = entry.files or ((Path(entry.filename).name, entry.sha256 or ""),)
    roots = [src, src / Path(entry.filename).name]
    copies = []
    for rel, sha in wanted:
        found = next((r / rel for r in roots if (r / rel).is_file()), None)
        if found is None:
            raise ModelError(f"--from {src}: {rel} is missing (needed by {entry.name})")
        if sha and sha256_file(found) != sha:
            raise ModelError(f"--from {src}: {rel} has a different SHA-256 than {entry.name} expects; not installed")
        copies.append((found, target / rel if entry.files else target))
    for found, dest in copies:
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = dest.with_name(f".{dest.name}.part")
        shutil.copyfile(found, tmp)
        os.replace(tmp, dest)
    log(f"{entry.name}: {len(copies)} file(s) installed from {src} into {target}")
    return target if entry.files else copies[0][1]
