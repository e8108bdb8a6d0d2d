"""The base checkpoint of an export: where it is, which tensors it holds (from the safetensors
headers alone), and its architecture's skeleton (layer types, tied parameters) without its weights.

* :func:`open_base` takes a local folder or a Hub repo id (fetched and verified by
  :mod:`adapterhub.client.checkpoint`) and reads ``config.json`` and every shard's header: names,
  dtypes, shapes and byte offsets, so the output can be planned before a single tensor is read.
* :func:`skeleton` builds the architecture named by ``config.json`` on torch's ``meta`` device
  (no memory, no weights) to learn each parameter's layer class (``Conv1D`` stores ``[in, out]``),
  which parameters the architecture ties together (GPT-2's ``lm_head`` is its ``wte``), and its
  ``base_model_prefix``. An architecture transformers does not know gives an empty skeleton: layer
  types then come from the adapters' configs and nothing is treated as tied.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ...errors import AdapterHubError, IncompatibleBaseModelError, UsageError
from ...settings import Settings

SAFE_WEIGHTS = "model.safetensors"
SAFE_INDEX = "model.safetensors.index.json"
#: Top-level files copied from the base beside the weights (tokenizer, processor and chat template).
COPIED_FILES = (
    "generation_config.json", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
    "added_tokens.json", "vocab.json", "vocab.txt", "merges.txt", "tokenizer.model", "spiece.model",
    "sentencepiece.bpe.model", "chat_template.jinja", "chat_template.json", "preprocessor_config.json",
    "processor_config.json",
)
_MAX_HEADER = 100 * 1024 * 1024  # safetensors' own limit on a header


@dataclass(frozen=True)
class TensorEntry:
    """One tensor of the base, from its shard's header (``dtype`` in safetensors' spelling: ``BF16``)."""

    name: str
    shard: str
    dtype: str
    shape: tuple[int, ...]
    offset: int  # start of its bytes in the shard's data section
    nbytes: int


@dataclass
class BaseCheckpoint:
    """A safetensors checkpoint folder, its config and every tensor, in file order."""

    path: Path
    config: dict[str, Any]
    tensors: dict[str, TensorEntry]
    repo_id: str | None = None
    commit: str | None = None
    sharded: bool = False

    @property
    def label(self) -> str:
        if self.repo_id:
            return f"{self.repo_id}@{self.commit[:12]}" if self.commit else self.repo_id
        return str(self.path)

    @property
    def largest_shard(self) -> int:
        sizes: dict[str, int] = {}
        for t in self.tensors.values():
            sizes[t.shard] = sizes.get(t.shard, 0) + t.nbytes
        return max(sizes.values(), default=0)


@dataclass(frozen=True)
class Skeleton:
    """What the architecture says about its parameters (see the module docstring)."""

    architecture: str | None
    layer_types: dict[str, str] = field(default_factory=dict)  # parameter -> class of the module holding it
    tied: tuple[tuple[str, ...], ...] = ()  # groups of parameter names that are one tensor
    prefix: str = ""  # base_model_prefix ("transformer", "model")
    note: str | None = None  # why it is empty, when it is


def wanted_file(path: str) -> bool:
    """Whether a file of a Hub repo belongs in the export's copy of the base."""
    return "/" not in path and (path.endswith(".safetensors") or path in (SAFE_INDEX, "config.json", *COPIED_FILES))


def open_base(base: str | Path, settings: Settings) -> BaseCheckpoint:
    """The checkpoint at ``base``: an existing folder, else a Hub repo id (``org/name[@revision]``)."""
    text = str(base)
    local = Path(text).expanduser()
    if isinstance(base, Path) or local.is_dir():
        if not local.is_dir():
            raise UsageError(f"--base {text}: no such folder")
        return _read(local.resolve(), None, None)
    repo_id, _, revision = text.removeprefix("hf://").partition("@")
    if repo_id.count("/") != 1:
        raise UsageError(f"--base {text!r}: neither a folder nor a Hub repo id (org/name[@revision])")
    from ...client.checkpoint import fetch_checkpoint

    snapshot = fetch_checkpoint(settings, repo_id, revision or None, wanted_file)
    return _read(snapshot.path, repo_id, snapshot.commit)


