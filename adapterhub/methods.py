"""The method contract (:class:`AdapterMethod`) and the registry of methods that plugins register.

A method plugin implements one hook, ``register_methods(register)``, and registers one object per
PEFT method. That object owns everything method-specific: recognising its files, reading them,
checking a model, injecting modules, (de)activating, merging and saving. The runtime
(:class:`adapterhub.AdapterModel`) never looks inside a method; it only calls these methods.

This module must not import torch: type hints name torch objects as strings.
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from .errors import (
    AdapterFormatError,
    NoMethodClaimsError,
    PluginError,
    UnknownMethodError,
    UnsupportedOperationError,
)

CONFIG_NAME = "adapter_config.json"

#: The combine modes the runtime passes to :meth:`AdapterMethod.set_active`.
COMBINE_MODES = ("stack", "average", "batch_split")


@dataclass
class AdapterFiles:
    """An adapter as read from disk (or exported from a model), in its method's canonical form.

    ``config`` and ``state_dict`` are method-defined. The built-ins keep PEFT's config keys and
    PEFT's key naming without the ``base_model.model.`` prefix (module path relative to the model
    handed to ``apply``), so a method's ``read`` converts other formats into that form.
    """

    method: str
    config: dict[str, Any]
    state_dict: dict[str, Any]  # name -> torch.Tensor
    format: str = "peft"  # the on-disk format it came from: "peft" or "adapters"
    source: str | None = None  # where it came from, for messages
    extras: dict[str, Any] = field(default_factory=dict)  # e.g. a prediction head


class AdapterMethod(ABC):
    """One PEFT method. Subclass it in a plugin and register an instance via ``register_methods``.

    Capabilities are class attributes so that ``adapterhub methods`` can show them without a model.
    Operations a method cannot do raise :class:`~adapterhub.errors.UnsupportedOperationError`
    (the defaults below do), never a bare ``NotImplementedError`` and never a silent no-op.
    """

    #: Unique method name used in ``add_adapter(name, method)``, manifests and lock files.
    name: ClassVar[str]
    #: One line for ``adapterhub methods``.
    description: ClassVar[str] = ""
    #: PEFT ``peft_type`` values this method reads and writes, if any.
    peft_types: ClassVar[tuple[str, ...]] = ()
    #: On-disk formats this method can read and write ("peft", "adapters").
    formats: ClassVar[tuple[str, ...]] = ("peft",)
    #: Can be folded into the base weights (merge/unmerge/merge_and_unload).
    mergeable: ClassVar[bool] = False
    #: Can serve different adapters to different rows of one batch (BatchSplit, Parallel).
    supports_mixed_batch: ClassVar[bool] = False
    #: Can take part in an Average block.
    supports_average: ClassVar[bool] = False
    #: ``add_adapter`` can create a fresh, trainable adapter.
    trainable: ClassVar[bool] = True
    #: When several methods claim the same files, the highest priority wins (QLoRA over LoRA).
    priority: ClassVar[int] = 0

    # -- files ------------------------------------------------------------------------------

    @abstractmethod
    def detect(self, config: dict[str, Any], files: set[str], model: Any = None) -> bool:
        """Whether this method owns an adapter with this ``adapter_config.json`` and these file names.

        ``model`` is the model it is about to be applied to, when known (QLoRA claims LoRA files
        only for a 4-bit base). Must be cheap and must not import torch.
        """

    @abstractmethod
    def read(self, path: Path, *, allow_pickle: bool = False) -> AdapterFiles:
        """Read an adapter directory this method detected, converting it to canonical form.

        Pickle weights must raise :class:`~adapterhub.errors.PickleRefusedError` unless
        ``allow_pickle``; even then they are loaded with ``torch.load(weights_only=True)``.
        """

    @abstractmethod
    def save(self, adapter: AdapterFiles, path: Path, *, format: str = "peft") -> list[Path]:
        """Write ``adapter`` to directory ``path`` in ``format``; return the files written."""

    # -- model ------------------------------------------------------------------------------

    def check(self, model: Any, adapter: AdapterFiles) -> None:
        """Raise :class:`~adapterhub.errors.IncompatibleBaseModelError` if ``adapter`` cannot go on
        ``model`` (missing modules, wrong shapes), naming the module and the shapes.

        Must not modify the model: the runtime calls it before :meth:`apply` so that a failed
        load leaves the model bit-identical.
        """

    @abstractmethod
    def apply(self, model: Any, name: str, adapter: AdapterFiles) -> None:
        """Inject ``adapter`` into ``model`` under ``name`` and load its weights (inactive afterwards)."""

    def create(self, model: Any, name: str, config: dict[str, Any]) -> AdapterFiles:
        """Inject a fresh adapter built from ``config``; return its AdapterFiles (config filled in)."""
        raise UnsupportedOperationError(f"method {self.name!r} cannot create new adapters")

    @abstractmethod
    def set_active(
        self,
        model: Any,
        names: Sequence[str | None],
        *,
        combine: str = "stack",
        weights: Sequence[float] | None = None,
        batch_sizes: Sequence[int] | None = None,
    ) -> None:
        """Make exactly ``names`` (adapters of this method) active and every other one inactive.

        * ``combine="stack"``: all of ``names`` act together, in order (an empty list disables
          every adapter of this method).
        * ``combine="average"``: ``weights[i]`` (already normalised to sum 1) scales adapter i.
        * ``combine="batch_split"``: rows are split into consecutive slices of ``batch_sizes``;
          slice i uses ``names[i]``, or none of this method's adapters when ``names[i]`` is None.

        Raise :class:`~adapterhub.errors.CompositionError` naming the method and the block when
        the method cannot do that combination.
        """

    def merge(self, model: Any, name: str, weight: float = 1.0) -> None:
        """Fold adapter ``name`` (scaled by ``weight``) into the base weights, reversibly."""
        raise UnsupportedOperationError(
            f"method {self.name!r} cannot be merged into the base weights",
            hint="keep it as a separate module, or unload it",
        )

    def unmerge(self, model: Any, name: str) -> None:
        """Undo :meth:`merge` for ``name``."""
        raise UnsupportedOperationError(f"method {self.name!r} cannot be merged or unmerged")

    @abstractmethod
    def remove(self, model: Any, name: str) -> None:
        """Delete adapter ``name`` from the model; when it was the method's last adapter, restore
        the original modules so the model is the pristine base again."""

    def unload(self, model: Any, names: Sequence[str], *, keep_merged: bool = False) -> None:
        """Remove adapters ``names`` (the runtime passes all of this method's adapters on the model).

        With ``keep_merged`` (``merge_and_unload``) the adapters merged earlier stay folded into
        the base weights and the adapter modules go away; otherwise the pristine base comes back.
        Optional: the default removes the adapters one by one and cannot keep merged weights.
        """
        if keep_merged:
            raise UnsupportedOperationError(f"method {self.name!r} cannot keep merged weights while unloading")
        for name in list(names):
            self.remove(model, name)

    @abstractmethod
    def export(self, model: Any, name: str) -> AdapterFiles:
        """The current config and weights of adapter ``name`` (after training), in canonical form."""

    def parameters(self, model: Any, name: str) -> list[Any]:
        """The trainable ``torch.nn.Parameter`` objects of adapter ``name``."""
        raise UnsupportedOperationError(f"method {self.name!r} does not expose trainable parameters")

    def capabilities(self) -> dict[str, bool]:
        return {
            "mergeable": self.mergeable,
            "supports_mixed_batch": self.supports_mixed_batch,
            "supports_average": self.supports_average,
            "trainable": self.trainable,
        }


# --- the registry ------------------------------------------------------------------------------


@dataclass(frozen=True)
class RegisteredMethod:
    method: AdapterMethod
    plugin: str  # the pluggy plugin name that registered it


_registry_cache: dict[str, RegisteredMethod] | None = None


def registered_methods() -> dict[str, RegisteredMethod]:
    """name -> RegisteredMethod, loading plugins on first use."""
    global _registry_cache
    if _registry_cache is not None:
        return _registry_cache
    from .plugins import load_plugins, pm

    load_plugins()
    found: dict[str, RegisteredMethod] = {}
    # Call each plugin's hook on its own so every method is attributed to the plugin that made it.
    for plugin_name, plugin in pm.list_name_plugin():
        impl = getattr(plugin, "register_methods", None)
        if impl is None:
            continue

        def register(method: AdapterMethod, _plugin: str = plugin_name) -> None:
            if not isinstance(method, AdapterMethod):
                raise PluginError(
                    f"plugin {_plugin!r} registered {method!r}, which is not an AdapterMethod"
                )
            if method.name in found:
                raise PluginError(
                    f"method {method.name!r} is registered by both {found[method.name].plugin!r} "
                    f"and {_plugin!r}",
                    hint="uninstall one of them, or exclude one with ADAPTERHUB_LOAD_PLUGINS",
                )
            found[method.name] = RegisteredMethod(method, _plugin)

        impl(register=register)
    _registry_cache = found
    return found


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


def read_adapter_config(path: str | Path) -> dict[str, Any]:
    """Parse ``<path>/adapter_config.json`` with errors that name the file and the fix."""
    path = Path(path)
    config_path = path / CONFIG_NAME
    if not path.is_dir():
        raise AdapterFormatError(f"{path}: not a directory")
    if not config_path.is_file():
        raise AdapterFormatError(
            f"{config_path}: missing",
            hint="an adapter directory needs adapter_config.json (PEFT and AdapterHub formats both write it)",
        )
    try:
        config = json.loads(config_path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise AdapterFormatError(f"{config_path}: not valid JSON ({exc})") from None
    if not isinstance(config, dict):
        raise AdapterFormatError(f"{config_path}: expected a JSON object, got {type(config).__name__}")
    return config


def list_adapter_files(path: str | Path) -> set[str]:
    """Relative POSIX paths of the adapter's files (the rule of :func:`adapterhub.layout.adapter_files`)."""
    from .layout import adapter_files

    return set(adapter_files(path))


def detect_method(path: str | Path, model: Any = None) -> AdapterMethod:
    """The method that owns the adapter in ``path`` (highest priority among claimants)."""
    config = read_adapter_config(path)
    files = list_adapter_files(path)
    claimants = [
        m for m in get_methods().values() if m.detect(config, files, model) is True
    ]
    if not claimants:
        kind = config.get("peft_type") or (config.get("config") or {}).get("architecture")
        raise NoMethodClaimsError(
            f"{Path(path) / CONFIG_NAME}: no installed method plugin recognises this adapter"
            + (f" (type {kind!r})" if kind else ""),
            hint="`adapterhub methods` lists the installed methods; a plugin for this type may exist",
        )
    return max(claimants, key=lambda m: m.priority)
