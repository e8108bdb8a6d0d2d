"""The typed records that cross the plugin contract, and the constants of adapter files.

:class:`AdapterFiles` (an adapter in its method's canonical form), :class:`MergeSite` and
:class:`ParamUpdate` (a streamed merge's view of one base parameter, and one adapter's change to
it); the tensor types adapter files may hold; :func:`read_adapter_config`. The contract itself
(:class:`~adapterhub.plugin.contract.AdapterMethod`) is in :mod:`.contract`.

This module must not import torch.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import KW_ONLY, dataclass, field
from pathlib import Path
from typing import Any

from ..errors import AdapterFormatError

CONFIG_NAME = "adapter_config.json"

#: The combine modes the runtime passes to :meth:`AdapterMethod.set_active`.
COMBINE_MODES = ("stack", "average", "batch_split")

#: The name that stands for "no adapter" on a row of ``am(..., adapter_names=[...])`` (PEFT's spelling).
#: Methods never see it: :meth:`AdapterMethod.set_rows` receives None for such rows.
BASE_ROW = "__base__"

#: Floating-point tensor types (safetensors' names): what adapter weights are.
FLOAT_DTYPES = frozenset({"F16", "BF16", "F32", "F64"})
#: bitsandbytes' quantised layouts (packed 4-bit and int8 weights), which QLoRA files may also hold.
QUANTIZED_DTYPES = frozenset({"U8", "I8"})
#: ``str(torch_dtype)`` -> safetensors' name, so that dtypes are checked without importing torch.
TORCH_DTYPE_NAMES = {
    "torch.float16": "F16", "torch.bfloat16": "BF16", "torch.float32": "F32", "torch.float64": "F64",
    "torch.uint8": "U8", "torch.int8": "I8", "torch.int16": "I16", "torch.int32": "I32", "torch.int64": "I64",
    "torch.uint16": "U16", "torch.uint32": "U32", "torch.uint64": "U64", "torch.bool": "BOOL",
    "torch.float8_e4m3fn": "F8_E4M3", "torch.float8_e5m2": "F8_E5M2", "torch.complex64": "C64",
}


def dtype_name(tensor: Any) -> str:
    """safetensors' name of a tensor's dtype (``F32``); torch's own spelling if it has none."""
    return TORCH_DTYPE_NAMES.get(str(tensor.dtype), str(tensor.dtype))


def describe_dtypes(dtypes: Any) -> str:
    names = sorted(dtypes)
    if set(names) == FLOAT_DTYPES:
        return "floating point (" + ", ".join(names) + ")"
    return ", ".join(names)


@dataclass
class AdapterFiles:
    """An adapter as read from disk (or exported from a model), in its method's canonical form.

    ``config`` and ``state_dict`` are method-defined. The built-ins keep PEFT's config keys and
    PEFT's key naming without the ``base_model.model.`` prefix (module path relative to the model
    handed to ``apply``), so a method's ``read`` converts other formats into that form. Everything
    after ``state_dict`` is keyword-only.

    The typed fields are the ones the runtime reads or fills in:

    * ``head``: the adapter's own prediction head (``head_config.json``'s config plus its tensors
      under ``"state_dict"``), built and routed by the runtime; None when it has none;
    * ``static_head``: a head the adapter saved that must equal the model's own (``adapters``
      saves GPT-2's ``lm_head``); the method checks it, nothing is loaded from it;
    * ``name``, ``model_type``, ``hidden_size``, ``num_layers``: what a format that records them
      (AdapterHub's) writes or needs (its ``leave_out`` lists the layers *without* the adapter, so
      a writer must know how many there are); the runtime fills them in before ``save``.

    ``extras`` is for method-private data that travels from ``read`` to ``apply`` or ``save``.
    """

    method: str
    config: dict[str, Any]
    state_dict: dict[str, Any]  # name -> torch.Tensor
    _: KW_ONLY
    format: str = "peft"  # the on-disk format it came from: "peft" or "adapters"
    source: str | None = None  # where it came from, for messages
    head: dict[str, Any] | None = None
    static_head: dict[str, Any] | None = None
    name: str | None = None
    model_type: str | None = None
    hidden_size: int | None = None
    num_layers: int | None = None
    extras: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class MergeSite:
    """One base parameter as a streamed merge (``adapterhub export``) sees it: no model, one tensor.

    * ``name``: the parameter's name in the adapter's key space (relative to the model the adapter
      is applied to, as in :attr:`AdapterFiles.state_dict`: ``"transformer.h.0.attn.c_attn.weight"``);
    * ``layer_type``: class name of the module holding it in the base architecture (``"Linear"``,
      ``"Conv1D"``, ``"Embedding"``, ...), ``""`` when the architecture is unknown;
    * ``base``: its value in the base checkpoint, float32, before any adapter of this export was
      merged (DoRA's weight norm is taken on it). Read-only.
    """

    name: str
    layer_type: str
    base: Any  # torch.Tensor


