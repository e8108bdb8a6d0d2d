"""adapterhub: a package manager and runtime for PEFT adapters.

This namespace is the user API: :class:`AdapterModel` and the composition blocks, the client
(install, verify, lock), publishing, and the errors. Plugin authors import
:mod:`adapterhub.plugin` (and :mod:`adapterhub.toolkit`); the command line is :mod:`adapterhub.cli`.

``import adapterhub`` stays light: torch, transformers and peft are imported only when a model
is touched (the runtime names below are resolved lazily).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .composition import Average, BatchSplit, Parallel, Stack
from .errors import (
    AdapterExistsError,
    AdapterFormatError,
    AdapterHubError,
    AdapterNotLoadedError,
    CompositionError,
    DownloadError,
    IncompatibleBaseModelError,
    IntegrityError,
    OfflineError,
    PickleRefusedError,
    PublishError,
    ResolutionError,
    UnsupportedOperationError,
    UsageError,
)

__version__ = "0.1.0"

if TYPE_CHECKING:  # pragma: no cover
    from .client import Client, ensure_installed
    from .publish import push_adapter
    from .publish.export import export
    from .runtime.callbacks import SaveAdaptersCallback
    from .runtime.model import AdapterModel
    from .toolkit.quantize import quantize_4bit

_LAZY = {
    "Client": ("adapterhub.client", "Client"),
    "AdapterModel": ("adapterhub.runtime.model", "AdapterModel"),
    "SaveAdaptersCallback": ("adapterhub.runtime.callbacks", "SaveAdaptersCallback"),
    "quantize_4bit": ("adapterhub.toolkit.quantize", "quantize_4bit"),
    "ensure_installed": ("adapterhub.client", "ensure_installed"),
    "push_adapter": ("adapterhub.publish", "push_adapter"),
    "export": ("adapterhub.publish.export", "export"),
}

__all__ = [
    "AdapterExistsError",
    "AdapterFormatError",
    "AdapterHubError",
    "AdapterModel",
    "AdapterNotLoadedError",
    "Average",
    "BatchSplit",
    "Client",
    "CompositionError",
    "DownloadError",
    "IncompatibleBaseModelError",
    "IntegrityError",
    "OfflineError",
    "Parallel",
    "PickleRefusedError",
    "PublishError",
    "ResolutionError",
    "SaveAdaptersCallback",
    "Stack",
    "UnsupportedOperationError",
    "UsageError",
    "__version__",
    "ensure_installed",
    "export",
    "push_adapter",
    "quantize_4bit",
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        module_name, attr = _LAZY[name]
        value = getattr(importlib.import_module(module_name), attr)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'adapterhub' has no attribute {name!r}")
