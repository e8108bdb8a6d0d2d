"""The adapterhub client: resolve, download, verify, store and lock adapters.

Public API (everything else in this package is internal)::

    Client(settings=None, progress=False)                 # the facade (see adapterhub.client.api)
        .plan / .install(sources, lock=..., locked=..., dry_run=..., force=...) / .sync(lock)
        .uninstall / .verify / .search / .info / .installed / .prune
    ensure_installed(source, revision=None) -> Path       # install if needed, return the verified dir
    Settings, get_settings()                              # home, endpoint, token, offline, index
    sha256_file(path) -> str

Modules, in the order data flows: ``refs`` (parse a request) -> ``index`` (read the registry;
``authoring`` writes one) -> ``resolve`` (pin it) -> ``plan`` -> ``stage`` (fetch and verify) ->
``install`` (publish into ``store``) -> ``lockfile``. ``remote`` is the only module that opens a
connection; ``models`` holds the typed records they pass each other. ``checkpoint`` fetches and
verifies a base model checkpoint for ``adapterhub export``.
"""

from __future__ import annotations

from ..settings import Settings, get_settings
from .api import Client, InfoResult, InstallReport, SearchHit, SearchResult, VerifyReport, ensure_installed
from .hashing import sha256_file
from .install import InstallResult
from .models import FileEntry, IndexEntry, InstallRecord, LockEntry, MethodStamp, Resolution
from .plan import Plan, PlanItem
from .refs import parse_source

__all__ = [
    "Client",
    "FileEntry",
    "IndexEntry",
    "InfoResult",
    "InstallRecord",
    "InstallReport",
    "InstallResult",
    "LockEntry",
    "MethodStamp",
    "Plan",
    "PlanItem",
    "Resolution",
    "SearchHit",
    "SearchResult",
    "Settings",
    "VerifyReport",
    "ensure_installed",
    "get_settings",
    "parse_source",
    "sha256_file",
]
