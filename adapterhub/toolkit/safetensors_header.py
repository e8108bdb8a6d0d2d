"""Reading and checking a safetensors header before any tensor is built from it.

A safetensors file is an 8-byte little-endian header length, a JSON header (``{name: {"dtype",
"shape", "data_offsets": [begin, end]}, "__metadata__": {str: str}}``) and the data buffer. The
``safetensors`` library checks much of this too, but answers with its own errors (or a Rust panic)
that name neither the field nor the tensor. :func:`read_header` checks every field the format
defines and raises an :class:`~adapterhub.errors.AdapterFormatError` that names the file, the
tensor and the field; :func:`check_dtypes` refuses tensor types a method does not allow.

Standard library only; no torch.
"""

from __future__ import annotations

import json
import math
import struct
from collections.abc import Callable, Collection
from pathlib import Path
from typing import Any

from ..errors import AdapterFormatError
from ..plugin.records import describe_dtypes

#: Bytes per element of every safetensors dtype.
DTYPE_SIZES = {
    "BOOL": 1, "U8": 1, "I8": 1, "F8_E4M3": 1, "F8_E5M2": 1, "F8_E8M0": 1,
    "U16": 2, "I16": 2, "F16": 2, "BF16": 2,
    "U32": 4, "I32": 4, "F32": 4,
    "U64": 8, "I64": 8, "F64": 8, "C64": 8,
}
MAX_HEADER = 100_000_000  # the safetensors library's own limit

#: What a reader may be told about dtypes: a set for every tensor, a rule per tensor name, or None (no check).
DtypeRule = Collection[str] | Callable[[str], Collection[str]] | None


def _fail(path: Path, field: str, problem: str) -> AdapterFormatError:
    return AdapterFormatError(f"{path}: safetensors header: {field}: {problem}",
                              hint="the weights file is damaged or was not written by safetensors; re-download or re-save it")


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    seen: dict[str, Any] = {}
    for key, value in pairs:
        if key in seen:
            raise ValueError(f"name {key!r} appears twice")
        seen[key] = value
    return seen


def read_header(path: Path) -> dict[str, dict[str, Any]]:
    """The tensors a safetensors file declares (name -> ``{"dtype", "shape", "data_offsets"}``),
    every field checked against the format and the file's size."""
    path = Path(path)
    size = path.stat().st_size
    with open(path, "rb") as fh:
        prefix = fh.read(8)
        if len(prefix) < 8:
            raise _fail(path, "header length", f"the file has {size} bytes, fewer than the 8 that give the header length")
        (length,) = struct.unpack("<Q", prefix)
        if length > min(MAX_HEADER, size - 8):
            raise _fail(path, "header length", f"{length} bytes, but the file has only {size - 8} after the length")
        raw = fh.read(length)
    try:
        header = json.loads(raw.decode("utf-8"), object_pairs_hook=_no_duplicates)
    except (UnicodeDecodeError, ValueError) as exc:
        raise _fail(path, "header", f"not valid JSON ({exc})") from None
    if not isinstance(header, dict):
        raise _fail(path, "header", f"expected a JSON object, got {type(header).__name__}")
    metadata = header.pop("__metadata__", {})
    if not isinstance(metadata, dict) or not all(isinstance(v, str) for v in metadata.values()):
        raise _fail(path, "__metadata__", "must map names to strings")
    buffer = size - 8 - length
    spans = []
    for name, info in header.items():
        where = f"tensor {name!r}"
        if not isinstance(info, dict):
            raise _fail(path, where, f"expected an object, got {type(info).__name__}")
        dtype, shape, offsets = info.get("dtype"), info.get("shape"), info.get("data_offsets")
        if dtype not in DTYPE_SIZES:
            raise _fail(path, f"{where}.dtype", f"{dtype!r} is not a safetensors dtype")
        if not isinstance(shape, list) or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape):
            raise _fail(path, f"{where}.shape", f"{shape!r} is not a list of sizes")
        if (not isinstance(offsets, list) or len(offsets) != 2
                or not all(isinstance(o, int) and not isinstance(o, bool) and o >= 0 for o in offsets)
                or offsets[0] > offsets[1]):
            raise _fail(path, f"{where}.data_offsets", f"{offsets!r} is not [begin, end]")
        needed = math.prod(shape) * DTYPE_SIZES[dtype]
        if offsets[1] - offsets[0] != needed:
            raise _fail(path, f"{where}.data_offsets", f"{offsets} hold {offsets[1] - offsets[0]} bytes, but shape "
                        f"{shape} of {dtype} needs {needed}")
        if offsets[1] > buffer:
            raise _fail(path, f"{where}.data_offsets", f"{offsets} reach past the data ({buffer} bytes)")
        spans.append((offsets[0], offsets[1], name))
    end = 0
    for begin, stop, name in sorted(spans):
        if begin != end:
            problem = "overlaps the tensor before it" if begin < end else f"leaves bytes {end}..{begin} unused"
            raise _fail(path, f"tensor {name!r}.data_offsets", problem)
        end = stop
    if end != buffer:
        raise _fail(path, "data_offsets", f"the tensors cover {end} of the {buffer} data bytes")
    return header


def allowed_for(dtypes: DtypeRule, name: str) -> Collection[str] | None:
    if dtypes is None:
        return None
    return dtypes(name) if callable(dtypes) else dtypes


def check_dtypes(path: Path, declared: dict[str, str], dtypes: DtypeRule) -> None:
    """Refuse a tensor whose declared type (``declared``: name -> safetensors dtype) ``dtypes`` does not allow."""
    for name, dtype in declared.items():
        allowed = allowed_for(dtypes, name)
        if allowed is not None and dtype not in allowed:
            raise AdapterFormatError(
                f"{path}: tensor {name!r} has dtype {dtype}, but it must be {describe_dtypes(allowed)}",
                hint="the file declares a type the adapter's method cannot use (integers where weights belong?); "
                "re-save the adapter",
            )
