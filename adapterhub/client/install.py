"""Execute a plan: stage what is missing, then publish each adapter into the store, all or nothing.

Library code: returns data objects and never prints. Every byte is verified by
:mod:`adapterhub.client.stage` before it becomes a blob; an install is made visible by one rename
plus its record (see :mod:`adapterhub.client.store`). An adapter already installed is re-verified,
never trusted blindly, and its record gains the names and revisions that resolved to it.
"""

from __future__ import annotations

import contextlib
import shutil
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from .. import __version__
from ..errors import IntegrityError, LockfileError
from ..settings import Settings
from .models import Alias, IndexProvenance, InstallRecord, Resolution
from .plan import Plan, PlanItem
from .stage import Staged, stage_missing
from .store import Store, staging_dir


@dataclass(frozen=True)
class InstallResult:
    """What installing one request did: ``action`` is ``installed``, ``present`` or ``reinstalled``."""

    requested: str
    record: InstallRecord
    action: str
    name: str | None = None
    version: str | None = None
    notes: tuple[str, ...] = ()
    registry: IndexProvenance | None = None  # which index resolved the name (for the lock)

    @property
    def path(self) -> Path:
        return self.record.directory

    def to_json(self) -> dict[str, Any]:
        return {
            "requested": self.requested, "action": self.action, "name": self.name or self.record.display_name,
            "version": self.version, "path": str(self.path), "source": self.record.source.to_dict(),
            "method": self.record.method.to_lock(), "files": [f.to_dict() for f in self.record.files],
            "notes": list(self.notes),
        }


def execute(plan: Plan, *, store: Store, settings: Settings, progress: bool = False,
            force: bool = False) -> list[InstallResult]:
    """Install every item: one shared download pool for all of them, then publish each.

    The key locks of all items are taken first, in sorted order (so concurrent commands cannot
    deadlock), and held until every item is published. Nothing becomes visible unless every
    downloaded byte verified.
    """
    with contextlib.ExitStack() as stack:
        for key in sorted({item.resolved.key for item in plan.items}):
            stack.enter_context(store.key_lock(key))
        staged = stage_missing(plan.items, store=store, settings=settings, progress=progress, force=force)
        done: set[tuple[str, str]] = set()
        return [_install_locked(store, item, staged, done, force=force) for item in plan.items]


def _install_locked(store: Store, item: PlanItem, staged: dict[tuple[str, str], Staged],
                    done: set[tuple[str, str]], *, force: bool) -> InstallResult:
    r = item.resolved
    ident = (r.key, r.commit)
    existing = store.get(r.key, r.commit)
    action = "installed"
    if existing is not None and (not force or ident in done):
        _check_same_files(existing, r)
        store.check_or_raise(existing)
        current = _with_aliases(existing, r)
        if r.kind == "hf" or current != existing:
            current = _touched(current)
            store.write_record(current)
        return InstallResult(r.requested, current, "present", r.name, r.version, r.notes, r.registry)
    if existing is not None:
        store.remove(existing)
        action = "reinstalled"
    record = _publish_new(store, r, staged[ident])
    done.add(ident)
    return InstallResult(r.requested, record, action, r.name, r.version, r.notes + record.notes, r.registry)


def _check_same_files(record: InstallRecord, r: Resolution) -> None:
    """The installed copy must be what the plan expects (a lock or index never silently changes)."""
    have = {f.path: f for f in record.files}
    diffs = []
    for f in r.files:
        got = have.get(f.path)
        if got is None:
            diffs.append(f"{f.path}: expected by {f.expected_from}, absent from the installed copy")
        elif got.size != f.size or (f.sha256 and got.sha256 != f.sha256):
            diffs.append(f"{f.path}: {f.expected_from} says size {f.size} sha256 {f.sha256}, "
                         f"installed copy has size {got.size} sha256 {got.sha256}")
    if r.kind in ("registry", "lock"):
        extra = set(have) - {f.path for f in r.files}
        diffs += [f"{p}: installed but not listed by the {r.kind}" for p in sorted(extra)]
    if diffs:
        message = f"{r.label}: the store's copy of {r.repo_id}@{r.commit[:12]} does not match the {r.kind} (drift)"
        if r.kind == "lock":
            raise LockfileError(message + "\n" + "\n".join(f"  {d}" for d in diffs))
        raise IntegrityError(message, problems=diffs)


def _with_aliases(record: InstallRecord, r: Resolution) -> InstallRecord:
    """``record`` that also answers to the registry name and the Hub revision that resolved ``r``."""
    names, revisions = record.names, record.revisions
    if r.name and r.version and Alias(r.name, r.version) not in names:
        names += (Alias(r.name, r.version),)
    if r.kind == "hf" and (r.revision or "") not in revisions:
        revisions += (r.revision or "",)
    return replace(record, names=names, revisions=revisions)


def _touched(record: InstallRecord) -> InstallRecord:
    """Marked as the most recent install; offline resolution of a Hub revision prefers it."""
    return replace(record, installed_seq=time.time_ns())


def _publish_new(store: Store, r: Resolution, staged: Staged) -> InstallRecord:
    """Move verified files into blobs, hardlink them into a staging dir, rename it into place."""
    from .detect import stamp_folder

    files = tuple(replace(f, sha256=staged[f.path][1], expected_from="store", git_oid=None) for f in r.files)
    with store.gc_lock(), staging_dir(store) as staging:
        for partial, sha in staged.values():
            if partial is not None:
                store.add_blob(partial, sha)
        missing = [f.path for f in files if not store.blob_path(f.sha256 or "").is_file()]
        if missing:
            raise IntegrityError(f"{r.label}: blobs vanished from the store during install (concurrent prune?)",
                                 problems=missing, hint="run the install again")
        store.link_files(staging, files)
        method, note = stamp_folder(staging)
        record = InstallRecord(
            key=r.key, commit=r.commit, files=files, method=method, source=r.source, directory=staging,
            installed_by=f"adapterhub {__version__}", notes=(note,) if note else (),
        )
        record = store.publish(staging, _touched(_with_aliases(record, r)))
    shutil.rmtree(store.downloads / r.key / r.commit, ignore_errors=True)
    return record
