"""Bottleneck adapters in AdapterHub's format: ``<module>.adapters.<name>.<param>`` keys (and
Compacter's ``shared_parameters.<name>.<param>``) to and from the canonical
``<module>.adapters.<param>`` form, keys relative to the bare base model."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from adapterhub.plugin import FLOAT_DTYPES, AdapterFiles, AdapterFormatError
from adapterhub.toolkit.adapters_format.heads import read_head, read_static_head
from adapterhub.toolkit.adapters_format.layout import (
    WEIGHTS_SAFETENSORS,
    adapter_name,
    full_config,
    meta,
    read_raw,
    write,
)

from .config import BN_DEFAULTS

_BN_KEY = re.compile(r"^(?P<module>.+)\.adapters\.(?P<name>[^.]+)\.(?P<param>.+)$")
# Compacter's per-adapter shared PHM parameters (phm_rule, shared W): canonical "shared_parameters.<param>".
_BN_SHARED_KEY = re.compile(r"^shared_parameters\.(?P<name>[^.]+)\.(?P<param>[^.]+)$")


def read_adapters_bottleneck(path: str | Path, config: dict, allow_pickle: bool = False,
                             dtypes: Any = FLOAT_DTYPES) -> AdapterFiles:
    """A bottleneck adapter in canonical form: keys ``<module>.adapters.<param>``."""
    state, _ = read_raw(path, config, allow_pickle, dtypes)
    inner = {**BN_DEFAULTS, **(config.get("config") or {})}
    canonical: dict[str, Any] = {}
    for key, value in state.items():
        shared = _BN_SHARED_KEY.match(key)
        if shared:
            canonical[f"shared_parameters.{shared['param']}"] = value
            continue
        m = _BN_KEY.match(key)
        if not m:
            raise AdapterFormatError(
                f"{Path(path) / WEIGHTS_SAFETENSORS}: unexpected key {key!r} for a bottleneck adapter",
                hint="invertible adapters and AdapterFusion are not supported",
            )
        canonical[f"{m['module']}.adapters.{m['param']}"] = value
    return AdapterFiles(
        "bottleneck", inner, canonical, format="adapters", source=str(path),
        head=read_head(path, allow_pickle), static_head=read_static_head(path, allow_pickle),
        extras={"adapters_meta": meta(config), "key_root": "base_model"},
    )


def write_adapters_bottleneck(adapter: AdapterFiles, path: str | Path, model_type: str | None = None) -> list[Path]:
    name = adapter_name(adapter)
    inner = {**BN_DEFAULTS, **{k: v for k, v in adapter.config.items() if k in BN_DEFAULTS}}
    tensors = {k.replace("shared_parameters.", f"shared_parameters.{name}.", 1) if k.startswith("shared_parameters.")
               else k.replace(".adapters.", f".adapters.{name}.", 1): v for k, v in adapter.state_dict.items()}
    return write(path, full_config(inner, adapter, name, model_type), tensors, adapter)
