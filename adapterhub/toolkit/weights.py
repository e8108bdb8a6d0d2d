"""Tensor files, safely: the one pickle policy, and the one safetensors and JSON writer of adapter files.

* :func:`load_tensors` reads safetensors; a pickle file (``.bin``, ``.pt``, ... see
  :data:`adapterhub.layout.PICKLE_SUFFIXES`) raises :class:`~adapterhub.errors.PickleRefusedError`
  unless ``allow_pickle``, and is then read with ``torch.load(weights_only=True)``. Every malformed
  file is an :class:`~adapterhub.errors.AdapterFormatError` naming the file and the field (the
  safetensors header is checked first, :mod:`.safetensors_header`), and so is a tensor whose dtype
  the reader's ``dtypes`` does not allow (floating point unless told otherwise: a method passes
  its :meth:`~adapterhub.plugin.AdapterMethod.allowed_dtypes`).
* :func:`save_tensors` writes safetensors atomically (aliased tensors get their own copy, which
  safetensors requires); :func:`write_json` writes a config the way PEFT and ``adapters`` do
  (indent 2, sorted keys, no trailing newline), atomically.

No torch at import time.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..errors import AdapterFormatError, PickleRefusedError
from ..fileio import atomic_write_bytes
from ..layout import PICKLE_SUFFIXES
from ..plugin.records import FLOAT_DTYPES, dtype_name
from .safetensors_header import DtypeRule, check_dtypes, read_header


def unpickling_refusal(exc: BaseException) -> str:
    """Why ``torch.load(weights_only=True)`` refused a file, without torch's advice to load it with
    ``weights_only=False`` (which would run whatever code the file holds): adapterhub never relays it."""
    import re

    text = str(exc)
    found = re.search(r"Unsupported global: GLOBAL ([\w.]+)", text)
    if found:
        return f"it holds Python objects, not only tensors (it needs {found.group(1)} to be rebuilt)"
    if "weights_only" in text or "Weights only load failed" in text:
        return "it holds Python objects, not only tensors"
    return text.splitlines()[0] if text else type(exc).__name__


def load_tensors(path: Path, *, allow_pickle: bool = False, dtypes: DtypeRule = FLOAT_DTYPES) -> dict[str, Any]:
    """Load a weights file whose tensors all have a dtype ``dtypes`` allows (a set, or a rule per
    tensor name; None: any). Pickle files need ``allow_pickle`` and are read with ``weights_only=True``."""
    path = Path(path)
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        header = read_header(path)
        check_dtypes(path, {name: info["dtype"] for name, info in header.items()}, dtypes)
        try:
            return load_file(str(path), device="cpu")
        except (KeyboardInterrupt, SystemExit):
            raise
        except BaseException as exc:  # noqa: BLE001 - safetensors raises its own errors, and Rust panics
            raise AdapterFormatError(f"{path}: not a readable safetensors file ({type(exc).__name__}: {exc})") from None
    if path.suffix in PICKLE_SUFFIXES:
        if not allow_pickle:
            raise PickleRefusedError(
                f"{path}: pickled weights refused (pickle files can run code when loaded)",
                hint="convert the adapter to safetensors (`adapterhub convert DIR --to-safetensors`), or pass "
                "allow_pickle=True if you trust its source; it is then read with torch.load(weights_only=True)",
            )
        import torch

        try:
            data = torch.load(str(path), map_location="cpu", weights_only=True)
        except Exception as exc:  # noqa: BLE001 - any unpickling failure is a format error
            raise AdapterFormatError(
                f"{path}: cannot be read with torch.load(weights_only=True): {unpickling_refusal(exc)}",
                hint="an adapter's weights are a dict of tensors; this file is something else") from None
        if not isinstance(data, dict) or not all(isinstance(k, str) and isinstance(v, torch.Tensor)
                                                 for k, v in data.items()):
            raise AdapterFormatError(f"{path}: expected a dict of named tensors, got {type(data).__name__}")
        check_dtypes(path, {name: dtype_name(tensor) for name, tensor in data.items()}, dtypes)
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
    """Write ``state_dict`` as safetensors (atomically). Tensors sharing storage are copied apart."""
    from safetensors.torch import save

    tensors: dict[str, Any] = {}
    seen: set[int] = set()
    for key, value in state_dict.items():
        value = value.detach().to("cpu").contiguous()
        pointer = value.untyped_storage().data_ptr()
        if pointer in seen and value.numel():
            value = value.clone()
        seen.add(pointer)
        tensors[key] = value
    return atomic_write_bytes(path, save(tensors, metadata=metadata or {"format": "pt"}))


def write_json(path: Path, data: Any, *, sort_keys: bool = True) -> Path:
    """Write a config as PEFT and ``adapters`` do (indent 2, sorted keys), atomically."""
    return atomic_write_bytes(path, json.dumps(data, indent=2, sort_keys=sort_keys).encode("utf-8"))
