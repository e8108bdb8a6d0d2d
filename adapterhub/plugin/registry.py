"""The method registry: which :class:`AdapterMethod` objects the loaded plugins registered, and
which of them claims an adapter folder.

It asks the plugin manager (:mod:`adapterhub.plugin.manager`) to load plugins on first use and
owns the cache of what they registered; :func:`reset` forgets both. No torch.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import NoMethodClaimsError, PluginError, UnknownMethodError
from .contract import AdapterMethod
from .records import CONFIG_NAME, read_adapter_config


@dataclass(frozen=True)
class RegisteredMethod:
    method: AdapterMethod
    plugin: str  # the pluggy plugin name that registered it


_cache: dict[str, RegisteredMethod] | None = None


def registered_methods() -> dict[str, RegisteredMethod]:
    """name -> RegisteredMethod, loading plugins on first use."""
    global _cache
    if _cache is not None:
        return _cache
    from .manager import load_plugins, pm

    load_plugins()
    found: dict[str, RegisteredMethod] = {}
    fallbacks: dict[str, RegisteredMethod] = {}
    # Call each plugin's hook on its own so every method is attributed to the plugin that made it.
    for plugin_name, plugin in pm.list_name_plugin():
        impl = getattr(plugin, "register_methods", None)
        if impl is None:
            continue

        def register(method: AdapterMethod, _plugin: str = plugin_name) -> None:
            if not isinstance(method, AdapterMethod):
                raise PluginError(f"plugin {_plugin!r} registered {method!r}, which is not an AdapterMethod")
            target = fallbacks if method.fallback else found
            if method.name in target:
                raise PluginError(
                    f"method {method.name!r} is registered by both {target[method.name].plugin!r} and {_plugin!r}",
                    hint="uninstall one of them, or exclude one with ADAPTERHUB_LOAD_PLUGINS",
                )
            target[method.name] = RegisteredMethod(method, _plugin)

        impl(register=register)
    # A fallback gives way to any other method with its name or one of its PEFT types.
    claimed = {str(t).upper() for reg in found.values() for t in reg.method.peft_types}
    for name, reg in fallbacks.items():
        if name not in found and not claimed & {str(t).upper() for t in reg.method.peft_types}:
            found[name] = reg
    _cache = found
    return found


def reset() -> None:
    """Forget the registered methods and every loaded plugin (tests; after installing a plugin)."""
    global _cache
    from .manager import unload_plugins

    unload_plugins()
    _cache = None


def get_methods() -> dict[str, AdapterMethod]:
    return {name: reg.method for name, reg in registered_methods().items()}


def get_method(name: str) -> AdapterMethod:
    methods = registered_methods()
    if name not in methods:
        raise UnknownMethodError(
            f"unknown adapter method {name!r}",
            hint=f"known methods: {', '.join(sorted(methods)) or '(none)'}",
        )
    return methods[name].method


def method_plugin(name: str) -> str:
    """The plugin that registered method ``name``."""
    get_method(name)
    return registered_methods()[name].plugin


def folder_files(path: Path) -> set[str]:
    """The file names method detection sees (the one folder rule of adapterhub.layout)."""
    from ..layout import adapter_files

    return set(adapter_files(path))


def detect_method(path: str | Path, model: Any = None) -> AdapterMethod:
    """The method that owns the adapter in ``path`` (highest priority among claimants)."""
    config = read_adapter_config(path)
    files = folder_files(Path(path))
    claimants = [m for m in get_methods().values() if m.detect(config, files, model) is True]
    if not claimants:
        kind = config.get("peft_type") or (config.get("config") or {}).get("architecture")
        raise NoMethodClaimsError(
            f"{Path(path) / CONFIG_NAME}: no installed method plugin recognises this adapter"
            + (f" (type {kind!r})" if kind else ""),
            hint="`adapterhub methods` lists the installed methods; a plugin for this type may exist",
        )
    return max(claimants, key=lambda m: m.priority)
