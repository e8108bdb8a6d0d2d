"""``AdapterModel``: load, compose, merge, train and save adapters on a transformers model, in place.

The runtime never looks inside a method: it detects, reads, checks and applies through the
:class:`~adapterhub.methods.AdapterMethod` contract, and turns composition blocks into one
``set_active`` call per method (see :mod:`adapterhub.runtime.dispatch`). Prediction heads that
adapters carry are built and routed by the runtime, whatever the method (see
:mod:`adapterhub.runtime.heads`). Where an adapter comes from is :mod:`adapterhub.runtime.sources`;
what a merge may fold in is checked by :mod:`adapterhub.runtime.merging`.
"""

from __future__ import annotations

import contextlib
import json
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..composition import Block, as_block, block_from_dict
from ..errors import (
    AdapterExistsError,
    AdapterHubError,
    AdapterNotLoadedError,
    CompositionError,
    UnsupportedOperationError,
    UsageError,
)
from ..methods import AdapterFiles, AdapterMethod, detect_method, get_method
from . import dispatch, heads, merging, sources

SETUP_VERSION = 1
#: Model inputs whose first dimension is the batch (replicated for Parallel).
BATCHED_INPUTS = (
    "input_ids",
    "attention_mask",
    "inputs_embeds",
    "labels",
    "token_type_ids",
    "position_ids",
    "pixel_values",
    "decoder_input_ids",
    "decoder_attention_mask",
)
_NAME_RE = re.compile(r"^[A-Za-z0-9_\-]+$")


@dataclass
class AdapterInfo:
    """What the runtime knows about one loaded adapter."""

    name: str
    method: str
    source: str | None
    format: str
    params: int
    mergeable: bool
    trainable: bool = False
    config: dict[str, Any] = field(default_factory=dict)
    #: the adapter's own prediction head (head_config.json's "config"), None when it has none
    head: dict[str, Any] | None = None


