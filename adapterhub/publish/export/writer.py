"""Writing the exported checkpoint: safetensors shards streamed one tensor at a time, their index,
and the folder that appears only when it is complete.

A safetensors file is an 8-byte header length, a JSON header (each tensor's dtype, shape and byte
range) and the tensors' bytes back to back. Every shape and dtype is known before the first tensor
is read (merging changes neither), so :class:`ShardFile` writes the header first and then each
tensor's bytes as it arrives: a shard is never held in memory. (safetensors' own ``save_file``
takes a dict of every tensor of the file and copies each into bytes.) Shards are planned as
``save_pretrained`` plans them: in order, each up to ``max_shard_size``, named
``model-00001-of-0000N.safetensors`` with ``model.safetensors.index.json``, or ``model.safetensors``
when one is enough.

:func:`staging` is the folder: everything is written into a hidden sibling of the output, which is
renamed into place only at the very end; on any error, Ctrl-C included, it is removed. The output
path therefore holds either nothing or a complete checkpoint.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import struct
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ...errors import UsageError

ELEMENT_SIZE = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "I16": 2, "I8": 1, "U8": 1,
                "BOOL": 1, "F8_E4M3": 1, "F8_E5M2": 1, "U16": 2, "U32": 4, "U64": 8}
_TORCH_NAMES = {"F64": "float64", "F32": "float32", "F16": "float16", "BF16": "bfloat16", "I64": "int64",
                "I32": "int32", "I16": "int16", "I8": "int8", "U8": "uint8", "BOOL": "bool",
                "F8_E4M3": "float8_e4m3fn", "F8_E5M2": "float8_e5m2", "U16": "uint16", "U32": "uint32",
                "U64": "uint64"}
INDEX_NAME = "model.safetensors.index.json"
SINGLE_NAME = "model.safetensors"


def torch_dtype(name: str) -> Any:
    """The torch dtype of a safetensors dtype name (``BF16`` -> ``torch.bfloat16``)."""
    import torch

    return getattr(torch, _TORCH_NAMES[name])


def parse_size(text: str | int) -> int:
    """``"2GB"`` -> 2_000_000_000, ``"300MiB"`` -> 314_572_800 (transformers' ``max_shard_size`` units)."""
    if isinstance(text, int):
        return text
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([KMGT]i?B|B)?\s*", str(text), flags=re.IGNORECASE)
    if not match or float(match[1]) <= 0:
        raise UsageError(f"--max-shard-size {text!r}: expected a size such as 2GB, 500MB or 1GiB")
    unit = (match[2] or "B").upper()
    power = {"B": 0, "K": 1, "M": 2, "G": 3, "T": 4}[unit[0]]
    factor = (1024 if "I" in unit else 1000) ** power
    return int(float(match[1]) * factor)


@dataclass(frozen=True)
class OutTensor:
    name: str
    dtype: str
    shape: tuple[int, ...]

    @property
    def nbytes(self) -> int:
        count = 1
        for dim in self.shape:
            count *= dim
        return count * ELEMENT_SIZE[self.dtype]


@dataclass(frozen=True)
class OutShard:
    file: str
    tensors: tuple[OutTensor, ...]

    @property
    def nbytes(self) -> int:
        return sum(t.nbytes for t in self.tensors)


def plan_shards(tensors: list[OutTensor], max_bytes: int) -> list[OutShard]:
    """Consecutive groups of at most ``max_bytes`` (a larger tensor gets a shard of its own)."""
    groups: list[list[OutTensor]] = [[]]
    size = 0
    for tensor in tensors:
        if groups[-1] and size + tensor.nbytes > max_bytes:
            groups.append([])
            size = 0
        groups[-1].append(tensor)
        size += tensor.nbytes
    if len(groups) == 1:
        return [OutShard(SINGLE_NAME, tuple(groups[0]))]
    n = len(groups)
    return [OutShard(f"model-{i:05d}-of-{n:05d}.safetensors", tuple(g)) for i, g in enumerate(groups, 1)]


class ShardFile:
    """One output shard, written header first, then each planned tensor in order (see the module docstring)."""

    def __init__(self, folder: Path, shard: OutShard) -> None:
        self.shard = shard
        self.path = folder / shard.file
        header: dict[str, Any] = {"__metadata__": {"format": "pt"}}
        offset = 0
        for t in shard.tensors:
            header[t.name] = {"dtype": t.dtype, "shape": list(t.shape), "data_offsets": [offset, offset + t.nbytes]}
            offset += t.nbytes
        raw = json.dumps(header, separators=(",", ":")).encode("utf-8")
        raw += b" " * (-len(raw) % 8)  # the data section starts 8-byte aligned, as safetensors writes it
        self._next = 0
        self._fh = open(self.path, "wb")  # noqa: SIM115 - closed by finish() or close()
        self._fh.write(struct.pack("<Q", len(raw)))
        self._fh.write(raw)

    def write(self, name: str, tensor: Any) -> None:
        expected = self.shard.tensors[self._next]
        if name != expected.name or tuple(tensor.shape) != expected.shape or tensor.dtype != torch_dtype(expected.dtype):
            raise RuntimeError(f"{self.path.name}: got {name} {tuple(tensor.shape)} {tensor.dtype}, planned "
                               f"{expected.name} {expected.shape} {expected.dtype}")
        if tensor.numel():
            self._fh.write(tensor.contiguous().reshape(-1).view(_byte_dtype()).numpy().data)
        self._next += 1

    def finish(self) -> None:
        if self._next != len(self.shard.tensors):
            raise RuntimeError(f"{self.path.name}: {len(self.shard.tensors) - self._next} planned tensors not written")
        self._fh.flush()
        os.fsync(self._fh.fileno())
        self._fh.close()

    def close(self) -> None:
        self._fh.close()


def _byte_dtype() -> Any:
    import torch

    return torch.uint8


def write_index(folder: Path, shards: list[OutShard]) -> Path | None:
    """``model.safetensors.index.json`` for several shards (None for one), as transformers writes it."""
    if len(shards) == 1:
        return None
    index = {"metadata": {"total_size": sum(s.nbytes for s in shards)},
             "weight_map": {t.name: s.file for s in shards for t in s.tensors}}
    path = folder / INDEX_NAME
    path.write_text(json.dumps(index, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return path


def check_output(out: Path) -> None:
    """``out`` must not exist yet, or be an empty folder: an export never overwrites anything."""
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise UsageError(f"--out {out}: already exists and is not an empty folder",
                         hint="choose a new folder, or remove this one first")


@contextlib.contextmanager
def staging(out: Path) -> Iterator[Path]:
    """A hidden folder beside ``out`` to write into; the caller renames it with :func:`publish`.
    Removed when the block ends without that, by an exception or a KeyboardInterrupt included."""
    out.parent.mkdir(parents=True, exist_ok=True)
    folder = out.parent / f".{out.name}.partial-{uuid.uuid4().hex[:12]}"
    folder.mkdir()
    try:
        yield folder
    finally:
        if folder.exists():  # not published: an error, an interrupt, or a body that stopped early
            shutil.rmtree(folder, ignore_errors=True)


def publish(folder: Path, out: Path) -> None:
    """Move the finished staging folder to ``out`` in one rename (an empty ``out`` is replaced)."""
    check_output(out)
    if out.is_dir():
        out.rmdir()
    dir_fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(dir_fd)  # the folder's entries are on disk before the rename makes them visible
    finally:
        os.close(dir_fd)
    os.rename(folder, out)
