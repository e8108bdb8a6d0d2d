"""The registry index as the client reads it: load it from where ``--index`` points, look names up, search.

Where an index can come from (``Settings.index``): nothing (the index bundled with the package), a
folder of entry files or a compiled ``index.json`` on disk, an http(s) URL (downloaded again on
every command into ``<home>/index-v1/``; offline, the last downloaded copy is used), or
``hf://ns/repo/path[@rev]`` (through the huggingface_hub cache). Every byte from the network comes
through :mod:`adapterhub.client.remote`. What is loaded is checked with the authoring rules
(:mod:`adapterhub.client.authoring`) before a name is resolved from it; a marker per content
digest lets a warm command skip that check.

The index entry *is* the install-side manifest: the client never reads a release's
``adapterhub.json``, it checks every downloaded file against the entry (or the lock).
"""

from __future__ import annotations

import difflib
import hashlib
import json
import re
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from ..errors import OfflineError, RegistryIndexError
from ..fileio import atomic_write_text, dump_json
from ..settings import Settings, public_url
from .authoring import (
    INDEX_FILENAME,
    compile_index,
    entry_files,
    index_problems,
    raise_problems,
    validate_index_dir,
)
from .models import IndexEntry, IndexProvenance


@dataclass(frozen=True)
class Index:
    """A loaded, validated index: raw entries by name (as in the file), typed on lookup.

    ``url`` says where it came from, for the lock's ``registry`` table: "bundled", an hf:// or
    http(s) URL (credentials, query and fragment dropped), or an absolute local path (``is_local``).
    """

    entries: dict[str, Any]
    source: str
    digest: str = ""
    url: str = ""
    is_local: bool = False
    _typed: dict[str, IndexEntry] = field(default_factory=dict, repr=False, compare=False)

    def provenance(self) -> IndexProvenance:
        """What a lock records about this index for the names it resolved."""
        return IndexProvenance(self.url or self.source, f"sha256:{self.digest}", self.is_local)

    def get(self, name: str) -> IndexEntry | None:
        if name not in self.entries:
            return None
        if name not in self._typed:
            self._typed[name] = IndexEntry.from_dict(self.entries[name])
        return self._typed[name]

    def names(self) -> list[str]:
        return sorted(self.entries)

    def search(
        self, query: str = "", *, task: str | None = None, method: str | None = None, base_model: str | None = None
    ) -> list[IndexEntry]:
        """Entries matching every filter whose name, task, subtask, description, org, method or tags
        contain all words of ``query``."""
        words = [w for w in query.lower().split() if w]
        found = []
        for name in self.names():
            entry = self.get(name)
            assert entry is not None
            if task and task not in (entry.task, entry.subtask):
                continue
            if method and entry.method != method:
                continue
            if base_model and base_model.lower() not in entry.base_model.repo_id.lower():
                continue
            haystack = " ".join(
                str(x or "")
                for x in (name, entry.task, entry.subtask, entry.description, entry.org, entry.method, *entry.tags)
            ).lower()
            if all(w in haystack for w in words):
                found.append(entry)
        return found

    def suggest(self, query: str, limit: int = 5) -> list[str]:
        """Registry names close to ``query`` (typos): the whole name, or its namespace or short name."""
        wanted = query.strip().lower()
        if not wanted:
            return []
        names = self.names()
        close = set(difflib.get_close_matches(wanted, [n.lower() for n in names], n=limit, cutoff=0.6))
        found = {n for n in names if n.lower() in close}
        for word in wanted.split():
            for name in names:
                parts = [part.lower() for part in name.split("/")]
                words = re.split(r"[/._-]", name.lower())  # minilm-vader -> minilm, vader
                if difflib.get_close_matches(word, parts + words, n=1, cutoff=0.75):
                    found.add(name)
        return sorted(found)[:limit]


def bundled_index_path() -> Path | None:
    try:
        resource = resources.files("adapterhub.registry_index") / INDEX_FILENAME
        if resource.is_file():
            return Path(str(resource))
    except ModuleNotFoundError:
        pass
    source_tree = Path(__file__).resolve().parents[2] / "registry_index" / INDEX_FILENAME
    return source_tree if source_tree.is_file() else None


