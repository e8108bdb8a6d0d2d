"""adapterhub: a package manager and runtime for PEFT adapters.

``import adapterhub`` stays light: torch, transformers and peft are imported only when a model
is touched (the runtime names below are resolved lazily).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .composition import Average, BatchSplit, Parallel, Stack
from .errors import AdapterHubError, ExitCode
from .hookspecs import hookimpl
from .methods import AdapterFiles, AdapterMethod, detect_method, get_method, get_methods

__version__ = "0.1.0"

if TYPE_CHECKING:  # pragma: no cover
    from .client import Client, ensure_installed
    from .runtime.model import AdapterModel
    from .runtime.quantize import quantize_4bit

_LAZY = {
    "Client": ("adapterhub.client", "Client"),
    "ensure_installed": ("adapterhub.client", "ensure_installed"),
    "AdapterModel": ("adapterhub.runtime.model", "AdapterModel"),
    "quantize_4bit": ("adapterhub.runtime.quantize", "quantize_4bit"),
}

__all__ = [
    "AdapterFiles",
    "AdapterHubError",
    "AdapterMethod",
    "AdapterModel",
    "Average",
    "BatchSplit",
    "Client",
    "ExitCode",
    "Parallel",
    "Stack",
    "__version__",
    "detect_method",
    "ensure_installed",
    "get_method",
    "get_methods",
    "hookimpl",
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
