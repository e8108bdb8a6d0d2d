"""Plan, then act: resolve requests, show what will be fetched, download, verify, publish, lock.

Library code: returns data objects and never prints (the CLI formats plans and results).
Every byte is hashed here before it enters the store, against the index entry or lock when there
is one, else against the Hub's LFS sha256 (or git blob id for small files); the computed sha256
of every file is recorded.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .. import __version__
from ..errors import IntegrityError, LockfileError, OfflineError, ResolutionError, UsageError
from .index import Index, load_index
from .paths import join_inside
from .refs import SourceRef, parse_source
from .resolve import Resolved, content_digest, local_files, resolve
from ..settings import Settings, get_settings
from .store import Record, Store, key_for_local, key_for_repo, staging_dir


@dataclass
class PlanItem:
    resolved: Resolved
    installed: bool  # a complete install of this commit is already in the store
    present: set[str] = field(default_factory=set)  # paths whose blob is already in the store

    @property
    def total_bytes(self) -> int:
        return sum(f["size"] for f in self.resolved.files)

    @property
    def download_bytes(self) -> int:
        if self.installed:
            return 0
        return sum(f["size"] for f in self.resolved.files if f["path"] not in self.present)

    def to_json(self) -> dict[str, Any]:
        r = self.resolved
        return {
            "requested": r.requested, "kind": r.kind, "name": r.name, "version": r.version,
            "repo_id": r.repo_id, "revision": r.commit, "installed": self.installed,
            "total_bytes": self.total_bytes, "download_bytes": self.download_bytes, "notes": r.notes,
            "files": [
                {"path": f["path"], "size": f["size"], "sha256": f["sha256"], "expected_from": f["expected_from"],
                 "present": self.installed or f["path"] in self.present}
                for f in r.files
            ],
        }


@dataclass
class Plan:
    items: list[PlanItem]
    index_source: str = ""

    @property
    def total_bytes(self) -> int:
        return sum(i.total_bytes for i in self.items)

    @property
    def download_bytes(self) -> int:
        return sum(i.download_bytes for i in self.items)

    def to_json(self) -> dict[str, Any]:
        return {"adapters": [i.to_json() for i in self.items], "total_bytes": self.total_bytes,
                "download_bytes": self.download_bytes, "index": self.index_source}


@dataclass
class InstallResult:
    requested: str
    record: Record
    action: str  # "installed", "present" or "reinstalled"
    name: str | None = None
    version: str | None = None
    notes: list[str] = field(default_factory=list)
    registry: dict[str, Any] | None = None  # which index resolved the name (for the lock)

    @property
    def path(self) -> Path:
        return self.record.directory

    def to_json(self) -> dict[str, Any]:
        return {
            "requested": self.requested, "action": self.action, "name": self.name or self.record.display_name,
            "version": self.version, "path": str(self.path), "source": self.record.source,
            "method": self.record.data["method"], "files": self.record.files, "notes": self.notes,
        }


# --- method detection ---------------------------------------------------------------------------


def method_info(path: Path) -> tuple[dict[str, str], str | None]:
    """(lock ``method`` table, note) for the adapter in ``path``; "unknown" when no plugin claims it."""
    from ..errors import AdapterFormatError, NoMethodClaimsError
    from ..methods import detect_method, registered_methods
    from ..plugins import pm

    try:
        method = detect_method(path)
    except (NoMethodClaimsError, AdapterFormatError) as exc:
        return {"name": "unknown"}, f"method recorded as 'unknown': {exc.message}"
    plugin_name = registered_methods()[method.name].plugin
    version = None
    for plugin, dist in pm.list_plugin_distinfo():
        if pm.get_name(plugin) == plugin_name:
            version = dist.version
    if version is None and plugin_name.startswith("adapterhub."):
        version = __version__
    info = {"name": method.name, "plugin": plugin_name}
    if version:
        info["plugin-version"] = str(version)
    return info, None


# --- planning -----------------------------------------------------------------------------------


class Installer:
    """Holds the settings, store and (lazily) index for one command."""

    def __init__(self, settings: Settings | None = None, *, progress: bool = False) -> None:
        self.settings = settings or get_settings()
        self.store = Store(self.settings.home)
        self.progress = progress
        self._index: Index | None = None

    @property
    def index(self) -> Index:
        if self._index is None:
            self._index = load_index(self.settings)
        return self._index

    def _plan_item(self, resolved: Resolved) -> PlanItem:
        installed = self.store.get(resolved.key, resolved.commit) is not None
        present = set()
        for f in resolved.files:
            if f["sha256"]:
                blob = self.store.blob_path(f["sha256"])
                if blob.is_file() and blob.stat().st_size == f["size"]:
                    present.add(f["path"])
        return PlanItem(resolved, installed, present)

    def plan(self, sources: list[str | SourceRef], *, revision: str | None = None, pre: bool = False) -> Plan:
        if not sources:
            raise UsageError("nothing to install", hint="give one or more SOURCE arguments, or --locked FILE")
        items = []
        for source in sources:
            ref = source if isinstance(source, SourceRef) else parse_source(source, revision)
            # Only touch the index when the request could be a registry name.
            index = self.index if ref.kind == "name" else Index({}, "(not needed)")
            items.append(self._plan_item(resolve(ref, index, self.settings, self.store, pre=pre)))
        return Plan(items, self._index.source if self._index else "")

    def plan_locked(self, lock_path: str | Path, only: list[str] | None = None) -> Plan:
        """A plan that installs exactly what ``lock_path`` pins (optionally only some requests)."""
        from .lockfile import read_lock

        lock_path = Path(lock_path)
        entries = read_lock(lock_path)
        if only:
            by_request = {e["requested"]: e for e in entries}
            missing = [s for s in only if s not in by_request]
            if missing:
                raise LockfileError(
                    f"{lock_path}: not locked: {', '.join(missing)}",
                    hint="locked requests: " + ", ".join(sorted(by_request)) + "; re-lock with `adapterhub install ... --lock FILE`",
                )
            entries = [by_request[s] for s in only]
        return Plan([self._plan_item(self._resolved_from_lock(e, lock_path)) for e in entries], str(lock_path))

    def _resolved_from_lock(self, entry: dict[str, Any], lock_path: Path) -> Resolved:
        src = entry["source"]
        files = [dict(f, expected_from="lock") for f in entry["files"]]
        if src["type"] == "local":
            root = (lock_path.parent / src["path"]).resolve()
            if not root.is_dir():
                raise LockfileError(f"{lock_path}: locked directory {src['path']} ({root}) does not exist")
            current = local_files(root)
            if content_digest(current) != src["digest"]:
                raise LockfileError(
                    f"{lock_path}: {src['path']} changed since it was locked (drift)",
                    hint="re-lock it with `adapterhub install DIR --lock FILE`",
                )
            return Resolved(entry["requested"], "local", key_for_local(root.name), src["digest"][:40], files,
                            local_path=root, digest=src["digest"])
        resolved = Resolved(
            entry["requested"], "lock", key_for_repo(src["repo-id"]), src["revision"], files,
            repo_id=src["repo-id"], name=entry["name"] if entry.get("version") else None, version=entry.get("version"),
        )
        if entry.get("version"):
            self._check_index_drift(entry, lock_path)
        return resolved

    def _check_index_drift(self, entry: dict[str, Any], lock_path: Path) -> None:
        """The index may add versions (not drift) but must not re-point a locked one."""
        try:
            index_entry = self.index.get(entry["name"])
        except OfflineError:
            return
        info = (index_entry or {}).get("versions", {}).get(entry["version"])
        if info is None:
            return
        diffs = []
        if info["source"]["repo_id"] != entry["source"]["repo-id"] or info["source"]["revision"] != entry["source"]["revision"]:
            diffs.append(f"index points to {info['source']['repo_id']}@{info['source']['revision']}, lock to "
                         f"{entry['source']['repo-id']}@{entry['source']['revision']}")
        if sorted((f["path"], f["size"], f["sha256"]) for f in info["files"]) != sorted(
            (f["path"], f["size"], f["sha256"]) for f in entry["files"]
        ):
            diffs.append("the index lists different files or hashes")
        if diffs:
            raise LockfileError(
                f"{lock_path}: {entry['name']} {entry['version']} drifted from the index ({self.index.source}): "
                + "; ".join(diffs),
                hint="a published version must never change; investigate before re-locking",
            )

    # -- acting ---------------------------------------------------------------------------------

    def execute(self, plan: Plan, *, force: bool = False) -> list[InstallResult]:
        """Install every item: one shared download pool for all of them, then publish each.

        The key locks of all items are taken first, in sorted order (so concurrent commands cannot
        deadlock), and held until every item is published. Nothing becomes visible unless every
        downloaded byte verified.
        """
        with contextlib.ExitStack() as stack:
            for key in sorted({item.resolved.key for item in plan.items}):
                stack.enter_context(self.store.key_lock(key))
            staged = self._stage_missing(plan.items, force=force)
            done: set[tuple[str, str]] = set()
            results = []
            for item in plan.items:
                results.append(self._install_locked(item, staged, done, force=force))
            return results

    def install_item(self, item: PlanItem, *, force: bool = False) -> InstallResult:
        return self.execute(Plan([item]), force=force)[0]

    def _install_locked(self, item: PlanItem, staged: dict[tuple[str, str], dict[str, tuple[Path | None, str]]],
                        done: set[tuple[str, str]], *, force: bool) -> InstallResult:
        r = item.resolved
        ident = (r.key, r.commit)
        existing = self.store.get(r.key, r.commit)
        action = "installed"
        if existing is not None and (not force or ident in done):
            self._check_same_files(existing, r)
            self.store.check_or_raise(existing)
            before = json.dumps(existing.data, sort_keys=True)
            self._add_aliases(existing, r)
            if r.kind == "hf" or json.dumps(existing.data, sort_keys=True) != before:
                self._touch(existing)
                self.store.write_record(existing)
            return InstallResult(r.requested, existing, "present", r.name, r.version, r.notes, r.registry)
        if existing is not None:
            self.store.remove(existing)
            action = "reinstalled"
        record = self._publish_new(r, staged[ident])
        done.add(ident)
        return InstallResult(r.requested, record, action, r.name, r.version,
                             r.notes + record.data.get("notes", []), r.registry)

    def _check_same_files(self, record: Record, r: Resolved) -> None:
        have = {f["path"]: f for f in record.files}
        diffs = []
        for f in r.files:
            got = have.get(f["path"])
            if got is None:
                diffs.append(f"{f['path']}: expected by {f['expected_from']}, absent from the installed copy")
            elif got["size"] != f["size"] or (f["sha256"] and got["sha256"] != f["sha256"]):
                diffs.append(f"{f['path']}: {f['expected_from']} says size {f['size']} sha256 {f['sha256']}, "
                             f"installed copy has size {got['size']} sha256 {got['sha256']}")
        if r.kind in ("registry", "lock"):
            extra = set(have) - {f["path"] for f in r.files}
            diffs += [f"{p}: installed but not listed by the {r.kind}" for p in sorted(extra)]
        if diffs:
            cls = LockfileError if r.kind == "lock" else IntegrityError
            message = f"{r.label}: the store's copy of {r.repo_id}@{r.commit[:12]} does not match the {r.kind} (drift)"
            if cls is LockfileError:
                raise LockfileError(message + "\n" + "\n".join(f"  {d}" for d in diffs))
            raise IntegrityError(message, problems=diffs)

    def _add_aliases(self, record: Record, r: Resolved) -> None:
        if r.name and r.version:
            alias = {"name": r.name, "version": r.version}
            if alias not in record.data.setdefault("names", []):
                record.data["names"].append(alias)
        if r.kind == "hf":
            revisions = record.data.setdefault("revisions", [])
            if (r.revision or "") not in revisions:
                revisions.append(r.revision or "")

    @staticmethod
    def _touch(record: Record) -> None:
        """Mark the most recent install; offline resolution of a Hub revision prefers it."""
        record.data["installed_seq"] = time.time_ns()

    # -- staging: every missing file of every item, fetched and verified in one pool -------------

    def _stage_missing(self, items: list[PlanItem], *, force: bool) -> dict[tuple[str, str], dict[str, tuple[Path | None, str]]]:
        """For each (key, commit) that needs installing: path -> (verified file or None if the blob
        is already in the store, sha256). Raises before anything is published if any file fails."""
        from .remote import FetchJob, fetch_files

        staged: dict[tuple[str, str], dict[str, tuple[Path | None, str]]] = {}
        jobs: list[FetchJob] = []
        owner: dict[int, Resolved] = {}
        problems: dict[str, list[str]] = {}
        for item in items:
            r = item.resolved
            ident = (r.key, r.commit)
            if ident in staged or (not force and self.store.get(r.key, r.commit) is not None):
                continue
            files: dict[str, tuple[Path | None, str]] = {}
            staged[ident] = files
            needed = []
            for f in r.files:
                if f["sha256"] and self.store.blob_ok(f["sha256"], f["size"]):
                    files[f["path"]] = (None, f["sha256"])
                else:
                    needed.append(f)
            work_dir = self.store.downloads / r.key / r.commit
            if r.kind == "local":
                for path, entry, problem in self._copy_local(r, needed, work_dir):
                    if problem:
                        problems.setdefault(r.label, []).append(problem)
                    else:
                        files[path] = entry
                continue
            for f in needed:
                job = FetchJob(r.repo_id or "", r.commit, f["path"], f["size"], self._partial_path(work_dir, f["path"]),
                               f["sha256"], f.get("git_oid"), f["expected_from"])
                owner[id(job)] = r
                jobs.append(job)
        if jobs and not problems:
            labels = sorted({owner[id(j)].label for j in jobs})
            desc = labels[0] if len(labels) == 1 else f"{len(labels)} adapters"
            for fetched in fetch_files(self.settings, jobs, progress=self.progress, desc=desc):
                r = owner[id(fetched.job)]
                if fetched.problem:
                    problems.setdefault(r.label, []).append(fetched.problem)
                else:
                    staged[(r.key, r.commit)][fetched.job.path] = (fetched.job.partial, fetched.sha256 or "")
        if problems:
            first = next(label for label in [i.resolved.label for i in items] if label in problems)
            listed = [p if len(problems) == 1 else f"{label}: {p}" for label, ps in problems.items() for p in ps]
            raise IntegrityError(
                f"{first}: {len(listed)} file(s) failed verification; nothing was installed",
                problems=listed,
                hint="the server or the connection delivered wrong bytes; retry, and report it if it persists",
            )
        return staged

    @staticmethod
    def _partial_path(work_dir: Path, relpath: str) -> Path:
        """A flat, safe name per file in the download dir (never derived from server paths' layout)."""
        return work_dir / (hashlib.sha256(relpath.encode()).hexdigest()[:32] + ".incomplete")

    def _copy_local(self, r: Resolved, needed: list[dict[str, Any]], tmp: Path
                    ) -> list[tuple[str, tuple[Path | None, str] | None, str | None]]:
        """Copy (and hash while copying) files of a local dir; they must still match the plan."""
        assert r.local_path is not None
        tmp.mkdir(parents=True, exist_ok=True)
        out = []
        for f in needed:
            src = join_inside(r.local_path, f["path"], where=str(r.local_path))
            dst = self._partial_path(tmp, f["path"])
            digest = hashlib.sha256()
            size = 0
            with open(src, "rb") as fin, open(dst, "wb") as fout:
                while chunk := fin.read(1 << 20):
                    size += len(chunk)
                    digest.update(chunk)
                    fout.write(chunk)
                fout.flush()
                os.fsync(fout.fileno())
            sha = digest.hexdigest()
            if size != f["size"]:
                out.append((f["path"], None, f"{f['path']}: size {size}, but {f['expected_from']} says {f['size']} (wrong size)"))
            elif f["sha256"] and sha != f["sha256"]:
                out.append((f["path"], None, f"{f['path']}: sha256 {sha}, but {f['expected_from']} says {f['sha256']}"))
            else:
                out.append((f["path"], (dst, sha), None))
        return out

    def _publish_new(self, r: Resolved, staged: dict[str, tuple[Path | None, str]]) -> Record:
        """Move verified files into blobs, hardlink them into a staging dir, rename it into place."""
        store = self.store
        files = [{"path": f["path"], "size": f["size"], "sha256": staged[f["path"]][1]} for f in r.files]
        with store.gc_lock(), staging_dir(store) as staging:
            for path, (partial, sha) in staged.items():
                if partial is not None:
                    store.add_blob(partial, sha)
            missing = [f["path"] for f in files if not store.blob_path(f["sha256"]).is_file()]
            if missing:
                raise IntegrityError(f"{r.label}: blobs vanished from the store during install (concurrent prune?)",
                                     problems=missing, hint="run the install again")
            store.link_files(staging, files)
            method, note = method_info(staging)
            data: dict[str, Any] = {
                "record_version": 1, "key": r.key, "commit": r.commit, "files": files, "method": method,
                "names": [], "revisions": [], "installed_by": f"adapterhub {__version__}",
                "source": ({"type": "local", "path": str(r.local_path), "digest": r.digest} if r.kind == "local"
                           else {"type": "hf", "repo_id": r.repo_id, "revision": r.commit}),
            }
            if note:
                data["notes"] = [note]
            record = Record(r.key, r.commit, data, staging)
            self._add_aliases(record, r)
            self._touch(record)
            store.publish(staging, record)
        shutil.rmtree(store.downloads / r.key / r.commit, ignore_errors=True)
        return record

    # -- other operations -------------------------------------------------------------------------

    def uninstall(self, queries: list[str]) -> list[Record]:
        removed = []
        for query in queries:
            matches = self.store.find(query)
            if not matches:
                installed = sorted({r.display_name for r in self.store.records()})
                raise ResolutionError(f"{query!r} is not installed",
                                      hint="installed: " + (", ".join(installed) or "(nothing)"))
            for record in matches:
                with self.store.key_lock(record.key):
                    self.store.remove(record)
                removed.append(record)
        return removed

    def verify(self, queries: list[str] | None = None) -> tuple[list[Record], list[str]]:
        """Re-hash installs (all, or those matching ``queries``); return (records checked, problems)."""
        if queries:
            records = []
            for query in queries:
                found = self.store.find(query)
                if not found:
                    raise ResolutionError(f"{query!r} is not installed")
                records += [r for r in found if r not in records]
        else:
            records = self.store.records()
        problems = [p for r in records for p in self.store.verify(r)]
        if not queries:
            problems += self.store.unreadable_records() + self.store.verify_blobs()
        return records, problems


def ensure_installed(source: str, revision: str | None = None, *, settings: Settings | None = None,
                     progress: bool = False) -> Path:
    """Install ``source`` (registry name, Hub repo id, hf:// URL or directory) if needed; return the
    verified store directory. Used by ``AdapterModel.load_adapter``."""
    installer = Installer(settings, progress=progress)
    plan = installer.plan([source], revision=revision)
    return installer.execute(plan)[0].path
