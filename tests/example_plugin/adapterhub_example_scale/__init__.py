"""Example plugin: method "example-scale" multiplies one module's output by a stored vector.

Files: adapter_config.json ``{"example_scale": {"module": "<path>"}}`` and ``scale.safetensors``
holding ``scale``. It uses only adapterhub's public plugin API (``adapterhub.plugin`` and
``adapterhub.toolkit``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from adapterhub.plugin import AdapterFiles, AdapterMethod, IncompatibleBaseModelError, hookimpl, read_adapter_config
from adapterhub.toolkit.model_state import PerModel


@dataclass
class ScaleState:
    adapters: dict[str, AdapterFiles] = field(default_factory=dict)
    hooks: list[Any] = field(default_factory=list)


class ScaleMethod(AdapterMethod):
    name = "example-scale"
    description = "multiply one module's output by a vector (example plugin)"
    trainable = False

    def __init__(self) -> None:
        self.state = PerModel(ScaleState)

    def detect(self, config, files, model=None):
        return "example_scale" in config and "scale.safetensors" in files

    def read(self, path: Path, *, allow_pickle: bool = False) -> AdapterFiles:
        from safetensors.torch import load_file

        config = read_adapter_config(path)
        return AdapterFiles(self.name, config, load_file(str(Path(path) / "scale.safetensors")), source=str(path))

    def save(self, adapter, path, *, format=None):
        from safetensors.torch import save_file

        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        (path / "adapter_config.json").write_text(json.dumps(adapter.config))
        save_file(adapter.state_dict, str(path / "scale.safetensors"))
        return [path / "adapter_config.json", path / "scale.safetensors"]

    def check(self, model, adapter):
        module = adapter.config["example_scale"]["module"]
        try:
            model.get_submodule(module)
        except AttributeError:
            raise IncompatibleBaseModelError(f"module {module!r} not found") from None

    def apply(self, model, name, adapter):
        self.state(model).adapters[name] = adapter

    def loaded_names(self, model):
        return set(self.state(model).adapters)

    def reset_activation(self, model):
        hooks = self.state(model).hooks
        while hooks:
            hooks.pop().remove()

    def activate_stack(self, model, names):
        state = self.state(model)
        for name in names:
            adapter = state.adapters[name]
            module = model.get_submodule(adapter.config["example_scale"]["module"])
            scale = adapter.state_dict["scale"]
            state.hooks.append(module.register_forward_hook(lambda _m, _i, out, s=scale: out * s))

    def remove(self, model, name):
        self.reset_activation(model)
        self.state(model).adapters.pop(name)

    def export(self, model, name):
        return self.state(model).adapters[name]


@hookimpl
def register_methods(register):
    register(ScaleMethod())
