"""``AdapterModel``: load, compose, merge, train and save adapters on a transformers model, in place.

The runtime never looks inside a method: it detects, reads, checks and applies through the
:class:`~adapterhub.plugin.AdapterMethod` contract, and turns composition blocks into one
``set_active`` call per method (:mod:`.dispatch`). Prediction heads that adapters carry are built
and routed by the runtime, whatever the method (:mod:`.heads`). Where an adapter comes from is
:mod:`.sources`; what a merge may fold in, :mod:`.merging`; failed changes leave the model as it
was (:mod:`.transaction`); whole compositions are saved by :mod:`.setup_file`.

The names follow PEFT's ``PeftModel`` where both have the operation (``load_adapter``,
``set_adapter``, ``merge_adapter``, ``disable_adapter``, ``get_nb_trainable_parameters``, ...) and
``adapters``' argument order for ``save_adapter(save_directory, adapter_name)``.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..composition import Block, as_block
from ..errors import AdapterExistsError, AdapterNotLoadedError, CompositionError, UnsupportedOperationError, UsageError
from ..plugin.contract import AdapterFiles, AdapterMethod
from ..plugin.registry import detect_method, get_method, get_methods
from ..toolkit.quantize import disable_cpu_bf16_kernel
from ..toolkit.structure import forget_structure
from . import dispatch, heads, merging, setup_file, sources, transaction

_NAME_RE = re.compile(r"^[A-Za-z0-9_\-]+$")


@dataclass
class AdapterInfo:
    """What the runtime knows about one loaded adapter."""

    name: str
    method: str
    source: str | None
    format: str
    num_parameters: int
    mergeable: bool
    trainable: bool = False
    config: dict[str, Any] = field(default_factory=dict)
    #: the adapter's own prediction head (head_config.json's "config"), None when it has none
    head: dict[str, Any] | None = None


class AdapterModel:
    """Wraps ``model`` in place. ``am.model`` (also ``am.get_base_model()``) is the mutated base model."""

    def __init__(self, model: Any) -> None:
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

    # -- loading ---------------------------------------------------------------------------

    def load_adapter(
        self,
        source: str | Path,
        name: str | None = None,
        revision: str | None = None,
        *,
        allow_pickle: bool = False,
    ) -> str:
        """Load an adapter under ``name`` from a directory, a registry name or a Hub repo.

        ``source``: an existing adapter directory (loaded as is), a registry name (``ns/name@spec``)
        or a Hub repo id (``org/repo``, ``org/repo@rev``, ``hf://org/repo``). Registry names and repo
        ids go through the client (resolve, download, verify every file) and are loaded from the
        verified store directory; PEFT and transformers only ever see local files, so they never
        reach the network themselves. ``revision``: a Hub revision.
        """
        path = sources.local_adapter_dir(source, revision)
        if path is None:
            path = sources.install(str(source), revision)
        name = name or sources.default_name(str(source), path)
        self._check_new_name(name)
        method = detect_method(path, self.model)
        files = method.read(path, allow_pickle=allow_pickle)
        files.source = files.source or str(path)
        method.check(self.model, files)  # before any mutation
        head = None
        if files.head:
            head_spec = {**files.head, "source": files.source}
            heads.check_head(head_spec, self.model)
            head = heads.build_head(head_spec, self.model)
            head.requires_grad_(False)
        transaction.run_transactionally(
            self.model, lambda: method.apply(self.model, name, files), f"method {method.name!r} applying {name!r}",
            self._structure_changed)
        transaction.match_training_mode(self.model)
        if head is not None:
            self._heads.attach(name, head)
            transaction.match_training_mode(self.model)
        self._infos[name] = AdapterInfo(
            name=name,
            method=method.name,
            source=str(source),
            format=files.format,
            num_parameters=sum(int(t.numel()) for t in files.state_dict.values())
            + sum(int(p.numel()) for p in self._heads.parameters(name)),
            mergeable=method.mergeable,
            config=dict(files.config),
            head=self._heads.config(name),
        )
        self._dispatch()
        return name

    def add_adapter(self, name: str, method: Any, **config: Any) -> AdapterFiles:
        """Create a fresh trainable adapter. ``method`` is a method name (``"lora"``) with its options
        as keywords, or a PEFT config object (``LoraConfig(...)``), whose ``peft_type`` picks the method.
        Afterwards exactly the trainable adapters' parameters need grad."""
        self._check_new_name(name)
        impl, config = self._method_for_new(method, config)
        if not impl.trainable:
            raise UnsupportedOperationError(f"method {impl.name!r} cannot create trainable adapters")
        files = transaction.run_transactionally(
            self.model, lambda: impl.create(self.model, name, dict(config)), f"method {impl.name!r} creating {name!r}",
            self._structure_changed)
        transaction.match_training_mode(self.model)
        params = impl.parameters(self.model, name)
        self._infos[name] = AdapterInfo(
            name=name,
            method=impl.name,
            source=None,
            format="peft",
            num_parameters=sum(int(p.numel()) for p in params),
            mergeable=impl.mergeable,
            trainable=True,
            config=dict(files.config),
        )
        if self._active is None:
            self._active = as_block(name)
        self._dispatch()
        return files

    def _method_for_new(self, method: Any, config: dict[str, Any]) -> tuple[AdapterMethod, dict[str, Any]]:
        if isinstance(method, str):
            return get_method(method), config
        to_dict = getattr(method, "to_dict", None)
        peft_type = getattr(method, "peft_type", None)
        if to_dict is None or peft_type is None:
            raise UsageError(f"add_adapter: method must be a method name or a PEFT config, got {method!r}",
                             hint="`adapterhub methods` lists the method names")
        from ..toolkit.peft import jsonable_config

        as_dict = {**jsonable_config(to_dict()), **config}
        kind = str(getattr(peft_type, "value", peft_type)).upper()
        claimants = [m for m in get_methods().values() if kind in m.peft_types and m.detect(as_dict, set(), self.model)]
        if not claimants:
            raise UnsupportedOperationError(f"no installed method creates PEFT type {kind!r}",
                                            hint="`adapterhub methods` lists the installed methods")
        impl = max(claimants, key=lambda m: m.priority)
        return impl, {k: v for k, v in as_dict.items() if k != "peft_type"}

    def add_head(
        self,
        name: str,
        num_labels: int,
        *,
        labels: Sequence[str] | None = None,
        head_type: str = "classification",
        layers: int = 2,
        activation_function: str = "tanh",
        use_pooler: bool = False,
        dropout_prob: float | None = None,
        seed: int | None = None,
    ) -> None:
        """Give adapter ``name`` a fresh, trainable prediction head (AdapterHub's classification layout).

        The head reads the encoder's first token; it answers whenever ``name`` does (see
        :mod:`adapterhub.runtime.heads`) and is saved with the adapter by ``save_adapter``
        in the AdapterHub format.
        """
        self._method(name)
        if name in self._heads:
            raise AdapterExistsError(f"adapter {name!r} already has a head", hint="delete_adapter() and load it again")
        spec = heads.new_head_spec(
            self.model, num_labels, head_type=head_type, layers=layers, activation_function=activation_function,
            labels=list(labels) if labels else None, use_pooler=use_pooler, dropout_prob=dropout_prob, seed=seed,
        )
        self._heads.attach(name, heads.build_head(spec, self.model))
        transaction.match_training_mode(self.model)
        self._trainable_heads.add(name)
        info = self._infos[name]
        info.head = self._heads.config(name)
        info.num_parameters += sum(int(p.numel()) for p in self._heads.parameters(name))
        self._dispatch()
        self._apply_trainable()

    def _head_kind(self, name: str) -> str | bool:
        """How adapter ``name`` takes part in choosing the answering head (see heads.route)."""
        if name in self._heads:
            return "runtime"
        if self._infos[name].config.get("modules_to_save"):
            return "model"  # a PEFT copy of the model's own classifier answers through the model's head
        return False

    def _check_new_name(self, name: str) -> None:
        if not isinstance(name, str) or not _NAME_RE.match(name) or name.startswith("__"):
            raise UsageError(f"invalid adapter name {name!r}", hint="use letters, digits, '_' and '-'")
        if name in self._infos:
            raise AdapterExistsError(f"an adapter named {name!r} is already loaded", hint="pass another name=")

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

    def _dispatch(self, parallel_rows: int = 1) -> None:
        """Tell every method whose part of the setup changed which of its adapters act, and how."""
        requests = dispatch.plan(self._active, lambda n: self._infos[n].method, parallel_rows)
        changed = False
        for method_name, method in self._methods_in_use().items():
            request = requests.get(method_name)
            if method_name in self._dispatched and self._dispatched[method_name] == request:
                continue
            self._dispatched.pop(method_name, None)  # unknown until set_active succeeds
            if request is None:
                method.set_active(self.model, [])
            else:
                method.set_active(self.model, request.names, combine=request.combine, weights=request.weights,
                                  batch_sizes=request.batch_sizes)
            self._dispatched[method_name] = request
            changed = True
        if changed:
            self._apply_trainable()
        self._heads.route = heads.route(self._active, self._head_kind)

    def _structure_changed(self) -> None:
        """Modules were added, removed or merged: cached module lists and dispatch state are stale."""
        forget_structure(self.model)
        self._dispatched.clear()

    def _apply_trainable(self) -> None:
        for info in self._infos.values():
            if info.trainable:
                for p in get_method(info.method).parameters(self.model, info.name):
                    p.requires_grad_(True)
        for name in self._trainable_heads:
            for p in self._heads.parameters(name):
                p.requires_grad_(True)

    # -- running ---------------------------------------------------------------------------

    def _prepare_inputs(self, kwargs: dict[str, Any]) -> dict[str, Any]:
        parallel = dispatch.find_parallel(self._active)
        if parallel is None:
            return kwargs
        out, rows = dispatch.replicate_for_parallel(kwargs, parallel)
        self._dispatch(parallel_rows=rows)
        return out

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """Run the model with the active setup.

        When a Parallel / BatchSplit serves children that answer with different heads, the result
        is a :class:`~adapterhub.runtime.heads.MultiHeadOutput`: a list with one output per child
        (its rows, its head's ``logits``); otherwise the model's own output type.
        """
        if args and dispatch.find_parallel(self._active) is not None:
            raise CompositionError("Parallel needs keyword inputs: call am(input_ids=..., attention_mask=...)")
        return self.model(*args, **self._prepare_inputs(kwargs))

    forward = __call__

    def generate(self, *args: Any, **kwargs: Any) -> Any:
        if args and dispatch.find_parallel(self._active) is not None:
            raise CompositionError("Parallel needs keyword inputs: call am.generate(input_ids=...)")
        return self.model.generate(*args, **self._prepare_inputs(kwargs))

    def __getattr__(self, item: str) -> Any:
        # train(), eval(), config, device, parameters() ... of the wrapped model
        if item.startswith("_") or item == "model":
            raise AttributeError(item)
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
        try:
            method.remove(self.model, name)
        finally:
            self._structure_changed()
        self._heads.remove(name)
        self._trainable_heads.discard(name)
        del self._infos[name]
        if self._infos:
            self._dispatch()
        else:
            self._forget_all()

    # -- saving ----------------------------------------------------------------------------

    def save_adapter(self, save_directory: str | Path, adapter_name: str, *, format: str | None = None) -> list[Path]:
        """Write adapter ``adapter_name`` to ``save_directory`` (``adapters``' argument order).

        ``format``: ``"peft"`` or ``"adapters"``; None writes the method's native format (PEFT's for
        LoRA, IA3, prompt methods and BitFit; AdapterHub's for bottleneck adapters), or AdapterHub's
        when the adapter carries a prediction head, which only that format holds.
        """
        method = self._method(adapter_name)
        if adapter_name in self._merged:
            raise UnsupportedOperationError(f"adapter {adapter_name!r} is merged",
                                            hint="call unmerge_adapter() before saving it")
        files = method.export(self.model, adapter_name)
        # the runtime owns heads: whatever the method exported, the saved head is the one on the model
        files.head = self._heads.export(adapter_name)
        if format is None:
            format = "adapters" if files.head is not None and "adapters" in method.formats else method.formats[0]
        if files.head is not None and format != "adapters":
            raise UnsupportedOperationError(
                f"adapter {adapter_name!r} carries a prediction head, which the {format!r} format cannot hold",
                hint="save it with format='adapters' (head_config.json + model_head.safetensors)",
            )
        config = getattr(self.model, "config", None)
        files.model_type = files.model_type or getattr(config, "model_type", None)
        # formats that record the adapter's name and the base's width (AdapterHub's) read these
        files.name = files.name or adapter_name
        files.hidden_size = files.hidden_size or getattr(config, "hidden_size", None)
        return method.save(files, Path(save_directory), format=format)

    def save_setup(self, path: str | Path) -> Path:
        """Write the composition and where each adapter comes from; trained adapters are saved next to it."""
        return setup_file.save_setup(self, path)

    def load_setup(self, path: str | Path, *, allow_pickle: bool = False) -> None:
        """Load the adapters a setup file names and restore its composition and merges."""
        setup_file.load_setup(self, path, allow_pickle=allow_pickle)

    # -- reporting -------------------------------------------------------------------------

    def get_nb_trainable_parameters(self) -> tuple[int, int]:
        """(trainable parameters, all parameters), as PEFT's method of the same name."""
        trainable = total = 0
        for p in self.model.parameters():
            total += p.numel()
            if p.requires_grad:
                trainable += p.numel()
        return trainable, total

    def print_trainable_parameters(self) -> None:
        trainable, total = self.get_nb_trainable_parameters()
        share = 100 * trainable / total if total else 0.0
        print(f"trainable params: {trainable:,d} || all params: {total:,d} || trainable%: {share:.4f}")
