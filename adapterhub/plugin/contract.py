"""The method contract: :class:`AdapterMethod` (what a method plugin implements) and
:class:`AdapterFiles` (an adapter in its method's canonical form).

A method plugin registers one ``AdapterMethod`` object per PEFT method. That object owns everything
method-specific: recognising its files, reading them, checking a model, injecting modules,
activating, merging and saving. The runtime (``adapterhub.AdapterModel``) never looks inside a
method; it only calls the methods below.

Activation is a template method (as ``llm``'s ``EmbeddingModel.embed`` calls ``embed_batch``): the
concrete :meth:`AdapterMethod.set_active` checks the names, the combine mode, the capability flags
and the weights or batch sizes, then calls :meth:`~AdapterMethod.activate_stack`,
:meth:`~AdapterMethod.activate_average` or :meth:`~AdapterMethod.activate_batch_split`. So a
capability flag is true by construction: a method that declares ``supports_average = False`` is
never asked to average.

This module must not import torch: type hints name torch objects as strings.
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import KW_ONLY, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from ..errors import AdapterFormatError, AdapterNotLoadedError, CompositionError, UnsupportedOperationError

if TYPE_CHECKING:  # pragma: no cover
    from .weighted import WeightedRequest

CONFIG_NAME = "adapter_config.json"

#: The combine modes the runtime passes to :meth:`AdapterMethod.set_active`.
COMBINE_MODES = ("stack", "average", "batch_split")


@dataclass
class AdapterFiles:
    """An adapter as read from disk (or exported from a model), in its method's canonical form.

    ``config`` and ``state_dict`` are method-defined. The built-ins keep PEFT's config keys and
    PEFT's key naming without the ``base_model.model.`` prefix (module path relative to the model
    handed to ``apply``), so a method's ``read`` converts other formats into that form. Everything
    after ``state_dict`` is keyword-only.

    The typed fields are the ones the runtime reads or fills in:

    * ``head``: the adapter's own prediction head (``head_config.json``'s config plus its tensors
      under ``"state_dict"``), built and routed by the runtime; None when it has none;
    * ``static_head``: a head the adapter saved that must equal the model's own (``adapters``
      saves GPT-2's ``lm_head``); the method checks it, nothing is loaded from it;
    * ``name``, ``model_type``, ``hidden_size``: what a format that records them (AdapterHub's)
      writes; the runtime fills them in before ``save``.

    ``extras`` is for method-private data that travels from ``read`` to ``apply`` or ``save``.
    """

    method: str
    config: dict[str, Any]
    state_dict: dict[str, Any]  # name -> torch.Tensor
    _: KW_ONLY
    format: str = "peft"  # the on-disk format it came from: "peft" or "adapters"
    source: str | None = None  # where it came from, for messages
    head: dict[str, Any] | None = None
    static_head: dict[str, Any] | None = None
    name: str | None = None
    model_type: str | None = None
    hidden_size: int | None = None
    extras: dict[str, Any] = field(default_factory=dict)


class AdapterMethod(ABC):
    """One PEFT method. Subclass it in a plugin and register an instance via ``register_methods``.

    Capabilities are class attributes so that ``adapterhub methods`` can show them without a model.
    Operations a method cannot do raise :class:`~adapterhub.errors.UnsupportedOperationError`
    (the defaults below do), never a bare ``NotImplementedError`` and never a silent no-op.

    Required: :meth:`detect`, :meth:`read`, :meth:`save`, :meth:`apply`, :meth:`loaded_names`,
    :meth:`activate_stack`, :meth:`remove`, :meth:`export`. Optional, by capability:
    :meth:`activate_average` (``supports_average``), :meth:`activate_batch_split`
    (``supports_mixed_batch``), :meth:`merge`/:meth:`unmerge` (``mergeable``), :meth:`create` and
    :meth:`parameters` (``trainable``), :meth:`check`, :meth:`unload`, :meth:`check_weighted` and
    :meth:`weighted_adapter` (``combination_types``).
    """

    #: Unique method name used in ``add_adapter(name, method)``, manifests and lock files.
    name: ClassVar[str]
    #: One line for ``adapterhub methods``.
    description: ClassVar[str] = ""
    #: PEFT ``peft_type`` values this method reads and writes, if any.
    peft_types: ClassVar[tuple[str, ...]] = ()
    #: On-disk formats this method can read and write ("peft", "adapters"); the first is its native one.
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
    #: The ``add_weighted_adapter`` combination types (:mod:`adapterhub.plugin.weighted`) this method
    #: builds with :meth:`weighted_adapter`; empty when it cannot combine adapters.
    combination_types: ClassVar[tuple[str, ...]] = ()

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
        ``allow_pickle``; even then they are loaded with ``torch.load(weights_only=True)``
        (``adapterhub.toolkit.weights.load_tensors`` does both).
        """

    @abstractmethod
    def save(self, adapter: AdapterFiles, path: Path, *, format: str | None = None) -> list[Path]:
        """Write ``adapter`` to directory ``path`` in ``format`` (None: the method's native format,
        ``formats[0]``); return the files written. A format that cannot hold the adapter exactly is
        refused before anything is written."""

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
    def loaded_names(self, model: Any) -> set[str]:
        """Names of this method's adapters currently on ``model``."""

    # -- activation (template method) ------------------------------------------------------------

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
          every adapter of this method);
        * ``combine="average"``: ``weights[i]`` (already normalised to sum 1) scales adapter i;
        * ``combine="batch_split"``: rows are split into consecutive slices of ``batch_sizes``;
          slice i uses ``names[i]``, or none of this method's adapters when ``names[i]`` is None.

        Checks everything a method would otherwise check itself, then calls the ``activate_*``
        method for the mode. Plugins override those, not this.
        """
        names = list(names)
        if combine not in COMBINE_MODES:
            raise CompositionError(f"unknown combine mode {combine!r} for method {self.name!r}")
        loaded = self.loaded_names(model)
        for n in names:
            if n is None and combine == "batch_split":
                continue
            if n not in loaded:
                raise AdapterNotLoadedError(f"{self.name} adapter {n!r} is not loaded on this model")
        if combine == "stack":
            self.reset_activation(model)
            self.activate_stack(model, names)
        elif combine == "average":
            if not self.supports_average:
                raise CompositionError(f"Average: method {self.name!r} cannot average adapters",
                                       hint="use Stack, or average adapters of a method that supports it")
            weights = [float(w) for w in weights] if weights is not None else [1.0 / len(names)] * len(names)
            if len(weights) != len(names):
                raise CompositionError(f"Average: {len(names)} {self.name} adapters but {len(weights)} weights")
            self.reset_activation(model)
            self.activate_average(model, names, weights)
        else:
            if not self.supports_mixed_batch:
                raise CompositionError(
                    f"BatchSplit/Parallel: method {self.name!r} cannot serve different adapters to rows of one batch",
                    hint="use a method that supports mixed batches (`adapterhub methods`), or Stack these adapters",
                )
            sizes = [int(s) for s in batch_sizes or ()]
            if len(sizes) != len(names) or any(s < 0 for s in sizes):
                raise CompositionError(f"BatchSplit: {len(names)} slices for {self.name} but batch_sizes {sizes}")
            self.reset_activation(model)
            self.activate_batch_split(model, names, sizes)

    def reset_activation(self, model: Any) -> None:
        """Called before every activation: undo what the previous one left behind (hooks, scales)."""

    @abstractmethod
    def activate_stack(self, model: Any, names: list[str]) -> None:
        """Exactly ``names`` act together, in order; ``[]`` disables every adapter of this method."""

    def activate_average(self, model: Any, names: list[str], weights: list[float]) -> None:
        """``weights[i]`` (summing to 1) scales adapter ``names[i]``; only when ``supports_average``."""
        raise CompositionError(f"Average: method {self.name!r} cannot average adapters")

    def activate_batch_split(self, model: Any, names: list[str | None], batch_sizes: list[int]) -> None:
        """Rows ``sum(batch_sizes[:i])`` .. get ``names[i]`` (None: no adapter of this method);
        only when ``supports_mixed_batch``."""
        raise CompositionError(f"BatchSplit: method {self.name!r} cannot serve rows separately")

    # -- merging and removal ------------------------------------------------------------------

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

    # -- combining adapters into a new one ---------------------------------------------------

    def check_weighted(self, model: Any, request: WeightedRequest) -> None:
        """Raise if ``request.adapters`` (loaded adapters of this method) cannot be combined as asked:
        a clear error naming the argument, the adapter or module, and the fix. Must not change the
        model, and must find every problem :meth:`weighted_adapter` would (the runtime calls it first,
        so that nothing is computed for a request that fails)."""
        if request.combination_type not in self.combination_types:
            raise UnsupportedOperationError(
                f"add_weighted_adapter: method {self.name!r} cannot combine adapters"
                + (f" with combination_type={request.combination_type!r}" if self.combination_types else ""),
                hint=f"{self.name} supports {', '.join(self.combination_types)}" if self.combination_types
                else "combine adapters of a method that supports it (`adapterhub methods`)",
            )

    def weighted_adapter(self, model: Any, request: WeightedRequest, *,
                         progress: Callable[[int, int], None] | None = None) -> AdapterFiles:
        """The adapter that combines ``request.adapters`` with ``request.weights``, in canonical form
        (the runtime checks and applies it like a loaded adapter). Must not change the model.
        ``progress(done, total)`` may be called as the work advances."""
        raise UnsupportedOperationError(f"add_weighted_adapter: method {self.name!r} cannot combine adapters")

    # -- export -------------------------------------------------------------------------------

    @abstractmethod
    def export(self, model: Any, name: str) -> AdapterFiles:
        """The current config and weights of adapter ``name`` (after training), in canonical form.

        The state dict must not depend on what else is on the model: another method's layers
        wrapping the same module never appear in its keys.
        """

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
