"""Plan before acting: what each request resolves to, which files the store already has, what to fetch.

A :class:`Plan` is pure data: the CLI prints it (``install --dry-run``), :mod:`adapterhub.client.install`
executes it. Requests are resolved by :mod:`adapterhub.client.resolve`; a lock file's entries by
:mod:`adapterhub.client.lockfile`, which also refuses drift.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import UsageError
from ..settings import Settings
from .index import Index, LazyIndex
from .lockfile import locked_entries, resolution_from_lock
from .models import Resolution
from .refs import SourceRef, parse_source
from .resolve import resolve
from .store import Store


@dataclass(frozen=True)
class PlanItem:
    """One resolved request, and what of it the store already holds."""

    resolved: Resolution
    installed: bool  # a complete install of this commit is already in the store
    present: frozenset[str] = frozenset()  # paths whose blob is already in the store

    @property
    def total_bytes(self) -> int:
        return sum(f.size for f in self.resolved.files)

    @property
    def is_local(self) -> bool:
        """A local folder: its files are copied, not downloaded."""
        return self.resolved.kind == "local"

    @property
    def action(self) -> str:
        """What happens to a file the store does not have yet: ``"copy"`` or ``"download"``."""
        return "copy" if self.is_local else "download"

    @property
    def missing_bytes(self) -> int:
        """Bytes the store does not have yet (copied from a folder, or downloaded)."""
        if self.installed:
            return 0
        return sum(f.size for f in self.resolved.files if f.path not in self.present)

    @property
    def download_bytes(self) -> int:
        return 0 if self.is_local else self.missing_bytes

    @property
    def copy_bytes(self) -> int:
        return self.missing_bytes if self.is_local else 0

    def to_json(self) -> dict[str, Any]:
        r = self.resolved
        return {
            "requested": r.requested, "kind": r.kind, "name": r.name, "version": r.version,
            "repo_id": r.repo_id, "revision": r.commit, "installed": self.installed,
            "total_bytes": self.total_bytes, "download_bytes": self.download_bytes, "copy_bytes": self.copy_bytes,
            "notes": list(r.notes),
            "files": [
                {**f.to_dict(), "expected_from": f.expected_from, "present": self.installed or f.path in self.present}
                for f in r.files
            ],
        }


@dataclass(frozen=True)
class Plan:
    items: tuple[PlanItem, ...]
    index_source: str = ""  # the index that resolved names, or the lock file; "" when none was needed

    @property
    def total_bytes(self) -> int:
        return sum(i.total_bytes for i in self.items)

    @property
    def download_bytes(self) -> int:
        return sum(i.download_bytes for i in self.items)

    @property
    def copy_bytes(self) -> int:
        return sum(i.copy_bytes for i in self.items)

    def to_json(self) -> dict[str, Any]:
        return {"adapters": [i.to_json() for i in self.items], "total_bytes": self.total_bytes,
                "download_bytes": self.download_bytes, "copy_bytes": self.copy_bytes, "index": self.index_source}


def plan_item(store: Store, resolved: Resolution) -> PlanItem:
    installed = store.get(resolved.key, resolved.commit) is not None
    present = set()
    for f in resolved.files:
        if f.sha256:
            blob = store.blob_path(f.sha256)
            if blob.is_file() and blob.stat().st_size == f.size:
                present.add(f.path)
    return PlanItem(resolved, installed, frozenset(present))


def plan_requests(sources: Sequence[str | SourceRef], *, settings: Settings, store: Store, index: LazyIndex,
                  revision: str | None = None, pre: bool = False) -> Plan:
    """Resolve every request (a registry name, a Hub repo, a folder) against ``index`` and the Hub."""
    if not sources:
        raise UsageError("nothing to install", hint="give one or more SOURCE arguments, or --locked FILE")
    items = []
    for source in sources:
        ref = source if isinstance(source, SourceRef) else parse_source(source, revision)
        # Only touch the index when the request could be a registry name.
        names = index() if ref.kind == "name" else Index({}, "(not needed)")
        items.append(plan_item(store, resolve(ref, names, settings, store, pre=pre)))
    return Plan(tuple(items), index.loaded_source)


def plan_lock(lock_path: str | Path, *, store: Store, index: LazyIndex, only: Sequence[str] | None = None) -> Plan:
    """A plan that installs exactly what ``lock_path`` pins (optionally only some requests)."""
    lock_path = Path(lock_path)
    entries = locked_entries(lock_path, list(only) if only else None)
    return Plan(tuple(plan_item(store, resolution_from_lock(e, lock_path, index)) for e in entries), str(lock_path))