def _validated_marker(settings: Settings | None, digest: str) -> Path | None:
    """A marker per index digest that passed validation, so a warm command skips jsonschema."""
    return settings.home / "index-v1" / "valid" / digest if settings is not None else None


def _load_file(path: Path, settings: Settings | None, *, url: str, is_local: bool = False) -> Index:
    raw = path.read_bytes()
    digest = hashlib.sha256(raw).hexdigest()
    try:
        data = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise RegistryIndexError(f"{path}: not valid JSON ({exc})", hint="rebuild it with `adapterhub index build`") from None
    marker = _validated_marker(settings, digest)
    if marker is None or not marker.is_file():
        raise_problems(str(path), index_problems(data, str(path)))
        if marker is not None:
            marker.parent.mkdir(parents=True, exist_ok=True)
            marker.touch()
    return Index(entries=dict(data["entries"]), source=str(path), digest=digest, url=url, is_local=is_local)


def _load_dir(path: Path, settings: Settings) -> Index:
    files = entry_files(path)
    h = hashlib.sha256()
    for f in files:
        h.update(f.relative_to(path).as_posix().encode() + b"\0" + f.read_bytes() + b"\0")
    marker = _validated_marker(settings, "dir-" + h.hexdigest())
    if marker is not None and marker.is_file() and not [p for p in path.glob("*.json") if p.name != INDEX_FILENAME]:
        entries = {f.relative_to(path).as_posix()[: -len(".json")]: json.loads(f.read_bytes()) for f in files}
    else:
        entries, problems = validate_index_dir(path)
        raise_problems(str(path), problems)
        if marker is not None:
            marker.parent.mkdir(parents=True, exist_ok=True)
            marker.touch()
    raw = dump_json(compile_index(entries)).encode()
    return Index(entries=entries, source=str(path), digest=hashlib.sha256(raw).hexdigest(),
                 url=str(path.resolve()), is_local=True)


def _fetch_url(url: str, settings: Settings) -> Path:
    """Download an http(s) index on every command into ``<home>/index-v1/`` (no ETag revalidation).

    Offline (the network gate refuses), the last downloaded copy is used. Online, a failure is an
    error, never a silent fall back to a stale copy.
    """
    from . import remote

    cached = settings.home / "index-v1" / (hashlib.sha256(url.encode()).hexdigest()[:24] + ".json")
    try:
        body = remote.http_get(settings, url, what=f"index {public_url(url, drop_query=True)}")
    except OfflineError:
        if cached.is_file():
            return cached
        raise OfflineError(f"index {public_url(url, drop_query=True)} is not cached and offline mode is on",
                           hint="run once online, or pass --index PATH") from None
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise RegistryIndexError(f"index {public_url(url, drop_query=True)}: the answer is not UTF-8 JSON",
                                 hint="point --index at a compiled index.json") from None
    atomic_write_text(cached, text, fsync=True)
    return cached


def load_index(settings: Settings) -> Index:
    """The index named by ``settings.index`` (path, dir, http(s) URL, hf:// URL), else the bundled one."""
    from . import remote

    spec = settings.index
    if spec is None:
        path = bundled_index_path()
        if path is None:
            return Index(entries={}, source="(bundled, empty)", url="bundled")
        return _load_file(path, settings, url="bundled")
    if spec.startswith("hf://"):
        return _load_file(remote.fetch_hf_file(settings, spec), settings, url=spec)
    if spec.startswith(("http://", "https://")):
        return _load_file(_fetch_url(spec, settings), settings, url=public_url(spec, drop_query=True))
    path = Path(spec).expanduser()
    if path.is_dir():
        return _load_dir(path, settings)
    if not path.is_file():
        raise RegistryIndexError(f"index {spec!r}: no such file or directory",
                                 hint="pass --index PATH|URL|hf://ns/repo/index.json")
    return _load_file(path, settings, url=str(path.resolve()), is_local=True)


class LazyIndex:
    """The index of ``settings``, loaded on first use (only a registry name needs it) and then kept."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._index: Index | None = None

    def __call__(self) -> Index:
        if self._index is None:
            self._index = load_index(self.settings)
        return self._index

    @property
    def loaded_source(self) -> str:
        """Where the index came from, or "" if nothing needed it."""
        return self._index.source if self._index is not None else ""
