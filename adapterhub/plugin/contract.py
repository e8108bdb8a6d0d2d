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

Serving a different adapter to every row of a batch (``am(..., adapter_names=[...])``, and the
``BatchSplit`` / ``Parallel`` blocks, which the runtime lowers to one adapter name per row) goes
through the template :meth:`AdapterMethod.set_rows`, which calls :meth:`~AdapterMethod.activate_rows`
once per batch. A method that answers it without a loop over its adapters (the PEFT toolkit keeps
each layer's LoRA factors and IA3 vectors stacked and gathers them per row) overrides
``activate_rows``; the default slices the rows into runs and calls ``activate_batch_split``.

Merging into a checkpoint without a model (``adapterhub export``, which streams a checkpoint one
tensor at a time) asks a mergeable method for :meth:`AdapterMethod.merge_updates`: one
:class:`ParamUpdate` per base parameter the adapter changes, computed from its config and tensors
alone; each is applied to a :class:`MergeSite` (the parameter's name, layer type and base value).

This module must not import torch: type hints name torch objects as strings.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from ..errors import AdapterFormatError, AdapterNotLoadedError, CompositionError, UnsupportedOperationError

from .records import COMBINE_MODES, FLOAT_DTYPES, AdapterFiles, ParamUpdate, describe_dtypes, dtype_name

if TYPE_CHECKING:  # pragma: no cover
    from .weighted import WeightedRequest

class AdapterMethod(ABC):
    """One PEFT method. Subclass it in a plugin and register an instance via ``register_methods``.

    Capabilities are class attributes so that ``adapterhub methods`` can show them without a model.
    Operations a method cannot do raise :class:`~adapterhub.errors.UnsupportedOperationError`
    (the defaults below do), never a bare ``NotImplementedError`` and never a silent no-op.

    Required: :meth:`detect`, :meth:`read`, :meth:`save`, :meth:`apply`, :meth:`loaded_names`,
    :meth:`activate_stack`, :meth:`remove`, :meth:`export`. Optional, by capability:
    :meth:`activate_average` (``supports_average``), :meth:`activate_batch_split`
    (``supports_mixed_batch``; or :meth:`activate_rows`, which serves one adapter per row without
    a loop over adapters), :meth:`merge`/:meth:`unmerge` (``mergeable``), :meth:`create` and
    :meth:`parameters` (``trainable``), :meth:`make_trainable`, :meth:`check`, :meth:`unload`,
    :meth:`merge_updates` (``mergeable``: merging into a checkpoint without a model, for
    ``adapterhub export``), :meth:`check_weighted` and :meth:`weighted_adapter` (``combination_types``).
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
    #: Can serve different adapters to different rows of one batch (``adapter_names=``, BatchSplit, Parallel).
    supports_mixed_batch: ClassVar[bool] = False
    #: Can take part in an Average block.
    supports_average: ClassVar[bool] = False
    #: Two or more of its adapters can be active at once in a Stack.
    supports_stack: ClassVar[bool] = True
    #: ``merge`` takes a weight other than 1 (None: as ``mergeable``).
    supports_weighted_merge: ClassVar[bool | None] = None
    #: ``add_adapter`` can create a fresh, trainable adapter.
    trainable: ClassVar[bool] = True
    #: When several methods claim the same files, the highest priority wins (QLoRA over LoRA).
    priority: ClassVar[int] = 0
    #: The tensor types (safetensors' names) this method's files may hold. Readers refuse any other
    #: before the model is touched: an ``I32`` header where ``F32`` belongs has the same byte count
    #: and would otherwise load as integers. :meth:`allowed_dtypes` can narrow it per tensor.
    tensor_dtypes: ClassVar[frozenset[str]] = FLOAT_DTYPES
    #: A fallback (the generic PEFT plugin's methods) gives way to every other method: it is left out
    #: when another method registers its name or one of its ``peft_types``.
    fallback: ClassVar[bool] = False
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

    def allowed_dtypes(self, key: str) -> frozenset[str]:
        """The dtypes tensor ``key`` (named as in the file) may have; default :attr:`tensor_dtypes`.
        Pass it to the toolkit readers (``dtypes=self.allowed_dtypes``)."""
        return self.tensor_dtypes

    def check_dtypes(self, adapter: AdapterFiles) -> None:
        """Refuse an adapter holding a tensor of a type :meth:`allowed_dtypes` does not allow (an
        :class:`~adapterhub.errors.AdapterFormatError` naming it). The runtime calls it after
        :meth:`read`, whatever reader the method used, and before :meth:`check`."""
        where = adapter.source or "adapter"
        tensors = [("", adapter.state_dict)]
        if adapter.head:
            tensors.append(("head ", adapter.head.get("state_dict") or {}))
        for kind, state in tensors:
            for key, tensor in state.items():
                allowed = self.allowed_dtypes(key) if not kind else FLOAT_DTYPES
                if hasattr(tensor, "dtype") and dtype_name(tensor) not in allowed:
                    raise AdapterFormatError(
                        f"{where}: {kind}tensor {key!r} has dtype {dtype_name(tensor)}; {self.name} tensors must be "
                        f"{describe_dtypes(allowed)}",
                        hint="the weights file declares a type its method cannot use; re-save the adapter",
                    )

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
            if len(set(names)) > 1 and not self.supports_stack:
                raise CompositionError(
                    f"Stack{tuple(names)!r}: method {self.name!r} cannot run two of its adapters at once",
                    hint="activate one of them, or merge one and activate the other",
                )
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
            rows = [name for name, size in zip(names, sizes, strict=True) for _ in range(size)]
            self.reset_activation(model)
            self.activate_rows(model, rows)

    def set_rows(self, model: Any, rows: Sequence[str | None]) -> None:
        """Serve row i of the following batches with this method's adapter ``rows[i]`` (None: none of
        this method's adapters on that row).

        The runtime calls it for every batch of ``am(..., adapter_names=[...])`` and whenever a
        ``BatchSplit`` or ``Parallel`` block is served (their slices become rows), and again with every
        name repeated when ``generate`` expands the batch for beams or several return sequences. It
        checks the capability flag and the names, then calls :meth:`activate_rows`; it does *not* call
        :meth:`reset_activation` first (a method leaves its per-row mode when the next
        :meth:`set_active` resets it), so that one batch after another costs no more than telling the
        method the new rows. Plugins override :meth:`activate_rows`, not this.
        """
        rows = list(rows)
        if not self.supports_mixed_batch:
            raise CompositionError(
                f"method {self.name!r} cannot serve different adapters to rows of one batch "
                "(adapter_names=, BatchSplit, Parallel)",
                hint="use a method that supports mixed batches (`adapterhub methods`), or run these rows separately",
            )
        missing = sorted({n for n in rows if n is not None} - self.loaded_names(model))
        if missing:
            raise AdapterNotLoadedError(f"{self.name} adapter {missing[0]!r} is not loaded on this model")
        self.activate_rows(model, rows)

    def activate_rows(self, model: Any, rows: list[str | None]) -> None:
        """Row i uses ``rows[i]`` (None: no adapter of this method); only when ``supports_mixed_batch``.

        Called once per batch: an override should cost little when the method already serves rows
        (only the assignment of adapters to rows changes) and must reject a batch of another size at
        forward time. A row's output must equal what the row gives with its adapter active alone.
        The default slices ``rows`` into runs of equal names and calls :meth:`reset_activation` and
        :meth:`activate_batch_split`.
        """
        names: list[str | None] = []
        sizes: list[int] = []
        for name in rows:
            if names and names[-1] == name:
                sizes[-1] += 1
            else:
                names.append(name)
                sizes.append(1)
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
        only when ``supports_mixed_batch``. A method that overrides :meth:`activate_rows` need not
        implement it: the runtime serves BatchSplit through :meth:`set_rows`."""
        raise CompositionError(f"BatchSplit: method {self.name!r} cannot serve rows separately")

    # -- merging and removal ------------------------------------------------------------------

    def merge(self, model: Any, name: str, weight: float = 1.0) -> None:
        """Fold adapter ``name`` (scaled by ``weight``) into the base weights, reversibly. A method
        without ``supports_weighted_merge`` refuses a weight other than 1."""
        raise UnsupportedOperationError(
            f"method {self.name!r} cannot be merged into the base weights",
            hint="keep it as a separate module, or unload it",
        )

    def unmerge(self, model: Any, name: str) -> None:
        """Undo :meth:`merge` for ``name``."""
        raise UnsupportedOperationError(f"method {self.name!r} cannot be merged or unmerged")

    def merge_updates(self, adapter: AdapterFiles, weight: float = 1.0) -> list[ParamUpdate]:
        """Merging ``adapter`` scaled by ``weight`` into a base checkpoint, without a model: one
        :class:`ParamUpdate` per base parameter it changes, computed from its config and tensors.

        ``adapterhub export`` streams the checkpoint one tensor at a time and applies, in adapter
        order, every update that targets the tensor. The result must equal what :meth:`merge`
        followed by ``merge_and_unload`` gives on a model (the tests compare them with PEFT's
        ``merge_and_unload``). Raise :class:`~adapterhub.errors.UnsupportedOperationError` for an
        adapter (or a weight) that cannot be merged this way; it is called before anything is written.
        """
        raise UnsupportedOperationError(
            f"method {self.name!r} cannot be merged into a checkpoint without a model",
            hint="load the base with AdapterModel, merge_and_unload() and save_pretrained() instead",
        )

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

    def make_trainable(self, model: Any, name: str) -> None:
        """Called when the runtime makes a *loaded* adapter trainable (``load_adapter(..., is_trainable=True)``,
        ``set_trainable``), before its :meth:`parameters` get ``requires_grad``. Optional: a method whose
        training needs more than that (BitFit tracks which adapter the live biases belong to) does it here;
        an adapter from :meth:`create` is trainable already."""

    def capabilities(self) -> dict[str, bool]:
        weighted = self.supports_weighted_merge
        return {
            "mergeable": bool(self.mergeable),
            "supports_mixed_batch": bool(self.supports_mixed_batch),
            "supports_average": bool(self.supports_average),
            "supports_stack": bool(self.supports_stack),
            "supports_weighted_merge": bool(self.mergeable if weighted is None else weighted),
            "trainable": bool(self.trainable),
        }
