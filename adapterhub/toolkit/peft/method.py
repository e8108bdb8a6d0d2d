"""A base for methods that wrap one of PEFT's layer tuners (LoRA, IA3): the plumbing they share.

PEFT does the math (layers, forward, merge); this module adds what the runtime needs on top:
transactional injection, exact (bit-identical) unmerge and removal, composition dispatch, and
PEFT-compatible reading and saving of adapter directories. Subclasses name the PEFT type, the layer
class and how to check tensor shapes.

No torch at import time: plugins import this module when they register.
"""

from __future__ import annotations

import warnings
import weakref
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from ..errors import (
    AdapterFormatError,
    AdapterNotLoadedError,
    CompositionError,
    IncompatibleBaseModelError,
    UnsupportedOperationError,
)
from ..methods import AdapterFiles, AdapterMethod, read_adapter_config
from .structure import all_modules, forget_structure, modules_of_type  # noqa: F401 - used and re-exported
from .weights import find_weights, load_tensors, save_tensors, write_json

#: The prefix PEFT's files put on every key (PeftModel -> tuner -> transformers model).
PEFT_PREFIX = "base_model.model."
PEFT_WEIGHTS = ("adapter_model.safetensors", "adapter_model.bin")
#: PEFT's name for "no adapter on this row" in a mixed batch.
BASE_ROW = "__base__"


@dataclass
class _ModelState:
    """Per-model bookkeeping of one method (kept outside the model so state_dict stays PEFT's)."""

    merged: dict[str, float] = field(default_factory=dict)  # name -> weight, in merge order
    # True while layer scales may differ from the config's (an Average ran); a fresh state does not
    # know, so the first activation resets them
    scaled: bool = True
    # layer -> {param name: the original Parameter object}; restoring them makes unmerge exact
    originals: dict[Any, dict[str, Any]] = field(default_factory=dict)
    hooks: list[Any] = field(default_factory=list)


def strip_peft_prefix(state_dict: dict[str, Any]) -> dict[str, Any]:
    return {(k[len(PEFT_PREFIX):] if k.startswith(PEFT_PREFIX) else k): v for k, v in state_dict.items()}


def jsonable_config(config: dict[str, Any]) -> dict[str, Any]:
    """PEFT's config dict as PEFT writes it: enums as strings, sets as sorted lists."""
    import enum

    def fix(value: Any) -> Any:
        if isinstance(value, enum.Enum):
            return value.value
        if isinstance(value, (set, frozenset)):
            return sorted(fix(v) for v in value)
        if isinstance(value, (list, tuple)):
            return [fix(v) for v in value]
        if isinstance(value, dict):
            return {k: fix(v) for k, v in value.items()}
        return value

    return {k: fix(v) for k, v in config.items()}


def _owns_param(param_name: str, adapter: str) -> bool:
    return f".{adapter}." in f".{param_name}."


