"""The registry index: per-entry JSON files (the source of truth) compiled into one ``index.json``.

Every entry is checked against ``schemas/index-entry.schema.json`` plus rules a schema cannot say
(the name matches its file, versions are PEP 440, file paths are safe and unique). Problems are
collected, never fail-fast, and each names the file, the JSON path and the fix.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from .. import __version__
from ..errors import DownloadError, OfflineError, RegistryIndexError, UnsafePathError
from ..fileio import atomic_write_text, dump_json
from .paths import check_relpath
from ..schema import json_path, schema_errors
from ..settings import Settings

INDEX_FILENAME = "index.json"
# An index is small: a server that has not answered in this long is not going to.
_URL_TIMEOUT_S = 15.0


@dataclass(frozen=True)
class Problem:
    file: str
    path: str  # JSON path
    message: str

    def __str__(self) -> str:
        return f"{self.file}: {self.path}: {self.message}"


# --- validation ---------------------------------------------------------------------------------


def entry_problems(entry: Any, file: str, *, expected_name: str | None = None) -> list[Problem]:
    """Every problem of one index entry: schema violations, then the rules the schema cannot express."""
    from packaging.version import InvalidVersion, Version

    problems = [Problem(file, p, m) for p, m in schema_errors("index-entry", entry)]
    if not isinstance(entry, dict):
        return problems
    name = entry.get("name")
    namespace = entry.get("namespace")
    if isinstance(name, str) and isinstance(namespace, str) and name.split("/")[0] != namespace:
        problems.append(Problem(file, "$.namespace", f"{namespace!r} must equal the part of name {name!r} before '/'"))
    if expected_name and isinstance(name, str) and name != expected_name:
        problems.append(
            Problem(file, "$.name", f"{name!r} does not match its location {expected_name!r}; rename the file to <namespace>/<name>.json or fix the name")
        )
    versions = entry.get("versions")
    if not isinstance(versions, dict):
        return problems
    for version, info in versions.items():
        vpath = json_path(["versions", version])
        try:
            if str(Version(version)) != version:
                problems.append(Problem(file, vpath, f"version {version!r} is not in normal form; write it as {str(Version(version))!r}"))
        except InvalidVersion:
            problems.append(Problem(file, vpath, f"version {version!r} is not a PEP 440 version (e.g. '1.0.0', '2.1.0rc1')"))
        files = info.get("files") if isinstance(info, dict) else None
        seen: set[str] = set()
        for i, item in enumerate(files if isinstance(files, list) else []):
            fpath = item.get("path") if isinstance(item, dict) else None
            where = json_path(["versions", version, "files", i, "path"])
            try:
                check_relpath(fpath, where=f"{file}: {where}")
            except UnsafePathError as exc:
                problems.append(Problem(file, where, exc.message.split(": ", 2)[-1] + "; use a relative path inside the adapter"))
                continue
            if fpath in seen:
                problems.append(Problem(file, where, f"duplicate file path {fpath!r}; list each file once"))
            seen.add(fpath)
    return sorted(set(problems), key=lambda p: (p.file, p.path, p.message))


def index_problems(data: Any, file: str) -> list[Problem]:
    """Problems of a compiled index (schema, then every entry's own rules)."""
    problems = [Problem(file, p, m) for p, m in schema_errors("index", data)]
    if isinstance(data, dict) and isinstance(data.get("entries"), dict):
        for key, entry in data["entries"].items():
            for p in entry_problems(entry, file, expected_name=key):
                if p.path.startswith("$") and not any(p.message == q.message for q in problems):
                    problems.append(Problem(file, json_path(["entries", key]) + p.path[1:], p.message))
    return problems


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise RegistryIndexError(f"{path}: not readable JSON ({exc})", hint="fix the JSON syntax") from None


def entry_files(index_dir: Path) -> list[Path]:
    """Per-entry files ``<namespace>/<name>.json`` (the compiled index.json is skipped)."""
    return sorted(p for p in index_dir.glob("*/*.json") if p.is_file())


def validate_index_dir(index_dir: str | Path) -> tuple[dict[str, Any], list[Problem]]:
    """Read and check every entry file under ``index_dir``; return (entries by name, problems)."""
    root = Path(index_dir)
    if not root.is_dir():
        raise RegistryIndexError(f"{root}: not a directory", hint="give the registry_index/ directory")
    entries: dict[str, Any] = {}
    problems: list[Problem] = []
    for path in entry_files(root):
        rel = path.relative_to(root).as_posix()
        try:
            data = _read_json(path)
        except RegistryIndexError as exc:
            problems.append(Problem(rel, "$", exc.message.split(": ", 1)[-1] + "; fix the JSON syntax"))
            continue
        expected = rel[: -len(".json")]
        found = entry_problems(data, rel, expected_name=expected)
        problems.extend(found)
        if not found:
            entries[expected] = data
    stray = [p for p in root.glob("*.json") if p.name != INDEX_FILENAME]
    for path in stray:
        problems.append(Problem(path.name, "$", "entry files belong in <namespace>/<name>.json; move it"))
    return entries, problems


def compile_index(entries: dict[str, Any]) -> dict[str, Any]:
    return {
        "schema_version": 1,
        "generated_by": f"adapterhub {__version__}",
        "entries": {name: entries[name] for name in sorted(entries)},
    }


def _raise_problems(what: str, problems: list[Problem]) -> None:
    if problems:
        raise RegistryIndexError(
            f"{what}: {len(problems)} problem(s)\n" + "\n".join(f"  {p}" for p in problems),
            hint="fix each listed field; `adapterhub index validate DIR` re-checks",
        )


def build_index(index_dir: str | Path, output: str | Path | None = None) -> Path:
    """Validate every entry file and write the compiled index (default ``<dir>/index.json``)."""
    root = Path(index_dir)
    entries, problems = validate_index_dir(root)
    _raise_problems(str(root), problems)
    out = Path(output) if output else root / INDEX_FILENAME
    atomic_write_text(out, dump_json(compile_index(entries)), fsync=True)
    return out


def add_entry(index_dir: str | Path, entry_file: str | Path) -> tuple[Path, list[str]]:
    """Merge a standalone entry file (new versions of an adapter) into ``index_dir``, then rebuild.

    A version that already exists with different content is a conflict (refused); the same
    content again is a no-op. Top-level metadata comes from the newer file.
    Returns (entry path, versions added).
    """
    root = Path(index_dir)
    src = Path(entry_file)
    new = _read_json(src)
    _raise_problems(str(src), entry_problems(new, str(src)))
    target = root / f"{new['name']}.json"
    added = sorted(new["versions"])
    if target.is_file():
        old = _read_json(target)
        _raise_problems(str(target), entry_problems(old, str(target), expected_name=new["name"]))
        conflicts = [
            f"version {v}: {target} already has it with different content"
            for v in new["versions"]
            if v in old["versions"] and old["versions"][v] != new["versions"][v]
        ]
        if conflicts:
            raise RegistryIndexError(
                f"{src}: conflicts with the published entry {new['name']!r}\n" + "\n".join(f"  {c}" for c in conflicts),
                hint="published versions are immutable: bump the version number instead",
            )
        added = sorted(v for v in new["versions"] if v not in old["versions"])
        merged = {**new, "versions": {**old["versions"], **new["versions"]}}
    else:
        merged = new
    atomic_write_text(target, dump_json(merged), fsync=True)
    build_index(root)
    return target, added


# --- loading for the client ---------------------------------------------------------------------


@dataclass
class Index:
    entries: dict[str, Any]
    source: str
    digest: str = ""
    extra: dict[str, Any] = field(default_factory=dict)
    #: where the index came from, for the lock's ``registry`` table: "bundled", an hf:// or http(s)
    #: URL (credentials and query dropped), or an absolute local path (``is_local``)
    url: str = ""
    is_local: bool = False

    def provenance(self) -> dict[str, Any]:
        """``{"url", "digest": "sha256:<hex>", "local"}`` recorded for names this index resolved."""
        return {"url": self.url or self.source, "digest": f"sha256:{self.digest}", "local": self.is_local}

    def get(self, name: str) -> dict[str, Any] | None:
        return self.entries.get(name)

    def names(self) -> list[str]:
        return sorted(self.entries)

    def search(
        self, query: str = "", *, task: str | None = None, method: str | None = None, base_model: str | None = None
    ) -> list[dict[str, Any]]:
        words = [w for w in query.lower().split() if w]
        found = []
        for name in self.names():
            entry = self.entries[name]
            if task and task not in (entry.get("task"), entry.get("subtask")):
                continue
            if method and entry.get("method") != method:
                continue
            if base_model and base_model.lower() not in (entry.get("base_model", {}).get("repo_id") or "").lower():
                continue
            haystack = " ".join(
                str(x or "")
                for x in (name, entry.get("task"), entry.get("subtask"), entry.get("description"), entry.get("org"), entry.get("method"), *entry.get("tags", []))
            ).lower()
            if all(w in haystack for w in words):
                found.append(entry)
        return found

    def suggest(self, query: str, limit: int = 5) -> list[str]:
        """Registry names close to ``query`` (typos): the whole name, or its namespace or short name."""
        import difflib

        wanted = query.strip().lower()
        if not wanted:
            return []
        names = self.names()
        found = set(difflib.get_close_matches(wanted, [n.lower() for n in names], n=limit, cutoff=0.6))
        found = {n for n in names if n.lower() in found}
        for word in wanted.split():
            for name in names:
                parts = [part.lower() for part in name.split("/")]
                if difflib.get_close_matches(word, parts, n=1, cutoff=0.75):
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


def _load_file(path: Path, settings: Settings | None = None) -> Index:
    raw = path.read_bytes()
    digest = hashlib.sha256(raw).hexdigest()
    try:
        data = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise RegistryIndexError(f"{path}: not valid JSON ({exc})", hint="rebuild it with `adapterhub index build`") from None
    marker = _validated_marker(settings, digest)
    if marker is None or not marker.is_file():
        _raise_problems(str(path), index_problems(data, str(path)))
        if marker is not None:
            marker.parent.mkdir(parents=True, exist_ok=True)
            marker.touch()
    return Index(entries=dict(data["entries"]), source=str(path), digest=digest)


def _fetch_url(url: str, settings: Settings) -> Path:
    """Download an http(s) index on every command into ``<home>/index-v1/`` (no ETag revalidation).

    Offline mode uses that last downloaded copy. Online, a failure is an error, never a silent
    fall back to a stale copy. ``https://user:password@host/...`` is sent as HTTP Basic auth; the
    credentials never appear in messages or in the lock file.
    """
    import base64
    import http.client
    import urllib.error
    import urllib.request
    from urllib.parse import unquote, urlsplit

    from ..settings import scrub_secrets, strip_userinfo

    public = _public_url(url)
    cached = settings.home / "index-v1" / (hashlib.sha256(url.encode()).hexdigest()[:24] + ".json")
    if settings.offline:
        if cached.is_file():
            return cached
        raise OfflineError(f"index {public} is not cached and offline mode is on",
                           hint="run once online, or pass --index PATH")
    parts = urlsplit(url)
    request = urllib.request.Request(strip_userinfo(url), headers={"Accept": "application/json"})
    if parts.username is not None:
        user_pass = f"{unquote(parts.username)}:{unquote(parts.password or '')}"
        request.add_header("Authorization", "Basic " + base64.b64encode(user_pass.encode()).decode())
    try:
        with urllib.request.urlopen(request, timeout=_URL_TIMEOUT_S) as response:  # noqa: S310 - http(s) only
            body = response.read()
    except urllib.error.HTTPError as exc:
        hint = ("check the URL (a Hub file is served at <endpoint>/<repo>/resolve/<revision>/index.json)"
                if exc.code == 404 else "check the URL and its credentials")
        raise DownloadError(f"could not fetch index {public}: the server answered HTTP {exc.code}"
                            + (f" {exc.reason}" if exc.reason else ""), hint=hint) from None
    except (OSError, ValueError, http.client.HTTPException) as exc:
        # Messages name the URL without its credentials (``https://user:token@host/index.json``).
        reason = getattr(exc, "reason", None) or exc
        raise DownloadError(f"could not fetch index {public}: {scrub_secrets(str(reason), urls=[url])}",
                            hint="check that the server is running and reachable (--offline uses the last "
                            "downloaded copy)") from None
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise RegistryIndexError(f"index {public}: the answer is not UTF-8 JSON",
                                 hint="point --index at a compiled index.json") from None
    atomic_write_text(cached, text, fsync=True)
    return cached


def _fetch_hf(url: str, settings: Settings) -> Path:
    from .remote import fetch_file
    from .refs import parse_hf_file_url

    repo_id, filename, revision = parse_hf_file_url(url)
    return fetch_file(settings, repo_id, filename, revision)


def _public_url(url: str) -> str:
    """An http(s) URL without user info, query or fragment: tokens never reach a lock file."""
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.port:
        host += f":{parts.port}"
    return urlunsplit((parts.scheme, host, parts.path, "", ""))


def load_index(settings: Settings) -> Index:
    """The index named by ``settings.index`` (path, dir, http(s) URL, hf:// URL), else the bundled one."""
    spec = settings.index
    if spec is None:
        path = bundled_index_path()
        if path is None:
            return Index(entries={}, source="(bundled, empty)", url="bundled")
        index = _load_file(path, settings)
        index.url = "bundled"
        return index
    if spec.startswith("hf://"):
        index = _load_file(_fetch_hf(spec, settings), settings)
        index.url = spec
        return index
    if spec.startswith(("http://", "https://")):
        index = _load_file(_fetch_url(spec, settings), settings)
        index.url = _public_url(spec)
        return index
    path = Path(spec).expanduser()
    if path.is_dir():
        index = _load_dir(path, settings)
    elif not path.is_file():
        raise RegistryIndexError(f"index {spec!r}: no such file or directory", hint="pass --index PATH|URL|hf://ns/repo/index.json")
    else:
        index = _load_file(path, settings)
    index.url, index.is_local = str(path.resolve()), True
    return index


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
        _raise_problems(str(path), problems)
        if marker is not None:
            marker.parent.mkdir(parents=True, exist_ok=True)
            marker.touch()
    raw = dump_json(compile_index(entries)).encode()
    return Index(entries=entries, source=str(path), digest=hashlib.sha256(raw).hexdigest())
