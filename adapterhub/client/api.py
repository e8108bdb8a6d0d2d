"""The client facade: one object that the CLI, the runtime and library users call.

::

    from adapterhub import Client

    client = Client()                                   # settings from the environment
    report = client.install(["sentiment/sst2@>=1"], lock="adapterhub.lock")
    report.results[0].path                              # the verified store directory
    client.sync("adapterhub.lock")                      # exactly what the lock pins (offline if cached)
    client.search("sentiment"), client.info("sentiment/sst2"), client.verify(), client.uninstall([...])

A ``Client`` holds the settings, the store and the (lazily loaded) registry index of one session;
every method returns typed results and never prints. Network access goes through
:mod:`adapterhub.client.remote` only.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import AdapterHubError, ResolutionError, UsageError
from ..settings import Settings, get_settings
from .index import Index, LazyIndex
from .install import InstallResult, execute
from .lockfile import lock_entry, write_lock
from .models import IndexEntry, InstallRecord
from .plan import Plan, plan_lock, plan_requests
from .refs import SourceRef
from .store import Store


@dataclass(frozen=True)
class InstallReport:
    """What ``install``/``sync`` did: the plan, each request's result (none for a dry run), the lock written."""

    plan: Plan
    results: tuple[InstallResult, ...] = ()
    lock: Path | None = None
    dry_run: bool = False

    def to_json(self) -> dict[str, Any]:
        if self.dry_run:
            return {"dry_run": True, "plan": self.plan.to_json()}
        return {"dry_run": False, "plan": self.plan.to_json(), "installed": [r.to_json() for r in self.results],
                "lock": str(self.lock) if self.lock else None}


@dataclass(frozen=True)
class VerifyReport:
    checked: tuple[InstallRecord, ...]
    problems: tuple[str, ...]

    @property
    def ok(self) -> bool:
        return not self.problems


@dataclass(frozen=True)
class SearchHit:
    entry: IndexEntry
    latest: str | None  # newest non-yanked release; None when every version is yanked

    def to_json(self) -> dict[str, Any]:
        e = self.entry
        return {"name": e.name, "latest": self.latest, "task": e.task, "method": e.method,
                "base_model": e.base_model.repo_id, "description": e.description}


@dataclass(frozen=True)
class SearchResult:
    hits: tuple[SearchHit, ...]
    suggestions: tuple[str, ...]  # close registry names, when nothing matched
    index_source: str


@dataclass(frozen=True)
class InfoResult:
    entry: IndexEntry | None
    installed: tuple[InstallRecord, ...]
    index_source: str


