"""The plugin manager: built-in method plugins plus third-party ones from the ``adapterhub`` entry-point group.

It owns pluggy's ``PluginManager`` and the loading lifecycle; which methods the loaded plugins
registered is :mod:`adapterhub.plugin.registry`'s business (it calls :func:`load_plugins`).

Environment switches:

* ``ADAPTERHUB_LOAD_PLUGINS``: unset loads every entry point; ``""`` loads none; a comma list of
  distribution or entry-point names loads only those. Built-ins always load.
* ``ADAPTERHUB_STRICT_PLUGINS=1``: a plugin that fails to load raises instead of warning.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import os
import warnings

import pluggy

from ..errors import PluginError
from . import hookspecs

ENTRY_POINT_GROUP = "adapterhub"

DEFAULT_PLUGINS = (
    "adapterhub.default_plugins.lora",
    "adapterhub.default_plugins.ia3",
    "adapterhub.default_plugins.bottleneck",
    "adapterhub.default_plugins.bitfit",
    "adapterhub.default_plugins.prompt_learning",
    "adapterhub.default_plugins.peft_generic",
)

pm = pluggy.PluginManager("adapterhub")
pm.add_hookspecs(hookspecs)

_loaded = False
#: name -> error message for plugins that failed to load (shown by ``adapterhub plugins``).
failed_plugins: dict[str, str] = {}
#: entry-point plugin name -> (distribution name, version), recorded at load time.
_plugin_dists: dict[str, tuple[str, str]] = {}


class PluginLoadWarning(UserWarning):
    """A third-party plugin failed to load and was skipped."""


def _strict() -> bool:
    return os.environ.get("ADAPTERHUB_STRICT_PLUGINS", "").lower() in {"1", "true", "yes"}


def _wanted(ep: importlib.metadata.EntryPoint) -> bool:
    spec = os.environ.get("ADAPTERHUB_LOAD_PLUGINS")
    if spec is None:
        return True
    wanted = {s.strip() for s in spec.split(",") if s.strip()}
    dist_name = ep.dist.name if ep.dist is not None else None
    return ep.name in wanted or (dist_name is not None and dist_name in wanted)


def _skip(name: str, exc: BaseException) -> None:
    failed_plugins[name] = f"{type(exc).__name__}: {exc}"
    if _strict():
        raise PluginError(
            f"adapterhub plugin {name!r} failed to load ({type(exc).__name__}: {exc})",
            hint="uninstall it, fix it, or unset ADAPTERHUB_STRICT_PLUGINS to skip it with a warning",
        ) from exc
    message = (
        f"adapterhub plugin {name!r} failed to load and was skipped ({type(exc).__name__}: {exc}); "
        f"uninstall it, or set ADAPTERHUB_LOAD_PLUGINS to the plugins you want"
    )
    warnings.warn(message, PluginLoadWarning, stacklevel=3)


def load_entry_point(ep: importlib.metadata.EntryPoint) -> None:
    """Load and register one entry-point plugin; a failure is a warning unless strict mode is on."""
    if pm.get_plugin(ep.name) is not None or pm.is_blocked(ep.name):
        return
    try:
        plugin = ep.load()
        pm.register(plugin, name=ep.name)
        pm.check_pending()
        if ep.dist is not None:
            _plugin_dists[ep.name] = (ep.dist.name, ep.dist.version)
    except Exception as exc:  # noqa: BLE001 - any plugin bug must not break the CLI
        if pm.get_plugin(ep.name) is not None:
            pm.unregister(name=ep.name)
        _skip(ep.name, exc)


def load_plugins() -> None:
    """Register built-ins, then third-party entry points. Idempotent."""
    global _loaded
    if _loaded:
        return
    _loaded = True
    for module_name in DEFAULT_PLUGINS:
        if pm.get_plugin(module_name) is None:
            pm.register(importlib.import_module(module_name), name=module_name)
    for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        if _wanted(ep):
            load_entry_point(ep)


def unload_plugins() -> None:
    """Forget every registered plugin so the next :func:`load_plugins` starts again
    (:func:`adapterhub.plugin.registry.reset` also forgets the methods they registered)."""
    global _loaded
    for name, _plugin in list(pm.list_name_plugin()):
        pm.unregister(name=name)
    failed_plugins.clear()
    _loaded = False


def plugin_distribution(plugin_name: str) -> tuple[str, str]:
    """(distribution name, version) of a registered plugin; built-ins report adapterhub itself."""
    if plugin_name in _plugin_dists:
        return _plugin_dists[plugin_name]
    for plugin, dist in pm.list_plugin_distinfo():
        if pm.get_name(plugin) == plugin_name:
            return dist.metadata["name"], dist.version
    return "adapterhub", _own_version()


def _own_version() -> str:
    try:
        return importlib.metadata.version("adapterhub")
    except importlib.metadata.PackageNotFoundError:  # running from a source tree
        return "0+unknown"