def _read(path: Path, repo_id: str | None, commit: str | None) -> BaseCheckpoint:
    config_path = path / "config.json"
    if not config_path.is_file():
        raise IncompatibleBaseModelError(f"{path}: no config.json; --base must be a transformers checkpoint folder")
    try:
        config = json.loads(config_path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise IncompatibleBaseModelError(f"{config_path}: not valid JSON ({exc})") from None
    quantization = config.get("quantization_config")
    if quantization:
        method = quantization.get("quant_method", "?") if isinstance(quantization, dict) else "?"
        raise IncompatibleBaseModelError(
            f"{path}: the base is quantized ({method}); export merges into full-precision weights",
            hint="give the full-precision base (the one the quantized copy was made from): a QLoRA exports onto it",
        )
    if (path / SAFE_INDEX).is_file():
        shards = _index_shards(path)
        sharded = True
    elif (path / SAFE_WEIGHTS).is_file():
        shards, sharded = [SAFE_WEIGHTS], False
    else:
        pickles = sorted(p.name for p in path.glob("*.bin")) + sorted(p.name for p in path.glob("*.pt"))
        raise IncompatibleBaseModelError(
            f"{path}: no {SAFE_WEIGHTS} or {SAFE_INDEX}" + (f" (it has pickled weights: {pickles[:3]})" if pickles else ""),
            hint="export reads safetensors checkpoints; convert the base (transformers: "
            "save_pretrained(..., safe_serialization=True))",
        )
    tensors: dict[str, TensorEntry] = {}
    for shard in shards:
        for entry in read_header(path / shard):
            if entry.name in tensors:
                raise IncompatibleBaseModelError(f"{path}: tensor {entry.name} is in both {tensors[entry.name].shard} "
                                                 f"and {shard}")
            tensors[entry.name] = entry
    return BaseCheckpoint(path, config, tensors, repo_id, commit, sharded)


def _index_shards(path: Path) -> list[str]:
    index_path = path / SAFE_INDEX
    try:
        weight_map = json.loads(index_path.read_text(encoding="utf-8"))["weight_map"]
    except (UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError) as exc:
        raise IncompatibleBaseModelError(f"{index_path}: not a safetensors index ({exc})") from None
    shards: list[str] = []
    for name in weight_map.values():
        if not isinstance(name, str) or "/" in name or "\\" in name or name.startswith(".") or not name.endswith(
                ".safetensors"):
            raise IncompatibleBaseModelError(f"{index_path}: shard name {name!r} is not a file name in this folder")
        if name not in shards:
            shards.append(name)
    missing = [s for s in shards if not (path / s).is_file()]
    if missing:
        raise IncompatibleBaseModelError(f"{index_path}: names shards that are not there: {missing[:3]}")
    return sorted(shards)


def read_header(shard: Path) -> list[TensorEntry]:
    """The tensors of one safetensors file, in the order of their bytes (only the header is read)."""
    with open(shard, "rb") as fh:
        raw = fh.read(8)
        size = struct.unpack("<Q", raw)[0] if len(raw) == 8 else -1
        if not 0 < size <= _MAX_HEADER:
            raise IncompatibleBaseModelError(f"{shard}: not a safetensors file (bad header length)")
        try:
            header = json.loads(fh.read(size))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise IncompatibleBaseModelError(f"{shard}: unreadable safetensors header ({exc})") from None
    entries = []
    for name, info in header.items():
        if name == "__metadata__":
            continue
        start, end = info["data_offsets"]
        entries.append(TensorEntry(name, shard.name, info["dtype"], tuple(int(d) for d in info["shape"]),
                                   int(start), int(end) - int(start)))
    return sorted(entries, key=lambda e: e.offset)


def skeleton(config: dict[str, Any], path: Path) -> Skeleton:
    """The architecture of ``config`` built on the meta device (see the module docstring)."""
    architectures = config.get("architectures") or []
    name = architectures[0] if architectures else None
    try:
        import torch
        import transformers

        model_config = transformers.AutoConfig.from_pretrained(str(path), trust_remote_code=False)
        cls = getattr(transformers, name, None) if name else None
        with torch.device("meta"):
            model = cls(model_config) if cls is not None else transformers.AutoModel.from_config(model_config)
    except (AdapterHubError, KeyboardInterrupt):
        raise
    except Exception as exc:  # noqa: BLE001 - any failure only means the architecture stays unknown
        return Skeleton(name, note=f"architecture {name or config.get('model_type')!r} could not be built by "
                        f"transformers ({type(exc).__name__}: {exc}); layer types come from the adapter configs")
    layer_types: dict[str, str] = {}
    for module_name, module in model.named_modules(remove_duplicate=False):
        for pname, _ in module.named_parameters(recurse=False, remove_duplicate=False):
            layer_types[f"{module_name}.{pname}" if module_name else pname] = type(module).__name__
    groups: dict[int, list[str]] = {}
    for pname, param in model.named_parameters(remove_duplicate=False):
        groups.setdefault(id(param), []).append(pname)
    tied = tuple(tuple(g) for g in groups.values() if len(g) > 1)
    return Skeleton(type(model).__name__, layer_types, tied, getattr(model, "base_model_prefix", "") or "")
