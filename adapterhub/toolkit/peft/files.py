"""PEFT's on-disk form for tuner methods: detecting, reading and saving adapter folders.

PEFT writes ``adapter_config.json`` (with ``peft_type``) and ``adapter_model.safetensors`` whose
keys carry ``base_model.model.`` (PeftModel -> tuner -> transformers model). The canonical form
drops that prefix; tensors of the tuner itself (``base_model.<name>``, state its layers share) travel
in ``extras["tuner_state"]`` under PEFT's own keys. AdapterHub-format LoRA/IA3 folders are converted by :mod:`.adapters_lora`.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ...errors import AdapterFormatError
from ...plugin.records import AdapterFiles, read_adapter_config
from ..adapter_dir import PEFT_WEIGHTS, read_adapter_dir, write_adapter_dir

#: The prefix PEFT's files put on every key (PeftModel -> tuner -> transformers model).
PEFT_PREFIX = "base_model.model."
#: The prefix of tensors PEFT's tuner object holds itself (shared between layers: ``base_model.vera_A``).
TUNER_PREFIX = "base_model."
#: ``AdapterFiles.extras`` key: the state dict's tensors belong to this adapter alone (nothing else
#: holds them), so ``apply`` may make them the adapter's parameters without copying.
OWNED_TENSORS = "owned_tensors"


def strip_peft_prefix(state_dict: dict[str, Any]) -> dict[str, Any]:
    return {(k[len(PEFT_PREFIX):] if k.startswith(PEFT_PREFIX) else k): v for k, v in state_dict.items()}


def jsonable_config(config: dict[str, Any]) -> dict[str, Any]:
    """PEFT's config dict as PEFT writes it: enums as strings, sets as sorted lists."""

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


class PeftFiles:
    """detect/read/save for a PEFT tuner type (mixed into :class:`~.method.PeftTunerMethod`)."""

    name: str
    peft_type: str
    adapters_architecture: str | None
    allowed_dtypes: Callable[[str], frozenset[str]]  # AdapterMethod's

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
            from .adapters_lora import read_adapters_lora

            files = read_adapters_lora(path, config, allow_pickle, dtypes=self.allowed_dtypes)
            files.method = self.name
            return files
        config, tensors, _ = read_adapter_dir(path, PEFT_WEIGHTS, allow_pickle=allow_pickle, dtypes=self.allowed_dtypes)
        # keys outside the model (``base_model.vera_A``) belong to PEFT's tuner object, not to a module
        outside = {k: v for k, v in tensors.items() if k.startswith(TUNER_PREFIX) and not k.startswith(PEFT_PREFIX)}
        inside = strip_peft_prefix({k: v for k, v in tensors.items() if k not in outside})
        # the tensors were just read from the file: nothing else holds them, so they can become the
        # adapter's parameters as they are (PEFT builds its layers empty instead of initialising them)
        extras: dict[str, Any] = {OWNED_TENSORS: True}
        if outside:
            extras["tuner_state"] = outside
        return AdapterFiles(self.name, config, inside, format="peft", source=str(path), extras=extras)

    def save(self, adapter: AdapterFiles, path: Path, *, format: str | None = None) -> list[Path]:
        path = Path(path)
        format = format or "peft"
        if format == "adapters":
            from .adapters_lora import write_adapters_lora

            return write_adapters_lora(adapter, path, adapter.model_type)
        if format != "peft":
            raise AdapterFormatError(f"unknown adapter format {format!r}", hint="use 'peft' or 'adapters'")
        if adapter.format != "peft":
            raise AdapterFormatError(
                f"adapter from {adapter.source} is in the {adapter.format!r} layout; export it from a model first"
            )
        config = jsonable_config(dict(adapter.config))
        config["peft_type"] = self.peft_type
        config["inference_mode"] = True  # PEFT always writes true
        tensors = {PEFT_PREFIX + k: v for k, v in adapter.state_dict.items()}
        tensors.update(adapter.extras.get("tuner_state") or {})
        return write_adapter_dir(path, config, tensors)
