"""Step 4 of a push: turn a pushed release into a registry index entry.

Two outputs: a standalone entry file holding just the new version (for a pull request to a shared
index, merged there with ``adapterhub index add ENTRY``), and, with ``--index-dir``, the same merge
done directly into a local index folder. Building, validating and merging entries is registry
authoring (:mod:`adapterhub.client.authoring`); this module decides what to write where.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import PublishError

if TYPE_CHECKING:  # pragma: no cover
    from .release import PushResult


def default_entry_path(name: str, version: str) -> Path:
    return Path.cwd() / f"{name.split('/')[-1]}-{version}.entry.json"


def check_index_conflict(index_dir: str | Path | None, name: str | None, version: str, repo_id: str) -> None:
    """Refuse, before anything is uploaded, a version the index already has from another repo."""
    if index_dir is None or name is None:
        return
    path = Path(index_dir) / f"{name}.json"
    if not path.is_file():
        return
    try:
        existing = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise PublishError(f"{path}: unreadable index entry ({exc})", hint="fix or remove it, then push again") from None
    known = (existing.get("versions") or {}).get(version)
    if known and (known.get("source") or {}).get("repo_id") != repo_id:
        raise PublishError(
            f"{path}: {name} {version} is already registered from {known['source'].get('repo_id')!r}",
            hint="published versions are immutable: bump --version",
        )


def register_release(
    result: PushResult,
    *,
    index_dir: str | Path | None,
    entry_out: str | Path | None,
    progress: Callable[[str], None],
) -> None:
    """Write the standalone entry file and, with ``index_dir``, merge it into that index."""
    from ..client.authoring import add_entry, build_entry, entry_problems
    from ..fileio import atomic_write_text, dump_json

    if not result.name:
        progress("no registry name: skipping the index entry")
        return
    assert result.commit is not None
    entry = build_entry(name=result.name, version=result.version, repo_id=result.repo_id, tag=result.tag,
                        commit=result.commit, files=result.files, manifest=result.manifest).to_dict()
    problems = entry_problems(entry, "(new entry)")
    if problems:
        raise PublishError(
            f"the registry entry for {result.name} {result.version} is invalid",
            problems=[str(p) for p in problems],
            hint="fix the options that fill these fields (--name, --task, --license, --base-model)",
        )
    entry_path = Path(entry_out) if entry_out else default_entry_path(result.name, result.version)
    atomic_write_text(entry_path, dump_json(entry), fsync=True)
    result.entry, result.entry_path = entry, entry_path
    progress(f"wrote registry entry {entry_path} (merge it into a shared index with `adapterhub index add`)")
    if index_dir is not None:
        target, added = add_entry(index_dir, entry_path)
        result.index_path = target
        if added:
            progress(f"registered {result.name} {', '.join(added)} in {target}")
        else:
            progress(f"{target} already lists {result.name} {result.version}")
