"""``AdapterModel``: load, compose, merge, train and save adapters on a transformers model, in place.

The runtime never looks inside a method: it detects, reads, checks and applies through the
:class:`~adapterhub.plugin.AdapterMethod` contract, and turns composition blocks into one
``set_active`` call per method (:mod:`.dispatch`). Prediction heads that adapters carry are built
and routed by the runtime, whatever the method (:mod:`.heads`). Where an adapter comes from is
:mod:`.sources`; what a merge may fold in, :mod:`.merging`; new adapters combining loaded ones,
:mod:`.weighted`; failed changes leave the model as it was (:mod:`.transaction`); loading and
creating adapters is :mod:`.loading`; whole compositions are saved by :mod:`.setup_file`; what
transformers' ``Trainer`` (and TRL) need from a model to train the adapters is :mod:`.training`.

``AdapterModel`` is a ``torch.nn.Module`` whose one child is the wrapped model: ``parameters()``,
``to()``, ``train()`` and the other module methods act on the whole model, adapters included, and
attributes it does not have itself (``config``, ``device``, ...) are the wrapped model's.

The names follow PEFT's ``PeftModel`` where both have the operation (``load_adapter``,
``set_adapter``, ``merge_adapter``, ``disable_adapter``, ``get_nb_trainable_parameters``, ...) and
``adapters``' argument order for ``save_adapter(save_directory, adapter_name)``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import torch

from ..composition import Block, as_block
from ..errors import AdapterNotLoadedError, CompositionError, UnsupportedOperationError
from ..plugin.contract import AdapterMethod
from ..plugin.registry import get_method
from ..toolkit.quantize import disable_cpu_bf16_kernel
from ..toolkit.structure import forget_structure, settle_structure, structure_mark
from . import dispatch, heads, merging, setup_file, weighted
from . import rows as per_row
from .loading import AdapterInfo, AdapterLoading
from .training import AdapterTraining

__all__ = ["AdapterInfo", "AdapterModel"]


class AdapterModel(AdapterLoading, AdapterTraining, torch.nn.Module):
    """Wraps ``model`` in place. ``am.model`` (also ``am.get_base_model()``) is the mutated base model."""

    def __init__(self, model: Any) -> None:
        super().__init__()
        forget_structure(model)  # whatever was cached about this model before it was handed to us is stale
        self.model = model
        self._infos: dict[str, AdapterInfo] = {}
        self._active: Block | None = None
        self._merged: dict[str, float] = {}
        # method -> the request it was last given successfully; _dispatch skips methods whose request
        # did not change. Cleared whenever modules or merges change (_structure_changed).
        self._dispatched: dict[str, dispatch.Request | None] = {}
        # the base's own requires_grad flags, restored by unload()
        self._base_requires_grad = {n: p.requires_grad for n, p in model.named_parameters()}
        self._heads = heads.HeadSet(model)
        self._trainable_heads: set[str] = set()
        disable_cpu_bf16_kernel(model)

    # -- inspection ------------------------------------------------------------------------

    @property
    def adapters(self) -> dict[str, AdapterInfo]:
        return dict(self._infos)

    @property
    def active_setup(self) -> Block | None:
        """The active composition block (a Stack, Parallel, ...), or None."""
        return self._active

    @property
    def active_adapters(self) -> list[str]:
        """Names of the active adapters, in the order of the active setup (PEFT's ``active_adapters``)."""
        return [] if self._active is None else list(self._active.names())

    @property
    def merged(self) -> dict[str, float]:
        return dict(self._merged)

    def get_base_model(self) -> Any:
        """The wrapped transformers model (adapters live inside it)."""
        return self.model

    def __repr__(self) -> str:
        return f"AdapterModel({type(self.model).__name__}, adapters={list(self._infos)}, active={self._active!r})"

    def _method(self, name: str) -> AdapterMethod:
        if name not in self._infos:
            raise AdapterNotLoadedError(
                f"adapter {name!r} is not loaded", hint=f"loaded: {', '.join(self._infos) or '(none)'}"
            )
        return get_method(self._infos[name].method)

    def _methods_in_use(self) -> dict[str, AdapterMethod]:
        return {info.method: get_method(info.method) for info in self._infos.values()}

    # -- composition -----------------------------------------------------------------------

    def set_adapter(self, setup: str | Sequence[str | Block] | Block | None) -> None:
        """Activate a name, a list (= Stack) or any Block; None deactivates everything."""
        if self._merged:
            raise UnsupportedOperationError(
                "adapters are merged into the base weights", hint="call unmerge_adapter() before switching adapters"
            )
        block = as_block(setup)
        if block is not None:
            for n in block.names():
                self._method(n)
        previous = self._active
        self._active = block
        try:
            self._dispatch()
        except BaseException:
            self._active = previous
            self._dispatched.clear()  # a method may have failed half-way: tell every method again
            self._dispatch()
            raise

    def _dispatch(self, parallel_rows: int = 1, requests: dict[str, dispatch.Request] | None = None) -> None:
        """Tell every method whose part of the setup changed which of its adapters act, and how.

        ``requests``: what to serve instead of the active setup (one call of ``adapter_names=``,
        :mod:`.rows`); the next call without it serves the active setup again."""
        override = requests is not None
        if requests is None:
            requests = dispatch.plan(self._active, lambda n: self._infos[n].method, parallel_rows)
        changed = False
        for method_name, method in self._methods_in_use().items():
            request = requests.get(method_name)
            rows_call = override and request is not None and request.combine == "rows"
            # a call's rows are handed over each time: the method sees which adapters need grad now
            if not rows_call and method_name in self._dispatched and self._dispatched[method_name] == request:
                continue
            self._dispatched.pop(method_name, None)  # unknown until set_active succeeds
            if request is None:
                method.set_active(self.model, [])
            elif request.combine == "rows":  # BatchSplit, Parallel, adapter_names=: one adapter per row
                method.set_rows(self.model, request.names)  # (leaves requires_grad alone)
            else:
                method.set_active(self.model, request.names, combine=request.combine, weights=request.weights,
                                  batch_sizes=request.batch_sizes)
            self._dispatched[method_name] = request
            changed = changed or request is None or request.combine != "rows"
        if changed and not override:  # a call's adapter_names leave requires_grad as the caller set it
            self._apply_trainable()
        if not override:
            self._heads.route = heads.route(self._active, self._head_kind)

    def _structure_changed(self, since: int | None = None) -> None:
        """Modules were added, removed or merged: dispatch state is stale, and so are cached module
        lists, unless the change (begun at the mark ``since``) reported exactly what it did."""
        if since is None:
            forget_structure(self.model)
        else:
            settle_structure(self.model, since)
        self._dispatched.clear()

    def _apply_trainable(self) -> None:
        """Exactly the trainable adapters (and heads) that are active need grad; inactive ones wait frozen."""
        active = set(self.active_adapters)
        for info in self._infos.values():
            if info.trainable:
                flag = info.name in active and info.name not in self._merged
                for p in get_method(info.method).parameters(self.model, info.name):
                    p.requires_grad_(flag)
        for name in self._trainable_heads:
            for p in self._heads.parameters(name):
                p.requires_grad_(name in active)

    # -- running ---------------------------------------------------------------------------

    def _prepare_inputs(self, kwargs: dict[str, Any]) -> dict[str, Any]:
        parallel = dispatch.find_parallel(self._active)
        if parallel is None:
            return kwargs
        out, rows = dispatch.replicate_for_parallel(kwargs, parallel)
        self._dispatch(parallel_rows=rows)
        return out

    def forward(self, *args: Any, input_ids: Any = None, attention_mask: Any = None, token_type_ids: Any = None,
                position_ids: Any = None, inputs_embeds: Any = None, labels: Any = None, **kwargs: Any) -> Any:
        """Run the model with the active setup (``am(**batch)``), or with ``adapter_names=[...]`` (one
        adapter name per row, ``"__base__"`` for the base model) instead of it for this call (:mod:`.rows`).

        When a Parallel / BatchSplit serves children that answer with different heads, the result
        is a :class:`~adapterhub.runtime.heads.MultiHeadOutput`: a list with one output per child
        (its rows, its head's ``logits``); otherwise the model's own output type. A keyword the
        model would ignore is an error. The named arguments are the usual inputs of a text model:
        transformers' ``Trainer`` keeps the dataset columns that ``forward`` names (and finds the
        labels by name), so they are spelled out; any other keyword reaches the wrapped model too.
        """
        named = {"input_ids": input_ids, "attention_mask": attention_mask, "token_type_ids": token_type_ids,
                 "position_ids": position_ids, "inputs_embeds": inputs_embeds, "labels": labels}
        kwargs.update({k: v for k, v in named.items() if v is not None})
        if "adapter_names" in kwargs:
            return per_row.call(self, args, kwargs)
        per_row.check_keywords(self, kwargs)
        per_row.leave(self)
        if args and dispatch.find_parallel(self._active) is not None:
            raise CompositionError("Parallel needs keyword inputs: call am(input_ids=..., attention_mask=...)")
        return self.model(*args, **self._prepare_inputs(kwargs))

    def generate(self, *args: Any, **kwargs: Any) -> Any:
        """The model's ``generate`` with the active setup, or with ``adapter_names=[...]`` (one per
        input row; beams and return sequences of a row use its adapter)."""
        if "adapter_names" in kwargs:
            return per_row.generate(self, args, kwargs)
        per_row.leave(self)
        if args and dispatch.find_parallel(self._active) is not None:
            raise CompositionError("Parallel needs keyword inputs: call am.generate(input_ids=...)")
        with per_row.following_expansion(self):
            return self.model.generate(*args, **self._prepare_inputs(kwargs))

    def __getattr__(self, item: str) -> Any:
        try:  # torch.nn.Module keeps submodules (``model``), parameters and buffers out of __dict__
            return super().__getattr__(item)
        except AttributeError:
            if item.startswith("_") or item == "model":
                raise
        # config, device, dtype, generation_config, ... of the wrapped model
        return getattr(self.model, item)

    @contextlib.contextmanager
    def disable_adapter(self) -> Iterator[None]:
        """Run the plain base model inside the block; merges and the active setup come back afterwards."""
        merged = dict(self._merged)
        active = self._active
        self.unmerge_adapter()
        self._active = None
        self._dispatch()
        try:
            yield
        finally:
            self._active = active
            self._dispatch()
            if merged:
                self.merge_adapter(list(merged), list(merged.values()))

    # -- merging ---------------------------------------------------------------------------

    def merge_adapter(self, adapter_names: Sequence[str] | None = None, weights: Sequence[float] | None = None) -> None:
        """Fold the active (or named) adapters into the base weights, reversibly (see :meth:`unmerge_adapter`)."""
        names, weights = merging.plan_merge(self._infos, self._merged, self._active, adapter_names, weights)
        self._structure_changed()
        done: list[str] = []
        try:
            for n, w in zip(names, weights, strict=True):
                self._method(n).merge(self.model, n, w)
                self._merged[n] = w
                done.append(n)
        except BaseException:
            for n in reversed(done):
                self._method(n).unmerge(self.model, n)
                self._merged.pop(n, None)
            raise

    def unmerge_adapter(self) -> None:
        """Restore the exact base weights from before :meth:`merge_adapter`."""
        if self._merged:
            self._structure_changed()
        for n in reversed(list(self._merged)):
            self._method(n).unmerge(self.model, n)
            del self._merged[n]

    def merge_and_unload(self) -> Any:
        """Merge the active adapters for good and return the plain model (no adapter modules left)."""
        if not self._merged:
            self.merge_adapter()
        for method_name, names in merging.names_by_method(self._infos).items():
            keep = any(n in self._merged for n in names)
            get_method(method_name).unload(self.model, names, keep_merged=keep)
        self._forget_all()
        return self.model

    def unload(self) -> Any:
        """Remove every adapter and return the model with its pristine base weights."""
        self.unmerge_adapter()
        self._active = None
        if self._infos:
            self._dispatch()
        try:
            for method_name, names in merging.names_by_method(self._infos).items():
                get_method(method_name).unload(self.model, names)
        except BaseException:
            self._structure_changed()
            raise
        self._forget_all()
        return self.model

    def _forget_all(self) -> None:
        self._heads.clear()  # heads and their hooks go: the model is the base again
        self._structure_changed()
        self._infos.clear()
        self._merged.clear()
        self._active = None
        self._trainable_heads.clear()
        for n, p in self.model.named_parameters():
            if n in self._base_requires_grad:
                p.requires_grad_(self._base_requires_grad[n])

    def delete_adapter(self, name: str) -> None:
        method = self._method(name)
        if name in self._merged:
            raise UnsupportedOperationError(f"adapter {name!r} is merged", hint="call unmerge_adapter() first")
        if self._active is not None and name in self._active.names():
            self._active = None
        mark = structure_mark()
        try:
            method.remove(self.model, name)
        finally:
            self._structure_changed(since=mark)
        if name in self._heads:  # a module of the model goes: what is cached about its modules is stale
            self._heads.remove(name)
            self._structure_changed()
        self._trainable_heads.discard(name)
        del self._infos[name]
        if self._infos:
            self._dispatch()
        else:
            self._forget_all()

    def add_weighted_adapter(
        self,
        adapters: Sequence[str],
        weights: Sequence[float],
        adapter_name: str,
        combination_type: str = weighted.DEFAULT_COMBINATION,
        svd_rank: int | None = None,
        svd_clamp: float | None = None,
        svd_full_matrices: bool = True,
        svd_driver: str | None = None,
        density: float | None = None,
        majority_sign_method: str = "total",
        *,
        seed: int | None = None,
        progress: Callable[[int, int], None] | None = None,
    ) -> None:
        """Add adapter ``adapter_name`` combining ``adapters`` with ``weights``: PEFT's
        ``add_weighted_adapter``, for every combination type PEFT has (``svd``, ``linear``, ``cat``,
        ``ties``, ``ties_svd``, ``dare_linear``, ``dare_ties``, ``dare_linear_svd``, ``dare_ties_svd``,
        ``magnitude_prune``, ``magnitude_prune_svd``), for LoRA; IA3 and bottleneck adapters combine
        linearly (leaving ``combination_type`` out means linear for them).

        The new adapter is a normal one (inactive, like a loaded adapter): activate, merge, save or
        push it. Where adapterhub differs from PEFT, on purpose: ``linear`` is the exact weighted sum
        of the deltas (rank Σr, as PEFT's ``cat``), not PEFT's sum of factors with cross terms;
        rsLoRA sources keep their scale; the SVD runs on the factors (the result does not depend on
        ``svd_full_matrices``). ``seed`` makes the DARE types reproducible; ``progress(done, total)``
        is called per module. Every argument is checked before any work.
        """
        weighted.add_weighted_adapter(
            self, adapters, weights, adapter_name, combination_type, svd_rank, svd_clamp, svd_full_matrices,
            svd_driver, density, majority_sign_method, seed=seed, progress=progress)

    # -- saving ----------------------------------------------------------------------------

    def save_adapter(self, save_directory: str | Path, adapter_name: str, *, format: str | None = None) -> list[Path]:
        """Write adapter ``adapter_name`` to ``save_directory`` (``adapters``' argument order).

        ``format``: ``"peft"`` or ``"adapters"``; None writes the method's native format (PEFT's for
        LoRA, IA3, prompt methods and BitFit; AdapterHub's for bottleneck adapters), or AdapterHub's
        when the adapter carries a prediction head and the method can write this adapter in that
        format. Otherwise (QLoRA, P-tuning, BitFit, IA3 on feed-forward inputs) the adapter keeps its
        own format and the head's files go beside it (``head_config.json`` + ``model_head.safetensors``),
        which ``load_adapter`` reads back.
        """
        if adapter_name not in self._infos and str(save_directory) in self._infos:
            raise AdapterNotLoadedError(
                f"adapter {str(adapter_name)!r} is not loaded, but {str(save_directory)!r} is: the arguments are "
                "save_adapter(save_directory, adapter_name)",
                hint=f"am.save_adapter({str(adapter_name)!r}, {str(save_directory)!r})")
        method = self._method(adapter_name)
        if adapter_name in self._merged:
            raise UnsupportedOperationError(f"adapter {adapter_name!r} is merged",
                                            hint="call unmerge_adapter() before saving it")
        files = method.export(self.model, adapter_name)
        # the runtime owns heads: whatever the method exported, the saved head is the one on the model
        files.head = self._heads.export(adapter_name)
        head_beside = files.head is not None and "adapters" not in method.formats
        requested = format
        if format is None:
            format = "adapters" if files.head is not None and not head_beside else method.formats[0]
        if files.head is not None and format != "adapters" and not head_beside:
            raise UnsupportedOperationError(
                f"adapter {adapter_name!r} carries a prediction head, which the {format!r} format cannot hold",
                hint="save it with format='adapters' (head_config.json + model_head.safetensors)",
            )
        config = getattr(self.model, "config", None)
        files.model_type = files.model_type or getattr(config, "model_type", None)
        # formats that record the adapter's name and the base's width (AdapterHub's) read these
        files.name = files.name or adapter_name
        files.hidden_size = files.hidden_size or getattr(config, "hidden_size", None)
        files.num_layers = files.num_layers or getattr(config, "num_hidden_layers", None) or getattr(config, "n_layer", None)
        if files.head is not None and format == "adapters" and requested is None:
            try:  # the AdapterHub format holds the head, when it can hold this adapter
                return method.save(files, Path(save_directory), format=format)
            except UnsupportedOperationError:  # refused before writing anything (the save contract)
                head_beside, format = True, method.formats[0]
        head, files.head = (files.head, None) if head_beside else (None, files.head)
        written = method.save(files, Path(save_directory), format=format)
        if head is not None:
            written += heads.write_head_beside(Path(save_directory), head, self.model, adapter_name)
        return written

    def save_setup(self, path: str | Path) -> Path:
        """Write the composition and where each adapter comes from; trained adapters are saved next to it."""
        return setup_file.save_setup(self, path)

    def load_setup(self, path: str | Path, *, allow_pickle: bool = False) -> None:
        """Load the adapters a setup file names and restore its composition and merges."""
        setup_file.load_setup(self, path, allow_pickle=allow_pickle)