class PeftTunerMethod(AdapterMethod):
    """Shared implementation for a PEFT tuner type. Subclasses set the class attributes below."""

    #: PEFT's ``peft_type`` string.
    peft_type: ClassVar[str]
    #: Import path of PEFT's layer class, e.g. ``("peft.tuners.lora", "LoraLayer")``.
    layer_class: ClassVar[tuple[str, str]]
    #: Substrings that mark this method's parameters in PEFT state-dict keys.
    param_markers: ClassVar[tuple[str, ...]]
    #: ``architecture`` value of an AdapterHub-format config this method reads.
    adapters_architecture: ClassVar[str | None] = None
    formats = ("peft", "adapters")

    def __init__(self) -> None:
        self._states: weakref.WeakKeyDictionary[Any, _ModelState] = weakref.WeakKeyDictionary()

    def _state(self, model: Any) -> _ModelState:
        state = self._states.get(model)
        if state is None:
            state = self._states[model] = _ModelState()
        return state

    def _layer_cls(self) -> type:
        import importlib

        module, name = self.layer_class
        return getattr(importlib.import_module(module), name)

    # -- files ------------------------------------------------------------------------------

    def detect(self, config: dict[str, Any], files: set[str], model: Any = None) -> bool:
        if "peft_type" in config:
            return str(config.get("peft_type")).upper() == self.peft_type
        inner = config.get("config")
        return (
            self.adapters_architecture is not None
            and isinstance(inner, dict)
            and "name" in config
            and inner.get("architecture") == self.adapters_architecture
        )

    def read(self, path: Path, *, allow_pickle: bool = False) -> AdapterFiles:
        path = Path(path)
        config = read_adapter_config(path)
        if "peft_type" not in config:
            return self._read_adapters_format(path, config, allow_pickle)
        weights = find_weights(path, PEFT_WEIGHTS)
        state_dict = strip_peft_prefix(load_tensors(weights, allow_pickle=allow_pickle))
        if not state_dict:
            raise AdapterFormatError(f"{weights}: holds no tensors")
        return AdapterFiles(self.name, config, state_dict, format="peft", source=str(path))

    def _read_adapters_format(self, path: Path, config: dict[str, Any], allow_pickle: bool) -> AdapterFiles:
        try:
            from ..formats import adapters as adapters_format
        except ImportError:
            raise AdapterFormatError(
                f"{path / 'adapter_config.json'}: AdapterHub-format {self.name} adapters are not supported "
                "by this installation",
                hint="convert it to the PEFT format",
            ) from None
        files = adapters_format.read_adapters_lora(path, config, allow_pickle)
        files.method = self.name
        return files

    def save(self, adapter: AdapterFiles, path: Path, *, format: str = "peft") -> list[Path]:
        path = Path(path)
        if format == "adapters":
            try:
                from ..formats import adapters as adapters_format
            except ImportError:
                raise AdapterFormatError(
                    f"saving {self.name} adapters in the AdapterHub format is not supported by this installation",
                    hint="save with format='peft'",
                ) from None
            return adapters_format.write_adapters_lora(adapter, path, adapter.extras.get("model_type"))
        if format != "peft":
            raise AdapterFormatError(f"unknown adapter format {format!r}", hint="use 'peft' or 'adapters'")
        if adapter.format != "peft":
            raise AdapterFormatError(
                f"adapter from {adapter.source} is in the {adapter.format!r} layout; export it from a model first"
            )
        config = jsonable_config(dict(adapter.config))
        config["peft_type"] = self.peft_type
        config["inference_mode"] = True  # PEFT always writes true
        path.mkdir(parents=True, exist_ok=True)
        weights = save_tensors(
            {PEFT_PREFIX + k: v for k, v in adapter.state_dict.items()},
            path / PEFT_WEIGHTS[0],
            metadata={"format": "pt"},
        )
        config_path = write_json(path / "adapter_config.json", config)
        return [config_path, weights]

    # -- model: checking and injecting ----------------------------------------------------------

    def peft_config(self, config: dict[str, Any], *, inference_mode: bool = True) -> Any:
        """Build PEFT's config object (unknown keys from newer PEFT versions are dropped by PEFT)."""
        from peft import PeftConfig

        kwargs = {k: v for k, v in config.items() if k not in {"peft_version"}}
        kwargs["peft_type"] = self.peft_type
        kwargs["inference_mode"] = inference_mode
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                return PeftConfig.from_peft_type(**kwargs)
            except (TypeError, ValueError) as exc:
                raise AdapterFormatError(f"invalid {self.peft_type} config: {exc}") from None

    def base_module(self, model: Any, path: str) -> Any:
        """The module at ``path``, looking through layers injected by earlier adapters.

        Walks the registered submodules (``_modules``) directly: what ``get_submodule`` finds for a
        state-dict key, without its attribute lookups (``check`` asks this for every tensor).
        """
        module = model
        for part in path.split(".") if path else ():
            module = module._modules.get(part)
            if module is None:
                return None
        base = module._modules.get("base_layer")
        while base is not None:
            module, base = base, base._modules.get("base_layer")
        original = module._modules.get("original_module")  # PEFT's modules_to_save wrapper
        return module if original is None else original

    def check(self, model: Any, adapter: AdapterFiles) -> None:
        if adapter.format == "adapters" and adapter.extras.get("static_head"):
            from ..formats import adapters as adapters_format

            # A saved lm_head/static head must be the model's own: adapterhub never overwrites base weights.
            adapters_format.check_static_head(model, adapter)
        problems: list[str] = []
        for key, tensor in adapter.state_dict.items():
            problem = self.check_tensor(model, adapter, key, tuple(tensor.shape))
            if problem:
                problems.append(problem)
        if problems:
            where = adapter.source or "adapter"
            more = f" (and {len(problems) - 3} more)" if len(problems) > 3 else ""
            raise IncompatibleBaseModelError(
                f"{where} does not fit {type(model).__name__}: " + "; ".join(problems[:3]) + more,
                hint="the adapter was trained for a different base model; check base_model_name_or_path",
            )

    def check_tensor(self, model: Any, adapter: AdapterFiles, key: str, shape: tuple[int, ...]) -> str | None:
        """A message when tensor ``key`` cannot go on ``model``; default: full tensors of saved modules."""
        module_path, _, param = key.rpartition(".")
        module = self.base_module(model, module_path)
        if module is None:
            return f"module {module_path!r} (for {key}) not found in the model"
        current = getattr(module, param, None)
        if current is None or not hasattr(current, "shape"):
            return f"module {module_path!r} ({type(module).__name__}) has no tensor {param!r} (for {key})"
        if tuple(current.shape) != shape:
            return (
                f"module {module_path!r} ({type(module).__name__}): {param} has shape {tuple(current.shape)} "
                f"but the adapter's {key} has shape {shape}"
            )
        return None

    def apply(self, model: Any, name: str, adapter: AdapterFiles) -> None:
        self._inject(model, name, adapter.config, adapter.state_dict, source=adapter.source)

    def create(self, model: Any, name: str, config: dict[str, Any]) -> AdapterFiles:
        self._inject(model, name, config, None, source=None, inference_mode=False)
        return self.export(model, name)

    def _inject(
        self,
        model: Any,
        name: str,
        config: dict[str, Any],
        state_dict: dict[str, Any] | None,
        *,
        source: str | None,
        inference_mode: bool = True,
    ) -> None:
        from peft import inject_adapter_in_model, set_peft_model_state_dict

        from .config_guard import check_untrusted_config

        where = source or "adapter"
        check_untrusted_config(config, where, loading=state_dict is not None)
        peft_config = self.peft_config(config, inference_mode=inference_mode)
        forget_structure(model)
        try:
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", message=".*Already found a `peft_config`.*")
                warnings.filterwarnings("ignore", message=".*Adapter name .* should not be contained.*")
                try:
                    inject_adapter_in_model(peft_config, model, adapter_name=name)
                except ValueError as exc:
                    raise IncompatibleBaseModelError(f"{where} cannot be injected into {type(model).__name__}: {exc}") from None
            if state_dict is not None:
                state_dict = self.drop_unchanged_base_tensors(model, state_dict, where)
                try:
                    result = set_peft_model_state_dict(model, state_dict, adapter_name=name)
                except RuntimeError as exc:  # size mismatch from load_state_dict
                    raise IncompatibleBaseModelError(f"{where}: {exc}") from None
                unexpected = list(result.unexpected_keys)
                missing = [k for k in result.missing_keys if _owns_param(k, name)]
                if unexpected or missing:
                    raise IncompatibleBaseModelError(
                        f"{where} does not match the modules its config targets: "
                        + (f"tensors with no place in the model: {unexpected[:3]}; " if unexpected else "")
                        + (f"adapter parameters missing from the file: {missing[:3]}" if missing else ""),
                        hint="check target_modules in adapter_config.json against the weights",
                    )
        except BaseException:
            self._purge(model, name)
            raise
        finally:
            forget_structure(model)

    def drop_unchanged_base_tensors(self, model: Any, state_dict: dict[str, Any], where: str) -> dict[str, Any]:
        """PEFT may save whole base embeddings (``...base_layer.weight``); accept them only when unchanged."""
        import torch

        out = {}
        for key, tensor in state_dict.items():
            if ".base_layer." not in key:
                out[key] = tensor
                continue
            module_path, _, param = key.replace(".base_layer.", ".", 1).rpartition(".")
            module = self.base_module(model, module_path)
            current = getattr(module, param, None) if module is not None else None
            if current is None or tuple(current.shape) != tuple(tensor.shape) or not torch.equal(
                current.detach().cpu(), tensor.to(current.dtype)
            ):
                raise IncompatibleBaseModelError(
                    f"{where}: carries a modified base tensor {key}; applying it would change the base model",
                    hint="resize the base model's embeddings first or use the base the adapter was trained on",
                )
        return out

    # -- model: activation -----------------------------------------------------------------

    def layers(self, model: Any, name: str | None = None) -> Iterator[Any]:
        """This method's PEFT layers (that hold ``name``, when given)."""
        for module in modules_of_type(model, self._layer_cls()):
            if name is None or self._layer_has(module, name):
                yield module

    def _layer_has(self, layer: Any, name: str) -> bool:
        return any(name in getattr(layer, attr) for attr in layer.adapter_layer_names)

    def _aux_wrappers(self, model: Any, names: Sequence[str] | None = None) -> Iterator[Any]:
        """PEFT's modules_to_save wrappers that hold at least one of ``names`` (all when None)."""
        from peft.utils.other import AuxiliaryTrainingWrapper

        wrappers = modules_of_type(model, AuxiliaryTrainingWrapper)
        if not wrappers:
            return
        wanted = self.loaded_names(model) if names is None else set(names)
        for module in wrappers:
            if wanted & set(module._adapters):
                yield module

    def loaded_names(self, model: Any) -> set[str]:
        configs = getattr(model, "peft_config", None) or {}
        return {n for n, c in configs.items() if str(getattr(c, "peft_type", "")).endswith(self.peft_type)}

    def _clear_hooks(self, model: Any) -> None:
        state = self._state(model)
        for handle in state.hooks:
            handle.remove()
        state.hooks.clear()

    def set_active(
        self,
        model: Any,
        names: Sequence[str | None],
        *,
        combine: str = "stack",
        weights: Sequence[float] | None = None,
        batch_sizes: Sequence[int] | None = None,
    ) -> None:
        self._clear_hooks(model)
        state = self._state(model)
        if state.scaled:  # only an Average changes scales: skip the walk over every layer otherwise
            self.reset_scales(model)
            state.scaled = False
        loaded = self.loaded_names(model)
        for n in names:
            if n is not None and n not in loaded:
                raise AdapterNotLoadedError(f"{self.name} adapter {n!r} is not loaded on this model")
        if combine == "stack":
            self._activate(model, list(names))
        elif combine == "average":
            if not self.supports_average:
                raise CompositionError(f"Average: method {self.name!r} cannot average adapters")
            state.scaled = True
            self.activate_average(model, list(names), list(weights or [1.0 / len(names)] * len(names)))
        elif combine == "batch_split":
            if not self.supports_mixed_batch:
                raise CompositionError(
                    f"BatchSplit/Parallel: method {self.name!r} cannot serve different adapters to rows of one batch"
                )
            self.activate_batch_split(model, list(names), list(batch_sizes or []))
        else:
            raise CompositionError(f"unknown combine mode {combine!r} for method {self.name!r}")

    def _activate(self, model: Any, names: list[str]) -> None:
        for layer in self.layers(model):
            # inference_mode=True: activation must not touch requires_grad (the runtime owns that)
            layer.set_adapter(names, inference_mode=True)
        for wrapper in self._aux_wrappers(model):
            mine = [n for n in names if n in wrapper._adapters]
            if len(mine) > 1:
                raise CompositionError(
                    f"Stack{tuple(mine)!r}: adapters of method {self.name!r} both replace module "
                    f"{type(wrapper.original_module).__name__} (modules_to_save); only one can be active"
                )
            wrapper.enable_adapters(bool(mine))
            wrapper.set_adapter(mine, inference_mode=True)

    def reset_scales(self, model: Any) -> None:
        """Undo any Average weighting (subclasses that scale adapters override)."""

    def activate_average(self, model: Any, names: list[str], weights: list[float]) -> None:
        raise CompositionError(f"Average: method {self.name!r} cannot average adapters")

    def activate_batch_split(self, model: Any, names: list[str | None], batch_sizes: list[int]) -> None:
        """Serve slice i of the batch with ``names[i]`` through PEFT's ``adapter_names`` forward."""
        from functools import partial

        rows: list[str] = []
        for n, size in zip(names, batch_sizes, strict=True):
            rows.extend([n or BASE_ROW] * size)
        self._activate(model, [n for n in dict.fromkeys(names) if n is not None])
        state = self._state(model)
        for module in [*self.layers(model), *self._aux_wrappers(model)]:
            state.hooks.append(module.register_forward_pre_hook(partial(_rows_hook, rows, self.name), with_kwargs=True))

    # -- merging ---------------------------------------------------------------------------

    def merge(self, model: Any, name: str, weight: float = 1.0) -> None:
        state = self._state(model)
        if name in state.merged:
            raise UnsupportedOperationError(f"{self.name} adapter {name!r} is already merged")
        if name not in self.loaded_names(model):
            raise AdapterNotLoadedError(f"{self.name} adapter {name!r} is not loaded on this model")
        for layer in self.layers(model, name):
            self._keep_originals(state, layer)
            self.merge_layer(layer, name, weight)
        state.merged[name] = weight

    def _keep_originals(self, state: _ModelState, layer: Any) -> None:
        """Before the first merge into a layer, swap its base parameters for copies and keep the originals."""
        if layer in state.originals:
            return
        base = layer.get_base_layer()
        originals = dict(base.named_parameters(recurse=False))
        for pname, param in originals.items():
            setattr(base, pname, self.copy_parameter(param))
        state.originals[layer] = originals

    def copy_parameter(self, param: Any) -> Any:
        import torch

        return torch.nn.Parameter(param.detach().clone(), requires_grad=param.requires_grad)

    def merge_layer(self, layer: Any, name: str, weight: float) -> None:
        """Fold ``name`` scaled by ``weight`` into the (copied) base parameters of ``layer``."""
        raise NotImplementedError

    def unmerge(self, model: Any, name: str) -> None:
        state = self._state(model)
        if name not in state.merged:
            raise UnsupportedOperationError(f"{self.name} adapter {name!r} is not merged")
        remaining = {n: w for n, w in state.merged.items() if n != name}
        self._restore_all(model)
        state.merged.clear()
        for n, w in remaining.items():  # re-fold the others in their original order
            self.merge(model, n, w)

    def _restore_all(self, model: Any) -> None:
        state = self._state(model)
        for layer, originals in state.originals.items():
            base = layer.get_base_layer()
            for pname, param in originals.items():
                setattr(base, pname, param)
            layer.merged_adapters.clear()
            if hasattr(layer, "_caches"):
                layer._caches.clear()
        state.originals.clear()

    # -- removal ---------------------------------------------------------------------------

    def remove(self, model: Any, name: str) -> None:
        if name not in self.loaded_names(model):
            raise AdapterNotLoadedError(f"{self.name} adapter {name!r} is not loaded on this model")
        if name in self._state(model).merged:
            self.unmerge(model, name)
        self._purge(model, name)

    def _purge(self, model: Any, name: str) -> None:
        """Delete ``name`` from every layer and config; restore base modules no adapter uses any more."""
        self._clear_hooks(model)
        self.reset_scales(model)
        self._state(model).scaled = False
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            for layer in list(self.layers(model, name)):
                layer.delete_adapter(name)
            for wrapper in list(self._aux_wrappers(model, [name])):
                wrapper.delete_adapter(name, new_active_adapters=[])
        configs = getattr(model, "peft_config", None)
        if isinstance(configs, dict):
            configs.pop(name, None)
        self._strip_empty(model)
        forget_structure(model)
        if isinstance(configs, dict) and not configs:
            del model.peft_config

    def _strip_empty(self, model: Any) -> None:
        from peft.utils.other import AuxiliaryTrainingWrapper

        layer_cls = self._layer_cls()
        for module_name, module in list(model.named_modules()):
            if not module_name:
                continue
            if isinstance(module, layer_cls) and not any(len(getattr(module, a)) for a in module.adapter_layer_names):
                replacement = module.base_layer
            elif isinstance(module, AuxiliaryTrainingWrapper) and not module._adapters:
                replacement = module.original_module
            else:
                continue
            parent_name, _, child = module_name.rpartition(".")
            setattr(model.get_submodule(parent_name) if parent_name else model, child, replacement)

    def unload(self, model: Any, names: Sequence[str], *, keep_merged: bool = False) -> None:
        """Remove ``names``; with ``keep_merged`` the merged weights stay in the base (merge_and_unload)."""
        state = self._state(model)
        if not keep_merged:
            for name in list(names):
                self.remove(model, name)
            return
        from peft.utils.other import AuxiliaryTrainingWrapper

        self._clear_hooks(model)
        merged = list(state.merged)
        layer_cls = self._layer_cls()
        for module_name, module in list(model.named_modules()):
            if not module_name:
                continue
            if isinstance(module, layer_cls):
                replacement = module.base_layer  # its parameters hold the merged weights
            elif isinstance(module, AuxiliaryTrainingWrapper) and set(module._adapters) & set(names):
                held = [n for n in merged if n in module._adapters]
                if len(held) > 1:
                    raise UnsupportedOperationError(
                        f"merged adapters {held} each replace module {module_name!r}; cannot keep both"
                    )
                replacement = module.modules_to_save[held[0]] if held else module.original_module
            else:
                continue
            parent_name, _, child = module_name.rpartition(".")
            setattr(model.get_submodule(parent_name) if parent_name else model, child, replacement)
        state.originals.clear()
        state.merged.clear()
        forget_structure(model)
        configs = getattr(model, "peft_config", None)
        if isinstance(configs, dict):
            for name in names:
                configs.pop(name, None)
            if not configs:
                del model.peft_config

    # -- export ----------------------------------------------------------------------------

    def export(self, model: Any, name: str) -> AdapterFiles:
        import peft
        from peft import get_peft_model_state_dict

        configs = getattr(model, "peft_config", None) or {}
        if name not in configs:
            raise AdapterNotLoadedError(f"{self.name} adapter {name!r} is not loaded on this model")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            state_dict = get_peft_model_state_dict(model, adapter_name=name, save_embedding_layers=False)
        config = jsonable_config(configs[name].to_dict())
        if not config.get("base_model_name_or_path"):
            config["base_model_name_or_path"] = getattr(model, "name_or_path", None) or None
        config["peft_version"] = config.get("peft_version") or peft.__version__
        config["inference_mode"] = True
        model_type = getattr(getattr(model, "config", None), "model_type", None)
        return AdapterFiles(
            self.name,
            config,
            {k: v.detach().clone() for k, v in state_dict.items()},
            format="peft",
            source=None,
            extras={"model_type": model_type},
        )

    def parameters(self, model: Any, name: str) -> list[Any]:
        return [
            p
            for n, p in model.named_parameters()
            if _owns_param(n, name) and any(m in n for m in (*self.param_markers, "modules_to_save"))
        ]


def _rows_hook(rows: list[str], method: str, module: Any, args: tuple, kwargs: dict) -> tuple[tuple, dict]:
    first = args[0] if args else next(iter(kwargs.values()), None)
    batch = getattr(first, "shape", (len(rows),))[0]
    if batch != len(rows):
        raise CompositionError(
            f"BatchSplit: the batch has {batch} rows but the {method} adapters were split for {len(rows)}",
            hint="make batch_sizes add up to the batch size",
        )
    kwargs["adapter_names"] = rows
    return args, kwargs
