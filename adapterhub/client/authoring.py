"""Registry authoring: the rules of a valid index entry, and the tools that write an index folder.

An index folder holds one JSON file per adapter, ``<namespace>/<name>.json`` (the source of truth),
compiled into one ``index.json`` that clients read. Every entry is checked against
``schemas/index-entry.schema.json`` plus the rules a schema cannot say (the name matches its file,
versions are PEP 440 in normal form, file paths are safe and unique). Problems are collected,
never fail-fast, and each names the file, the JSON path and the fix.

Used by ``adapterhub index validate|build|add``, by ``adapterhub push`` (:func:`build_entry`) and by
the index reader (:mod:`adapterhub.client.index`), which checks what it loads with these rules.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .. import __version__
from ..errors import RegistryIndexError, UnsafePathError
from ..fileio import atomic_write_text, dump_json
from ..schema import json_path, schema_errors
from .models import BaseModelRef, FileEntry, IndexEntry, IndexVersion
from .paths import check_relpath

INDEX_FILENAME = "index.json"


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
    """The compiled ``index.json`` document for entries (raw, validated dicts) by name."""
    return {
        "schema_version": 1,
        "generated_by": f"adapterhub {__version__}",
        "entries": {name: entries[name] for name in sorted(entries)},
    }


def raise_problems(what: str, problems: list[Problem]) -> None:
    if problems:
        raise RegistryIndexError(
            f"{what}: {len(problems)} problem(s)\n" + "\n".join(f"  {p}" for p in problems),
            hint="fix each listed field; `adapterhub index validate DIR` re-checks",
        )


def build_index(index_dir: str | Path, output: str | Path | None = None) -> Path:
    """Validate every entry file and write the compiled index (default ``<dir>/index.json``)."""
    root = Path(index_dir)
    entries, problems = validate_index_dir(root)
    raise_problems(str(root), problems)
    if not entries:  # an empty index installs nothing: almost always the wrong folder
        raise RegistryIndexError(
            f"{root}: no index entries to build from (looked for entry files {root}/<namespace>/<name>.json)",
            hint="give the registry index directory, or add an entry first: `adapterhub index add ENTRY.json DIR`",
        )
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
    raise_problems(str(src), entry_problems(new, str(src)))
    target = root / f"{new['name']}.json"
    added = sorted(new["versions"])
    if target.is_file():
        old = _read_json(target)
        raise_problems(str(target), entry_problems(old, str(target), expected_name=new["name"]))
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


def build_entry(
    *, name: str, version: str, repo_id: str, tag: str, commit: str, files: Iterable[FileEntry],
    manifest: dict[str, Any],
) -> IndexEntry:
    """The index entry for one pushed release: its manifest's metadata, pinned to ``commit``."""
    tags = [manifest["method"]]
    for extra in (manifest.get("task"), manifest.get("subtask")):
        if extra and extra not in tags:
            tags.append(extra)
    base = manifest["base_model"]
    return IndexEntry(
        name=name, task=manifest["task"], subtask=manifest.get("subtask"), method=manifest["method"],
        base_model=BaseModelRef(base["repo_id"], base.get("revision"), base.get("model_type")),
        license=manifest.get("license"), description=manifest.get("description"), tags=tuple(tags),
        versions={version: IndexVersion(version=version, repo_id=repo_id, revision=commit, tag=tag,
                                        files=tuple(files), published=manifest.get("created"))},
    )