class AdapterModel:
    """Wraps ``model`` in place. ``am.model`` is the (mutated) base model."""

    def __init__(self, model: Any) -> None:
        from .quantize import disable_cpu_bf16_kernel
        from .structure import forget_structure

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
    def active(self) -> Block | None:
        return self._active

    @property
    def merged(self) -> dict[str, float]:
        return dict(self._merged)

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
        ids go through :func:`adapterhub.client.ensure_installed` (resolve, download, verify every
        file) and are loaded from the verified store directory; PEFT and transformers only ever see
        local files, so they never reach the network themselves. ``revision``: a Hub revision.
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
        head_spec = files.extras.get("head")
        head = None
        if head_spec:
            head_spec = {**head_spec, "source": files.source}
            heads.check_head(head_spec, self.model)
            head = heads.build_head(head_spec, self.model)
            head.requires_grad_(False)
        self._apply_transactionally(method, name, files)
        if head is not None:
            self._heads.attach(name, head)
            self._match_training_mode()
        self._infos[name] = AdapterInfo(
            name=name,
            method=method.name,
            source=str(source),
            format=files.format,
            params=sum(int(t.numel()) for t in files.state_dict.values())
            + sum(int(p.numel()) for p in self._heads.parameters(name)),
            mergeable=method.mergeable,
            config=dict(files.config),
            head=self._heads.config(name),
        )
        self._dispatch()
        return name

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
        :mod:`adapterhub.runtime.heads`) and is saved with the adapter by
        ``save_adapter(name, path, format="adapters")``.
        """
        self._method(name)
        if name in self._heads:
            raise AdapterExistsError(f"adapter {name!r} already has a head", hint="delete_adapter() and load it again")
        spec = heads.new_head_spec(
            self.model, num_labels, head_type=head_type, layers=layers, activation_function=activation_function,
            labels=list(labels) if labels else None, use_pooler=use_pooler, dropout_prob=dropout_prob, seed=seed,
        )
        self._heads.attach(name, heads.build_head(spec, self.model))
        self._match_training_mode()
        self._trainable_heads.add(name)
        info = self._infos[name]
        info.head = self._heads.config(name)
        info.params += sum(int(p.numel()) for p in self._heads.parameters(name))
        self._dispatch()
        self._apply_trainable()

    def _head_kind(self, name: str) -> str | bool:
        """How adapter ``name`` takes part in choosing the answering head (see heads.route)."""
        if name in self._heads:
            return "runtime"
        if self._infos[name].config.get("modules_to_save"):
            return "model"  # a PEFT copy of the model's own classifier answers through the model's head
        return False

    def _apply_transactionally(self, method: AdapterMethod, name: str, files: Any) -> None:
        before = _fingerprint(self.model)
        try:
            method.apply(self.model, name, files)
            self._structure_changed()
            self._match_training_mode()
        except BaseException as exc:
            self._structure_changed()
            if _fingerprint(self.model) != before:
                raise AdapterHubError(
                    f"method {method.name!r} failed to apply {name!r} ({exc}) and did not restore the model",
                    hint="reload the base model; report this to the plugin's authors",
                ) from exc
            raise

    def _match_training_mode(self) -> None:
        """New modules are created in training mode; put them in the model's mode, so a model in
        eval mode never runs adapter dropout (what PEFT's from_pretrained does with ``.eval()``).

        Ends like ``model.train(model.training)`` (every module in the model's mode) but only calls
        ``train`` where a module differs. Call it after modules were added: the walk it makes is
        cached and serves the dispatch that follows a load.
        """
        from .structure import all_modules, forget_structure

        forget_structure(self.model)
        mode = self.model.training
        for module in all_modules(self.model):
            if module.training != mode:
                module.train(mode)

    def add_adapter(self, name: str, method: str, **config: Any) -> AdapterFiles:
        """Create a fresh trainable adapter; afterwards exactly the trainable adapters' parameters need grad."""
        self._check_new_name(name)
        impl = get_method(method)
        if not impl.trainable:
            raise UnsupportedOperationError(f"method {method!r} cannot create trainable adapters")
        before = _fingerprint(self.model)
        try:
            files = impl.create(self.model, name, dict(config))
            self._structure_changed()
            self._match_training_mode()
        except BaseException as exc:
            self._structure_changed()
            if _fingerprint(self.model) != before:
                raise AdapterHubError(f"method {method!r} failed to create {name!r} and left the model modified") from exc
            raise
        params = impl.parameters(self.model, name)
        self._infos[name] = AdapterInfo(
            name=name,
            method=method,
            source=None,
            format="peft",
            params=sum(int(p.numel()) for p in params),
            mergeable=impl.mergeable,
            trainable=True,
            config=dict(files.config),
        )
        if self._active is None:
            self._active = as_block(name)
        self._dispatch()
        return files

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
                "adapters are merged into the base weights", hint="call unmerge() before switching adapters"
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
                method.set_active(
                    self.model,
                    request.names,
                    combine=request.combine,
                    weights=request.weights,
                    batch_sizes=request.batch_sizes,
                )
            self._dispatched[method_name] = request
            changed = True
        if changed:
            self._apply_trainable()
        self._heads.route = heads.route(self._active, self._head_kind)

    def _structure_changed(self) -> None:
        """Modules were added, removed or merged: cached module lists and dispatch state are stale."""
        from .structure import forget_structure

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
        copies = len(parallel.children)
        rows = None
        out = dict(kwargs)
        for key in BATCHED_INPUTS:
            value = out.get(key)
            if value is not None and hasattr(value, "repeat"):
                rows = int(value.shape[0])
                out[key] = value.repeat(copies, *([1] * (value.dim() - 1)))
        if rows is None:
            raise CompositionError(f"{self._active!r}: Parallel needs batched keyword inputs (input_ids=...)")
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
    def disabled(self) -> Iterator[None]:
        """Run the plain base model inside the block; merges and the active setup come back afterwards."""
        merged = dict(self._merged)
        active = self._active
        self.unmerge()
        self._active = None
        self._dispatch()
        try:
            yield
        finally:
            self._active = active
            self._dispatch()
            if merged:
                self.merge(list(merged), list(merged.values()))

    # -- merging ---------------------------------------------------------------------------

    def merge(self, names: Sequence[str] | None = None, weights: Sequence[float] | None = None) -> None:
        """Fold the active (or named) adapters into the base weights, reversibly (see :meth:`unmerge`)."""
        names, weights = merging.plan_merge(self, names, weights)
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

    def unmerge(self) -> None:
        """Restore the exact base weights from before :meth:`merge`."""
        if self._merged:
            self._structure_changed()
        for n in reversed(list(self._merged)):
            self._method(n).unmerge(self.model, n)
            del self._merged[n]

    def merge_and_unload(self) -> Any:
        """Merge the active adapters for good and return the plain model (no adapter modules left)."""
        if not self._merged:
            self.merge()
        by_method = merging.names_by_method(self._infos)
        for method_name, names in by_method.items():
            method = get_method(method_name)
            keep = any(n in self._merged for n in names)
            method.unload(self.model, names, keep_merged=keep)
        self._forget_all()
        return self.model

    def unload(self) -> Any:
        """Remove every adapter and return the model with its pristine base weights."""
        self.unmerge()
        self._active = None
        if self._infos:
            self._dispatch()
        by_method = merging.names_by_method(self._infos)
        try:
            for method_name, names in by_method.items():
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
            raise UnsupportedOperationError(f"adapter {name!r} is merged", hint="call unmerge() first")
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

    def save_adapter(self, name: str, path: str | Path, format: str = "peft") -> list[Path]:
        method = self._method(name)
        if name in self._merged:
            raise UnsupportedOperationError(f"adapter {name!r} is merged", hint="call unmerge() before saving it")
        files = method.export(self.model, name)
        # the runtime owns heads: whatever the method exported, the saved head is the one on the model
        files.extras["head"] = self._heads.export(name)
        if files.extras["head"] is not None and format != "adapters":
            raise UnsupportedOperationError(
                f"adapter {name!r} carries a prediction head, which the {format!r} format cannot hold",
                hint="save it with format='adapters' (head_config.json + model_head.safetensors)",
            )
        files.extras.setdefault("model_type", getattr(getattr(self.model, "config", None), "model_type", None))
        # formats that record the adapter's name and the base's width (AdapterHub's) read these
        files.extras.setdefault("name", name)
        files.extras.setdefault("hidden_size", getattr(getattr(self.model, "config", None), "hidden_size", None))
        return method.save(files, Path(path), format=format)

    def save_setup(self, path: str | Path) -> Path:
        """Write the composition and where each adapter comes from; trained adapters are saved next to it."""
        from .weights import write_json

        path = Path(path)
        adapters = {}
        for name, info in self._infos.items():
            source = info.source
            if source is None or info.trainable:
                target = path.parent / f"{path.stem}.adapters" / name
                formats = get_method(info.method).formats  # e.g. bottleneck: AdapterHub format only
                # only the AdapterHub format holds an adapter's own head
                wanted = "adapters" if name in self._heads else "peft"
                self.save_adapter(name, target, format=wanted if wanted in formats else formats[0])
                source = str(target)
            adapters[name] = {"method": info.method, "source": source, "format": info.format}
        data = {
            "version": SETUP_VERSION,
            "adapters": adapters,
            "active": None if self._active is None else self._active.to_dict(),
            "merged": self._merged,
        }
        return write_json(path, data, sort_keys=False)

    def load_setup(self, path: str | Path, *, allow_pickle: bool = False) -> None:
        path = Path(path)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            adapters = data["adapters"]
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise UsageError(f"{path}: not an adapterhub setup file ({exc})") from None
        for name, entry in adapters.items():
            if name not in self._infos:
                self.load_adapter(entry["source"], name=name, allow_pickle=allow_pickle)
        active = data.get("active")
        self.set_adapter(None if active is None else block_from_dict(active))
        if data.get("merged"):
            self.merge(list(data["merged"]), list(data["merged"].values()))

    # -- publishing ------------------------------------------------------------------------

    def push_adapter(self, name: str, repo: str, /, version: str, **kwargs: Any) -> Any:
        """Publish adapter ``name`` (only that one) to Hub repo ``repo`` as release ``version``.

        Keyword arguments are those of :func:`adapterhub.publish.push_adapter` (``task``,
        ``license``, ``token``, and ``name=`` for the registry name, ...).
        """
        self._method(name)  # a clear error for an unknown name before anything is written
        from ..publish import push_adapter

        return push_adapter(self, name, repo, version, **kwargs)

    # -- reporting -------------------------------------------------------------------------

    def trainable_parameters(self) -> tuple[int, int]:
        trainable = total = 0
        for p in self.model.parameters():
            total += p.numel()
            if p.requires_grad:
                trainable += p.numel()
        return trainable, total

    def print_trainable_parameters(self) -> None:
        trainable, total = self.trainable_parameters()
        share = 100 * trainable / total if total else 0.0
        print(f"trainable params: {trainable:,d} || all params: {total:,d} || trainable%: {share:.4f}")


def _fingerprint(model: Any) -> tuple:
    """Module structure, parameter identities and shapes: what a failed apply must leave unchanged.

    One walk over the modules (O(modules + parameters), never tensor data); each module's own
    parameters are read from ``_parameters`` instead of a second walk by ``named_parameters``.
    """
    from .structure import walk_modules

    modules: list[tuple[str, type]] = []
    params: list[tuple[str, str, int, Any]] = []
    for module_name, module in walk_modules(model):
        modules.append((module_name, type(module)))
        for param_name, param in module._parameters.items():
            if param is not None:
                params.append((module_name, param_name, id(param), param.shape))  # torch.Size: an immutable tuple
    return modules, params, sorted(getattr(model, "peft_config", {}) or {})
