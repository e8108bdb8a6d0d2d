"""The "bitfit" method: only the bias terms of the base model are trained.

Files: a PEFT-like directory, ``adapter_config.json`` = ``{"adapterhub_method": "bitfit",
"target_biases": [...], ...}`` and ``adapter_model.safetensors`` holding the trained bias tensors
under their parameter names (relative to the model given to ``apply``, as they read with no other
method's wrapper around their module: ``value.bias`` even while a LoRA wraps ``value``, whose bias
then lives at ``value.base_layer.bias``). On the model an adapter is
kept as a *delta* over the base biases, so several can be stacked (deltas summed) or averaged
(weighted deltas), merged into the base (kept after removal) and unmerged. Merged into a checkpoint
without a model (``merge_updates``), each bias moves by ``weight * (trained - base)``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from adapterhub.plugin import (
    AdapterExistsError,
    AdapterFiles,
    AdapterFormatError,
    AdapterMethod,
    AdapterNotLoadedError,
    IncompatibleBaseModelError,
    MergeSite,
    ParamUpdate,
    UnsupportedOperationError,
)
from adapterhub.toolkit.adapter_dir import read_adapter_dir, write_adapter_dir
from adapterhub.toolkit.model_state import PerModel
from adapterhub.toolkit.options import check_options
from adapterhub.toolkit.structure import base_parameters

#: Parameters of injected adapter modules are never BitFit targets.
_ADAPTER_MARKERS = ("adapters.", "adapterhub_", "lora_", "ia3_")


def _new_state() -> dict:
    # original: pristine base biases; deltas: name -> {param: delta}; merged: name -> weight
    return {"original": {}, "deltas": {}, "merged": {}, "active": ("stack", (), None), "trainable": None,
            "configs": {}}


_states: PerModel[dict] = PerModel(_new_state)
_state = _states


def bias_names(model: Any, patterns: Sequence[str] | None = None) -> list[str]:
    names = [n for n in base_parameters(model) if n.endswith(".bias") and not any(m in n for m in _ADAPTER_MARKERS)]
    if patterns:
        names = [n for n in names if any(p in n for p in patterns)]
    return names


class BitFitMethod(AdapterMethod):
    name = "bitfit"
    description = "BitFit: train only the bias terms (mergeable; stack/average as bias deltas)"
    formats = ("peft",)
    mergeable = True
    supports_mixed_batch = False
    supports_average = True
    trainable = True

    def detect(self, config: dict[str, Any], files: set[str], model: Any = None) -> bool:
        return config.get("adapterhub_method") == "bitfit"

    def read(self, path: Path, *, allow_pickle: bool = False) -> AdapterFiles:
        path = Path(path)
        config, state, _ = read_adapter_dir(path, allow_pickle=allow_pickle, dtypes=self.allowed_dtypes)
        bad = [k for k in state if not k.endswith("bias")]
        if bad:
            raise AdapterFormatError(f"{path}: a BitFit adapter holds only biases, found {bad[:3]}")
        return AdapterFiles("bitfit", config, dict(state), format="peft", source=str(path))

    def save(self, adapter: AdapterFiles, path: Path, *, format: str | None = None) -> list[Path]:
        if format not in (None, "peft"):
            raise UnsupportedOperationError(
                f"BitFit adapters cannot be saved in the {format!r} format", hint="use format='peft'")
        config = {**adapter.config, "adapterhub_method": "bitfit", "target_biases": sorted(adapter.state_dict)}
        return write_adapter_dir(path, config, adapter.state_dict)

    # -- model ----------------------------------------------------------------------------------

    def check(self, model: Any, adapter: AdapterFiles) -> None:
        params = base_parameters(model)
        for key, value in adapter.state_dict.items():
            if key not in params:
                raise IncompatibleBaseModelError(
                    f"{adapter.source or 'adapter'}: the model has no parameter {key!r}",
                    hint="BitFit keys are the model's own bias names; was it trained on another model class?")
            if tuple(params[key].shape) != tuple(value.shape):
                raise IncompatibleBaseModelError(
                    f"{adapter.source or 'adapter'}: {key} has shape {list(value.shape)}, "
                    f"the model has {list(params[key].shape)}")

    def _remember(self, model: Any, keys: Sequence[str]) -> None:
        state = _state(model)
        params = base_parameters(model)
        for key in keys:
            if key not in state["original"]:
                state["original"][key] = params[key].detach().clone()

    def _sync_trainable(self, model: Any) -> None:
        """Capture the in-place trained biases of the created adapter before rewriting biases."""
        state = _state(model)
        name = state["trainable"]
        # a merged adapter's delta lives in the base values: the live biases no longer show it alone
        if name is None or name in state["merged"] or state["active"] != ("stack", (name,), None):
            return
        params = base_parameters(model)
        state["deltas"][name] = {k: (params[k].detach() - self._base(state, k)).clone() for k in state["deltas"][name]}

    def _base(self, state: dict, key: str) -> Any:
        value = state["original"][key].clone()
        for merged, weight in state["merged"].items():
            delta = state["deltas"][merged].get(key)
            if delta is not None:
                value = value + weight * delta
        return value

    def _write(self, model: Any) -> None:
        import torch

        state = _state(model)
        combine, names, weights = state["active"]
        params = base_parameters(model)
        with torch.no_grad():
            for key in state["original"]:
                value = self._base(state, key)
                for i, name in enumerate(names):
                    if name in state["merged"]:
                        continue
                    delta = state["deltas"][name].get(key)
                    if delta is not None:
                        value = value + (weights[i] if combine == "average" else 1.0) * delta
                params[key].copy_(value)

    def apply(self, model: Any, name: str, adapter: AdapterFiles) -> None:
        self.check(model, adapter)
        state = _state(model)
        if name in state["deltas"]:
            raise AdapterExistsError(f"BitFit adapter {name!r} is already loaded on this model")
        self._sync_trainable(model)
        self._remember(model, list(adapter.state_dict))
        params = base_parameters(model)
        ref = {k: state["original"][k] for k in adapter.state_dict}
        state["deltas"][name] = {k: v.to(params[k].device, params[k].dtype) - ref[k] for k, v in adapter.state_dict.items()}
        state["configs"][name] = dict(adapter.config)
        self._write(model)

    def create(self, model: Any, name: str, config: dict[str, Any]) -> AdapterFiles:
        check_options(self.name, config, ("target_modules", "base_model_name_or_path"),
                      aliases={"targets": "target_modules", "target": "target_modules", "modules": "target_modules"})
        state = _state(model)
        if name in state["deltas"]:
            raise AdapterExistsError(f"BitFit adapter {name!r} is already loaded on this model")
        keys = bias_names(model, config.get("target_modules"))
        if not keys:
            raise IncompatibleBaseModelError(f"{type(model).__name__}: no bias parameters to train")
        self._sync_trainable(model)
        self._remember(model, keys)
        state["deltas"][name] = {k: state["original"][k].new_zeros(state["original"][k].shape) for k in keys}
        state["configs"][name] = {
            "adapterhub_method": "bitfit", "target_modules": config.get("target_modules"),
            "base_model_name_or_path": getattr(model.config, "_name_or_path", None) or None}
        state["trainable"] = name
        params = base_parameters(model)
        wanted = {id(params[k]) for k in keys}
        for p in model.parameters():
            p.requires_grad_(id(p) in wanted)
        return self.export(model, name)

    def make_trainable(self, model: Any, name: str) -> None:
        state = self._check_loaded(model, name)
        self._sync_trainable(model)  # the adapter trained so far keeps what it learnt
        state["trainable"] = name

    def loaded_names(self, model: Any) -> set[str]:
        state = _states.get(model)
        return set(state["deltas"]) if state is not None else set()

    def _activate(self, model: Any, active: tuple) -> None:
        self._sync_trainable(model)
        _state(model)["active"] = active
        self._write(model)

    def activate_stack(self, model: Any, names: list[str]) -> None:
        self._activate(model, ("stack", tuple(names), None))

    def activate_average(self, model: Any, names: list[str], weights: list[float]) -> None:
        self._activate(model, ("average", tuple(names), tuple(weights)))

    def _check_loaded(self, model: Any, name: str) -> dict:
        state = _state(model)
        if name not in state["deltas"]:
            raise AdapterNotLoadedError(f"BitFit adapter {name!r} is not loaded on this model")
        return state

    def merge(self, model: Any, name: str, weight: float = 1.0) -> None:
        state = self._check_loaded(model, name)
        self._sync_trainable(model)
        state["merged"][name] = float(weight)
        self._write(model)

    def merge_updates(self, adapter: AdapterFiles, weight: float = 1.0) -> list[ParamUpdate]:
        return [_bias_update(key, value, float(weight)) for key, value in adapter.state_dict.items()]

    def unmerge(self, model: Any, name: str) -> None:
        state = self._check_loaded(model, name)
        if name not in state["merged"]:
            raise UnsupportedOperationError(f"BitFit adapter {name!r} is not merged")
        del state["merged"][name]
        self._write(model)

    def remove(self, model: Any, name: str) -> None:
        import torch

        state = self._check_loaded(model, name)
        self._sync_trainable(model)
        weight = state["merged"].pop(name, None)
        delta = state["deltas"].pop(name)
        if weight is not None:  # merged then removed: the change stays in the base (merge_and_unload)
            for key, d in delta.items():
                state["original"][key] = state["original"][key] + weight * d
        combine, names, weights = state["active"]
        keep = [i for i, n in enumerate(names) if n != name]
        state["active"] = (combine, tuple(names[i] for i in keep), tuple(weights[i] for i in keep) if weights else None)
        if state["trainable"] == name:
            state["trainable"] = None
        self._write(model)
        if not state["deltas"]:
            params = base_parameters(model)
            with torch.no_grad():
                for key, value in state["original"].items():
                    params[key].copy_(value)
            _states.drop(model)

    def unload(self, model: Any, names: Sequence[str], *, keep_merged: bool = False) -> None:
        state = _state(model)
        if not keep_merged:
            state["merged"].clear()
        for name in list(names):
            self.remove(model, name)

    def export(self, model: Any, name: str) -> AdapterFiles:
        state = self._check_loaded(model, name)
        self._sync_trainable(model)
        sd = {k: (state["original"][k] + d).detach().clone() for k, d in state["deltas"][name].items()}
        return AdapterFiles("bitfit", dict(state["configs"].get(name) or {"adapterhub_method": "bitfit"}),
                            sd, format="peft")

    def parameters(self, model: Any, name: str) -> list[Any]:
        state = self._check_loaded(model, name)
        params = base_parameters(model)
        return [params[k] for k in state["deltas"][name]]


def _bias_update(key: str, trained: Any, weight: float) -> ParamUpdate:
    """``bias + weight * (trained - base)``; with weight 1 on an untouched bias, exactly ``trained``."""
    shape = tuple(trained.shape)

    def check(checkpoint_shape: tuple[int, ...], layer_type: str) -> str | None:
        if tuple(checkpoint_shape) != shape:
            return f"{key} has shape {list(checkpoint_shape)} in the checkpoint, the BitFit adapter's {list(shape)}"
        return None

    def apply(current: Any, site: MergeSite) -> Any:
        import torch

        value = trained.to(torch.float32)
        if weight == 1.0:
            return value + (current - site.base)
        return current.add_(value - site.base, alpha=weight)

    return ParamUpdate(key, apply, check)
