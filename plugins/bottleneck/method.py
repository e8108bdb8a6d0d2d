"""The "bottleneck" method: sequential (Pfeiffer, ``seq_bn``), double (Houlsby, ``double_seq_bn``) and
parallel (``par_bn``) bottleneck adapters, read and written in the AdapterHub ``adapters`` format.

Canonical form (see :mod:`.adapters_format`): ``config`` is adapters' ``BnConfig`` dict (:mod:`.config`),
keys are ``<module>.adapters.<param>`` relative to ``model.base_model``. A prediction head saved with
the adapter (``head_config.json``) travels in ``AdapterFiles.head`` as the AdapterHub reader fills it;
the runtime builds, routes and saves heads (:mod:`adapterhub.runtime.heads`), so this method only
ever touches the bottleneck modules.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from adapterhub.plugin import (
    AdapterExistsError,
    AdapterFiles,
    AdapterMethod,
    AdapterNotLoadedError,
    IncompatibleBaseModelError,
    UnsupportedOperationError,
    WeightedRequest,
    read_adapter_config,
)
from adapterhub.toolkit.adapters_format import architecture, is_adapters_format
from adapterhub.toolkit.adapters_format.heads import check_static_head
from adapterhub.toolkit.model_state import PerModel
from adapterhub.toolkit.options import check_options

from .adapters_format import read_adapters_bottleneck, write_adapters_bottleneck
from .config import BN_DEFAULTS, normalise_config

#: Pseudo-location of a Compacter adapter's shared PHM parameters (keys ``shared_parameters.<param>``).
SHARED_KEY = "shared_parameters"


def _state_key(path: str, param: str) -> str:
    return f"{SHARED_KEY}.{param}" if path == SHARED_KEY else f"{path}.adapters.{param}"


_states: PerModel[dict] = PerModel(lambda: {"adapters": {}})
_state = _states


class BottleneckMethod(AdapterMethod):
    name = "bottleneck"
    description = "Bottleneck adapters (seq_bn/Pfeiffer, double_seq_bn/Houlsby, par_bn) in AdapterHub format"
    formats = ("adapters",)
    mergeable = False
    supports_mixed_batch = True
    supports_average = True
    trainable = True
    combination_types = ("linear",)

    # -- files ----------------------------------------------------------------------------------

    def detect(self, config: dict[str, Any], files: set[str], model: Any = None) -> bool:
        return is_adapters_format(config) and architecture(config) == "bottleneck"

    def read(self, path: Path, *, allow_pickle: bool = False) -> AdapterFiles:
        config = read_adapter_config(path)
        files = read_adapters_bottleneck(path, config, allow_pickle, self.allowed_dtypes)
        files.config = normalise_config(files.config)
        return files

    def save(self, adapter: AdapterFiles, path: Path, *, format: str | None = None) -> list[Path]:
        format = format or "adapters"
        if format == "peft":
            raise UnsupportedOperationError(
                "bottleneck adapters cannot be saved in PEFT format: PEFT has no bottleneck adapter type",
                hint="save with format='adapters' (AdapterHub format, loadable by the adapters library)")
        if format != "adapters":
            raise UnsupportedOperationError(f"unknown format {format!r} for bottleneck adapters",
                                            hint="use format='adapters'")
        model_type = (adapter.extras.get("adapters_meta") or {}).get("model_type")
        return write_adapters_bottleneck(adapter, path, model_type)

    # -- model ----------------------------------------------------------------------------------

    def _locations(self, model: Any) -> dict[str, Any]:
        """Location path -> :class:`layers.Location` for every place an adapter can go."""
        from . import layers

        base = getattr(model, "base_model", model)
        locations = layers.find_locations(base)
        if not locations:
            raise IncompatibleBaseModelError(
                f"{type(model).__name__}: no place for bottleneck adapters: neither BERT-like residual "
                "sub-layers (…layer.N.output with dense, dropout and LayerNorm) nor pre-norm decoder blocks "
                "(GPT-2 ln_1/attn/ln_2/mlp, Llama input_layernorm/self_attn/post_attention_layernorm/mlp)",
                hint="bottleneck adapters are supported on BERT-family encoders, GPT-2 and Llama-family decoders")
        return {loc.path: loc for loc in locations}

    def _plan(self, model: Any, config: dict) -> list[tuple[str, Any, int, int]]:
        """(path, location, hidden, down) for every location this config puts an adapter."""
        from . import layers

        leave_out = {int(i) for i in config.get("leave_out") or []}
        plan = []
        for path, loc in self._locations(model).items():
            if loc.idx in leave_out:
                continue
            if (loc.where == "mh" and not config["mh_adapter"]) or (loc.where == "output" and not config["output_adapter"]):
                continue
            plan.append((path, loc, loc.hidden, layers.down_size(loc.hidden, config, loc.idx)))
        return plan

    def _build(self, model: Any, adapter: AdapterFiles) -> dict[str, Any]:
        """Adapter modules keyed by location path (not yet attached) and their expected state keys."""
        from . import layers

        built = {}
        plan = self._plan(model, adapter.config)
        shared = None
        if adapter.config["phm_layer"]:
            from . import phm

            why = phm.check_phm_config(adapter.config, [s for _p, _l, h, d in plan for s in (h, d)])
            if why:
                raise IncompatibleBaseModelError(
                    f"{adapter.source or 'adapter'}: Compacter (phm_layer) adapter cannot be built: {why}",
                    hint="phm_dim must divide the hidden size and hidden_size // reduction_factor")
            hidden = plan[0][2] if plan else 0
            shared = phm.SharedPHM(adapter.config, hidden)
        for path, _module, hidden, down in plan:
            built[path] = layers.Bottleneck(hidden, down, adapter.config, shared)
        if shared is not None and len(shared.state_dict()):
            built[SHARED_KEY] = shared
        return built

    def check(self, model: Any, adapter: AdapterFiles) -> None:
        check_static_head(model, adapter)
        adapter = replace(adapter, config=normalise_config(adapter.config))
        import torch

        # Built on the meta device: only shapes are compared, and a hostile config (a tiny
        # reduction_factor) cannot make the check itself allocate huge tensors.
        with torch.device("meta"):
            built = self._build(model, adapter)
        expected = {_state_key(p, k): v.shape for p, m in built.items() for k, v in m.state_dict().items()}
        got = {k: tuple(v.shape) for k, v in adapter.state_dict.items()}
        missing = sorted(set(expected) - set(got))
        extra = sorted(set(got) - set(expected))
        if extra:
            raise IncompatibleBaseModelError(
                f"{adapter.source or 'adapter'}: weights for modules this model does not have: {extra[:3]}",
                hint="the adapter was trained for another architecture or config")
        if missing:
            raise IncompatibleBaseModelError(
                f"{adapter.source or 'adapter'}: weights missing for {missing[:3]}",
                hint="the file does not match its adapter_config.json (reduction_factor, leave_out, mh_adapter?)")
        for key, shape in expected.items():
            if tuple(shape) != got[key]:
                raise IncompatibleBaseModelError(
                    f"{adapter.source or 'adapter'}: {key} has shape {list(got[key])}, "
                    f"the model needs {list(shape)}", hint="the adapter was trained on a base with another hidden size")

    def _attach(self, model: Any, name: str, config: dict, built: dict) -> None:
        from . import layers

        state = _state(model)
        if name in state["adapters"]:
            raise AdapterExistsError(f"bottleneck adapter {name!r} is already loaded on this model")
        locations = self._locations(model)
        ref = next(model.parameters())
        built = dict(built)
        shared = built.pop(SHARED_KEY, None)
        if shared is not None:
            # A child of the base model (as adapters keeps it: base_model.shared_parameters[<name>]) so
            # that model.parameters(), .to() and optimizers see it; the PHM layers read it from there.
            import torch

            base = getattr(model, "base_model", model)
            if not isinstance(base._modules.get(SHARED_KEY), torch.nn.ModuleDict):
                base.add_module(SHARED_KEY, torch.nn.ModuleDict())
            base._modules[SHARED_KEY][name] = shared.to(device=ref.device, dtype=ref.dtype)
        for path, adapter_module in built.items():
            target = layers.install(locations[path])
            target.adapters[name] = adapter_module.to(device=ref.device, dtype=ref.dtype)
        state["adapters"][name] = {"config": config, "paths": list(built), "meta": None, "shared": shared}
        state["containers"] = None
        model.train(model.training)  # new modules follow the model's train/eval mode

    def apply(self, model: Any, name: str, adapter: AdapterFiles) -> None:
        config = normalise_config(adapter.config)
        adapter = replace(adapter, config=config)
        self.check(model, adapter)
        built = self._build(model, adapter)
        for path, module in built.items():
            prefix = _state_key(path, "")
            module.load_state_dict({k[len(prefix):]: v for k, v in adapter.state_dict.items() if k.startswith(prefix)})
        self._attach(model, name, config, built)
        _state(model)["adapters"][name]["meta"] = adapter.extras.get("adapters_meta")
        self._set_requires_grad(model, name, False)

    def create(self, model: Any, name: str, config: dict[str, Any]) -> AdapterFiles:
        check_options(self.name, config, [*BN_DEFAULTS, "preset", "type"],
                      aliases={"reduction": "reduction_factor", "rf": "reduction_factor", "config": "preset",
                               "architecture": "preset", "activation": "non_linearity"})
        config = normalise_config(config)
        if config.get("init_weights_seed") is not None:
            import torch

            torch.manual_seed(int(config["init_weights_seed"]))
        files = AdapterFiles("bottleneck", config, {}, format="adapters")
        built = self._build(model, files)
        for module in built.values():
            module.init_weights()  # Bottleneck re-inits its PHM layers; SharedPHM its own
        self._attach(model, name, config, built)
        # Training an adapter means a frozen base (the runtime re-enables other trainable adapters).
        model.requires_grad_(False)
        self._set_requires_grad(model, name, True)
        return self.export(model, name)

    def _modules_of(self, model: Any, name: str) -> dict[str, Any]:
        state = _state(model)
        if name not in state["adapters"]:
            raise AdapterNotLoadedError(f"bottleneck adapter {name!r} is not loaded on this model")
        locations = self._locations(model)
        modules = {p: locations[p].container().adapters[name] for p in state["adapters"][name]["paths"]}
        if state["adapters"][name].get("shared") is not None:
            modules[SHARED_KEY] = state["adapters"][name]["shared"]
        return modules

    def _set_requires_grad(self, model: Any, name: str, flag: bool) -> None:
        frozen_rule = not _state(model)["adapters"][name]["config"].get("learn_phm", True)
        for module in self._modules_of(model, name).values():
            for key, p in module.named_parameters():
                # learn_phm=false: Compacter's phm_rule stays fixed while the adapter trains
                p.requires_grad_(flag and not (frozen_rule and key.rsplit(".", 1)[-1].startswith("phm_rule")))

    def loaded_names(self, model: Any) -> set[str]:
        state = _states.get(model)
        return set(state["adapters"]) if state is not None else set()

    def activate_stack(self, model: Any, names: list[str]) -> None:
        self._set_setup(model, ("stack", tuple(names), None, None))

    def activate_average(self, model: Any, names: list[str], weights: list[float]) -> None:
        self._set_setup(model, ("average", tuple(names), tuple(weights), None))

    def activate_rows(self, model: Any, rows: list[str | None]) -> None:
        """Row i through ``rows[i]`` alone (the rows of each adapter are run together)."""
        self._set_setup(model, ("rows", tuple(rows), None, None))

    def activate_batch_split(self, model: Any, names: list[str | None], batch_sizes: list[int]) -> None:
        self.activate_rows(model, [n for n, size in zip(names, batch_sizes, strict=True) for _ in range(size)])

    def _set_setup(self, model: Any, setup: tuple) -> None:
        from . import layers

        state = _states.get(model)
        containers = None if state is None else state.get("containers")
        if containers is None:  # one walk per change of the adapters, not one per batch
            base = getattr(model, "base_model", model)
            containers = [c for loc in layers.find_locations(base) for c in [loc.container()]
                          if c is not None and hasattr(c, layers.SETUP_ATTR)]
            if state is not None:
                state["containers"] = containers
        for container in containers:
            setattr(container, layers.SETUP_ATTR, setup)

    def remove(self, model: Any, name: str) -> None:
        from . import layers

        state = _state(model)
        if name not in state["adapters"]:
            raise AdapterNotLoadedError(f"bottleneck adapter {name!r} is not loaded on this model")
        locations = self._locations(model)
        info = state["adapters"].pop(name)
        state["containers"] = None
        for path in info["paths"]:
            target = locations[path].container()
            del target.adapters[name]
            mode, names, weights, sizes = getattr(target, layers.SETUP_ATTR)
            if name in names:
                keep = [i for i, n in enumerate(names) if n != name]
                if mode == "rows":
                    setattr(target, layers.SETUP_ATTR, (mode, tuple(None if n == name else n for n in names), None, sizes))
                else:
                    setattr(target, layers.SETUP_ATTR, (mode, tuple(names[i] for i in keep),
                                                         tuple(weights[i] for i in keep) if weights else None, None))
            if len(target.adapters) == 0:
                layers.uninstall(locations[path])
        base = getattr(model, "base_model", model)
        shared_dict = base._modules.get(SHARED_KEY)
        if info.get("shared") is not None and shared_dict is not None:
            del shared_dict[name]
            if len(shared_dict) == 0:
                delattr(base, SHARED_KEY)
        if not state["adapters"]:
            _states.drop(model)

    def export(self, model: Any, name: str) -> AdapterFiles:
        info = _state(model)["adapters"].get(name)
        modules = self._modules_of(model, name)
        sd = {_state_key(p, k): v.detach().clone() for p, m in modules.items() for k, v in m.state_dict().items()}
        meta = dict(info.get("meta") or {})
        meta.setdefault("hidden_size", int(getattr(model.config, "hidden_size", 0)) or None)
        meta.setdefault("model_type", getattr(model.config, "model_type", ""))
        meta.setdefault("model_class", type(model).__name__)
        meta.setdefault("model_name", getattr(model.config, "_name_or_path", "") or "")
        meta["name"] = name
        extras: dict[str, Any] = {"adapters_meta": meta, "key_root": "base_model"}
        return AdapterFiles("bottleneck", dict(info["config"]), sd, format="adapters", name=name, extras=extras)

    def parameters(self, model: Any, name: str) -> list[Any]:
        return [p for m in self._modules_of(model, name).values() for p in m.parameters()]

    # -- combining adapters into a new one (add_weighted_adapter: weight averaging, see .weighted) --

    def check_weighted(self, model: Any, request: WeightedRequest) -> None:
        super().check_weighted(model, request)
        from . import weighted

        state = _state(model)["adapters"]
        weighted.check(request, {n: state[n]["config"] for n in request.adapters})

    def weighted_adapter(self, model: Any, request: WeightedRequest, *,
                         progress: Callable[[int, int], None] | None = None) -> AdapterFiles:
        from . import weighted

        files = weighted.build(request, {n: self.export(model, n) for n in dict.fromkeys(request.adapters)}, self.name)
        if progress is not None:
            progress(1, 1)
        return files
