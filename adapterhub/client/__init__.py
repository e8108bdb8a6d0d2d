"""The adapterhub client: registry index, resolution, verified downloads, the store and lock files.

Public API::

    ensure_installed(source, revision=None) -> Path   # install if needed, return the verified dir
    sha256_file(path) -> str
    settings.get_settings() -> Settings               # home, endpoint, token, offline, index
    Installer(settings).plan([...]) / .execute(plan) / .plan_locked(lock) / .uninstall / .verify
"""

from __future__ import annotations

from .. import settings
from .hashing import sha256_file
from .install import InstallResult, Installer, Plan, ensure_installed
from ..settings import Settings, get_settings

__all__ = ["InstallResult", "Installer", "Plan", "Settings", "ensure_installed", "get_settings", "settings", "sha256_file"]
