"""Reading and writing the simple adapter folder most methods use: ``adapter_config.json`` plus one
weights file. What ``read``/``save`` of a method share, so a plugin's own code is only its format.

No torch at import time.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..errors import AdapterFormatError
from ..plugin.records import CONFIG_NAME, FLOAT_DTYPES, read_adapter_config
from .safetensors_header import DtypeRule
from .weights import find_weights, load_tensors, save_tensors, write_json

#: PEFT's weight file names, safetensors first.
PEFT_WEIGHTS = ("adapter_model.safetensors", "adapter_model.bin")


def read_adapter_dir(
    path: str | Path, weight_names: tuple[str, ...] = PEFT_WEIGHTS, *, allow_pickle: bool = False,
    dtypes: DtypeRule = FLOAT_DTYPES,
) -> tuple[dict[str, Any], dict[str, Any], Path]:
    """(config, tensors, weights file) of an adapter folder; refuses pickle unless ``allow_pickle``,
    a weights file without tensors, and tensors of a dtype ``dtypes`` does not allow (a method
    passes ``dtypes=self.allowed_dtypes``)."""
    path = Path(path)
    config = read_adapter_config(path)
    weights = find_weights(path, weight_names)
    tensors = load_tensors(weights, allow_pickle=allow_pickle, dtypes=dtypes)
    if not tensors:
        raise AdapterFormatError(f"{weights}: holds no tensors")
    return config, tensors, weights


def write_adapter_dir(
    path: str | Path,
    config: dict[str, Any],
    tensors: dict[str, Any],
    *,
    weights_name: str = PEFT_WEIGHTS[0],
    metadata: dict[str, str] | None = None,
) -> list[Path]:
    """Write ``adapter_config.json`` and a safetensors weights file into ``path`` (created if needed);
    returns the two files."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    weights = save_tensors(tensors, path / weights_name, metadata=metadata or {"format": "pt"})
    return [write_json(path / CONFIG_NAME, config), weights]
