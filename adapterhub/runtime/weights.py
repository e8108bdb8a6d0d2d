"""Reading and writing adapter weight files safely (safetensors by default, pickle only on request)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..errors import AdapterFormatError, PickleRefusedError
from ..fileio import atomic_write_bytes
from ..layout import PICKLE_SUFFIXES


def load_tensors(path: Path, *, allow_pickle: bool = False) -> dict[str, Any]:
    """Load a weights file. Pickle files need ``allow_pickle`` and are read with ``weights_only=True``."""
    path = Path(path)
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        try:
            return load_file(str(path), device="cpu")
        except Exception as exc:  # noqa: BLE001 - safetensors raises several error types
            raise AdapterFormatError(f"{path}: not a readable safetensors file ({exc})") from None
    if path.suffix in PICKLE_SUFFIXES:
        if not allow_pickle:
            raise PickleRefusedError(
                f"{path}: pickled weights refused (pickle files can run code when loaded)",
                hint="convert the adapter to safetensors, or pass allow_pickle=True if you trust its source",
            )
        import torch

        try:
            data = torch.load(str(path), map_location="cpu", weights_only=True)
        except Exception as exc:  # noqa: BLE001
            raise AdapterFormatError(f"{path}: cannot be read with torch.load(weights_only=True) ({exc})") from None
        if not isinstance(data, dict):
            raise AdapterFormatError(f"{path}: expected a dict of tensors, got {type(data).__name__}")
        return data
    raise AdapterFormatError(f"{path}: unknown weights file type {path.suffix!r}")


def find_weights(directory: Path, names: tuple[str, ...]) -> Path:
    """The first of ``names`` present in ``directory`` (safetensors names should come first)."""
    for name in names:
        candidate = Path(directory) / name
        if candidate.is_file():
            return candidate
    raise AdapterFormatError(
        f"{directory}: no weights file found (looked for {', '.join(names)})",
        hint="the adapter directory is incomplete; re-download or re-save it",
    )


def save_tensors(state_dict: dict[str, Any], path: Path, metadata: dict[str, str] | None = None) -> Path:
    """Write ``state_dict`` as safetensors (atomically)."""
    from safetensors.torch import save

    tensors = {k: v.detach().to("cpu").contiguous() for k, v in state_dict.items()}
    return atomic_write_bytes(path, save(tensors, metadata=metadata))


def write_json(path: Path, data: Any, *, sort_keys: bool = True) -> Path:
    """Write JSON like PEFT does (indent 2, sorted keys), atomically."""
    return atomic_write_bytes(path, json.dumps(data, indent=2, sort_keys=sort_keys).encode("utf-8"))
