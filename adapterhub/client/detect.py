"""The client's one door into the method plugins: which method claims an adapter folder, and its stamp.

Installing never loads an adapter: detection reads only ``adapter_config.json`` and file names, so
the install path stays free of torch. Publishing stamps its manifest with the same
:class:`~adapterhub.client.models.MethodStamp` that install records in the store and the lock.
"""

from __future__ import annotations

from pathlib import Path

from .models import MethodStamp

UNKNOWN = MethodStamp("unknown")


def stamp_method(name: str) -> MethodStamp:
    """The stamp of registered method ``name``: its plugin and the distribution that ships it."""
    from ..plugin.manager import plugin_distribution
    from ..plugin.registry import registered_methods

    plugin = registered_methods()[name].plugin
    distribution, version = plugin_distribution(plugin)
    return MethodStamp(name, plugin, distribution, str(version))


def claiming_method(path: Path) -> tuple[str | None, str | None]:
    """(name of the method that claims the adapter in ``path``, None) or (None, why none does)."""
    from ..errors import AdapterFormatError, NoMethodClaimsError
    from ..plugin.registry import detect_method

    try:
        return detect_method(path).name, None
    except (NoMethodClaimsError, AdapterFormatError) as exc:
        return None, exc.message


def stamp_folder(path: Path) -> tuple[MethodStamp, str | None]:
    """(stamp, note) for the adapter in ``path``; ``unknown`` (with a note saying why) when no
    installed plugin claims it: an install records it rather than failing."""
    name, why = claiming_method(path)
    if name is None:
        return UNKNOWN, f"method recorded as 'unknown': {why}"
    return stamp_method(name), None