@dataclass(frozen=True)
class ParamUpdate:
    """How merging one adapter changes one base parameter, computed from the adapter alone
    (returned by :meth:`AdapterMethod.merge_updates`).

    * ``apply(current, site)``: ``current`` is the parameter's value in float32 (the base with the
      adapters merged before this one), which it may modify in place; it returns the new float32
      value, same shape. ``site`` is the :class:`MergeSite`. The caller rounds to the output dtype
      once, after every update of the parameter.
    * ``check(shape, layer_type)``: called before anything is written with the checkpoint's shape
      of the parameter and its layer type; returns why the update cannot apply (naming the shapes),
      or None. None: no check.
    * ``replaces``: the update discards the current value (a saved full copy of the parameter, such
      as PEFT's ``modules_to_save``); no other update, of any adapter, may then touch the parameter.
    * ``optional``: skipped when the checkpoint has no such parameter (IA3 scales a bias only where
      the layer has one); otherwise a missing parameter is an error before anything is written.
    """

    param: str
    apply: Callable[[Any, MergeSite], Any]
    check: Callable[[tuple[int, ...], str], str | None] | None = None
    replaces: bool = False
    optional: bool = False


def read_adapter_config(path: str | Path) -> dict[str, Any]:
    """Parse ``<path>/adapter_config.json`` with errors that name the file and the fix."""
    path = Path(path)
    config_path = path / CONFIG_NAME
    if not path.is_dir():
        raise AdapterFormatError(f"{path}: not a directory")
    if not config_path.is_file():
        raise AdapterFormatError(
            f"{config_path}: missing",
            hint="an adapter directory needs adapter_config.json (PEFT and AdapterHub formats both write it)",
        )
    try:
        config = json.loads(config_path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise AdapterFormatError(f"{config_path}: not valid JSON ({exc})") from None
    if not isinstance(config, dict):
        raise AdapterFormatError(f"{config_path}: expected a JSON object, got {type(config).__name__}")
    if "peft_type" not in config and "config" in config:  # AdapterHub's layout: its own fields are typed
        for key, types, kind in _ADAPTERS_FIELDS:
            value = config.get(key)
            if value is not None and (not isinstance(value, types) or isinstance(value, bool)):
                raise AdapterFormatError(f"{config_path}: {key}: expected {kind}, got {json.dumps(value)[:60]}",
                                         hint="the AdapterHub-format config is damaged; re-download or re-save it")
    return config


#: The top-level fields of AdapterHub's adapter_config.json, with their JSON types (each may be null).
_ADAPTERS_FIELDS = (
    ("config", dict, "an object"), ("name", str, "a string"), ("hidden_size", int, "an integer"),
    ("model_type", str, "a string"), ("model_class", str, "a string"), ("model_name", str, "a string"),
    ("version", str, "a string"),
)
