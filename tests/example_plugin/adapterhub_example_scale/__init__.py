"""Example plugin: method "example-scale" multiplies one module's output by a learned vector.

Files: adapter_config.json ``{"example_scale": {"module": "<path>"}}`` and ``scale.safetensors``
holding ``scale``. It uses only adapterhub's public plugin API.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from adapterhub import AdapterFiles, AdapterMethod, hookimpl
from adapterhub.errors import CompositionError, IncompatibleBaseModelError
from adapterhub.methods import read_adapter_config


class ScaleMethod(AdapterMethod):
    name = "example-scale"
    description = "multiply one module's output by a vector (example plugin)"
    trainable = False

    def __init__(self) -> None:
        self.hooks: dict[tuple[int, str], Any] = {}
        self.scales: dict[tuple[int, str], Any] = {}

    def detect(self, config, files, model=None):
        return "example_scale" in config and "scale.safetensors" in files

    def read(self, path: Path, *, allow_pickle: bool = False) -> AdapterFiles:
        from safetensors.torch import load_file

        config = read_adapter_config(path)
        return AdapterFiles(self.name, config, load_file(str(Path(path) / "scale.safetensors")), source=str(path))

    def save(self, adapter, path, *, format="peft"):
        import json

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
        self.scales[(id(model), name)] = (adapter.config["example_scale"]["module"], adapter.state_dict["scale"], adapter)

    def set_active(self, model, names, *, combine="stack", weights=None, batch_sizes=None):
        if combine != "stack":
            raise CompositionError(f"method {self.name!r} supports Stack only")
        for key in [k for k in self.hooks if k[0] == id(model)]:
            self.hooks.pop(key).remove()
        for name in names:
            module, scale, _ = self.scales[(id(model), name)]
            self.hooks[(id(model), name)] = model.get_submodule(module).register_forward_hook(
                lambda _m, _i, out, s=scale: out * s
            )

    def remove(self, model, name):
        hook = self.hooks.pop((id(model), name), None)
        if hook is not None:
            hook.remove()
        self.scales.pop((id(model), name), None)

    def export(self, model, name):
        return self.scales[(id(model), name)][2]


@hookimpl
def register_methods(register):
    register(ScaleMethod())