class Client:
    """Install, lock, sync, verify, search and remove adapters with one set of :class:`Settings`.

    :param settings: defaults to :func:`adapterhub.settings.get_settings` (the environment).
    :param progress: show download progress bars on stderr (only on a terminal).
    """

    def __init__(self, settings: Settings | None = None, *, progress: bool = False) -> None:
        self.settings = settings or get_settings()
        self.store = Store(self.settings.home)
        self.progress = progress
        self._index = LazyIndex(self.settings)

    @property
    def index(self) -> Index:
        """The registry index of these settings (loaded on first use)."""
        return self._index()

    # -- install ----------------------------------------------------------------------------------

    def plan(self, sources: Sequence[str | SourceRef], *, revision: str | None = None, pre: bool = False) -> Plan:
        """Resolve ``sources`` (registry names, Hub repo ids, ``hf://`` URLs, folders) without installing."""
        return plan_requests(sources, settings=self.settings, store=self.store, index=self._index,
                             revision=revision, pre=pre)

    def plan_locked(self, lock_path: str | Path, only: Sequence[str] | None = None) -> Plan:
        """What installing from ``lock_path`` (all of it, or the requests in ``only``) would do."""
        return plan_lock(lock_path, store=self.store, index=self._index, only=only)

    def execute(self, plan: Plan, *, force: bool = False) -> list[InstallResult]:
        return execute(plan, store=self.store, settings=self.settings, progress=self.progress, force=force)

    def install(
        self,
        sources: Sequence[str | SourceRef] = (),
        *,
        revision: str | None = None,
        pre: bool = False,
        lock: str | Path | None = None,
        locked: str | Path | None = None,
        dry_run: bool = False,
        force: bool = False,
        on_plan: Callable[[Plan], None] | None = None,
    ) -> InstallReport:
        """Install ``sources``, or what the lock file ``locked`` pins (all of it, or just ``sources``).

        :param lock: write (or update) this lock file with what was installed.
        :param dry_run: plan only; nothing is downloaded or written.
        :param force: re-download and replace installed copies (repairs a corrupted one).
        :param on_plan: called with the plan before anything is downloaded (the CLI prints it).
        """
        if revision and len(sources) != 1:
            raise UsageError("--revision applies to exactly one SOURCE")
        if lock and locked:
            raise UsageError("--lock and --locked cannot be combined", hint="--locked installs from an existing lock")
        if locked:
            plan = self.plan_locked(locked, [str(s) for s in sources] or None)
        else:
            plan = self.plan(sources, revision=revision, pre=pre)
        return self._run(plan, lock=lock, dry_run=dry_run, force=force, on_plan=on_plan)

    def sync(self, lock_path: str | Path, *, dry_run: bool = False, force: bool = False,
             on_plan: Callable[[Plan], None] | None = None) -> InstallReport:
        """Install exactly what ``lock_path`` pins (offline when the store has it); drift is an error."""
        return self._run(self.plan_locked(lock_path), lock=None, dry_run=dry_run, force=force, on_plan=on_plan)

    def _run(self, plan: Plan, *, lock: str | Path | None, dry_run: bool, force: bool,
             on_plan: Callable[[Plan], None] | None) -> InstallReport:
        if on_plan is not None:
            on_plan(plan)
        if dry_run:
            return InstallReport(plan, dry_run=True)
        results = tuple(self.execute(plan, force=force))
        lock_path = None
        if lock:
            lock_path = Path(lock).resolve()
            write_lock(lock_path, [lock_entry(r, lock_path.parent) for r in results])
        return InstallReport(plan, results, lock_path)

    # -- the store ----------------------------------------------------------------------------------

    def installed(self) -> list[InstallRecord]:
        """Every complete install in the store."""
        return self.store.records()

    def _find(self, query: str) -> list[InstallRecord]:
        found = self.store.find(query)
        if not found:
            names = sorted({r.display_name for r in self.store.records()})
            raise ResolutionError(f"{query!r} is not installed", hint="installed: " + (", ".join(names) or "(nothing)"))
        return found

    def uninstall(self, queries: Sequence[str]) -> list[InstallRecord]:
        """Remove installs (registry name, name@version, repo id); blobs stay until :meth:`prune`."""
        removed = []
        for query in queries:
            for record in self._find(query):
                with self.store.key_lock(record.key):
                    self.store.remove(record)
                removed.append(record)
        return removed

    def verify(self, queries: Sequence[str] | None = None) -> VerifyReport:
        """Re-hash installs (all, or those matching ``queries``); with no queries also every blob and record."""
        if queries:
            records: list[InstallRecord] = []
            for query in queries:
                records += [r for r in self._find(query) if r not in records]
        else:
            records = self.store.records()
        problems = [p for r in records for p in self.store.verify(r)]
        if not queries:
            problems += self.store.unreadable_records() + self.store.verify_blobs()
        return VerifyReport(tuple(records), tuple(problems))

    def prune(self) -> dict[str, int]:
        """Delete unreferenced blobs, orphaned partial installs and stale downloads; counts of each."""
        return self.store.prune()

    # -- the index ----------------------------------------------------------------------------------

    def search(self, query: str = "", *, task: str | None = None, method: str | None = None,
               base_model: str | None = None) -> SearchResult:
        """Registry entries matching every word of ``query`` and the filters (close names when none do)."""
        from .resolve import select_version

        index = self.index
        hits = []
        for entry in index.search(query, task=task, method=method, base_model=base_model):
            try:
                latest: str | None = select_version(entry, None)
            except AdapterHubError:  # every version yanked: still list the entry
                latest = None
            hits.append(SearchHit(entry, latest))
        suggestions = () if hits else tuple(index.suggest(query))
        return SearchResult(tuple(hits), suggestions, index.source)

    def info(self, name: str) -> InfoResult:
        """The index entry of ``name`` (``name@version`` too) and what of it is installed."""
        from .refs import parse_source

        index = self.index
        try:
            ref = parse_source(name)
            entry = index.get(ref.name) if ref.kind == "name" else None
        except AdapterHubError:
            entry = None
        installed = self.store.find(name)
        if entry is None and not installed:
            close = index.suggest(name.split("@")[0])
            raise ResolutionError(f"{name!r} is neither in the index ({index.source}) nor installed",
                                  hint=(f"did you mean {' or '.join(close)}? " if close else "")
                                  + "`adapterhub search WORD` finds registry names")
        return InfoResult(entry, tuple(installed), index.source)


def ensure_installed(source: str, revision: str | None = None, *, settings: Settings | None = None,
                     progress: bool = False) -> Path:
    """Install ``source`` (registry name, Hub repo id, hf:// URL or directory) if needed; return the
    verified store directory. Used by ``AdapterModel.load_adapter``."""
    return Client(settings, progress=progress).install([source], revision=revision).results[0].path
