"""Prediction heads saved beside an AdapterHub-format adapter (``head_config.json`` plus
``model_head.safetensors``): reading, checking a static head against the model, writing.

Written heads are what ``adapters`` 1.3.0 saves from its flex-head model: ``model_class`` names
that class (``BertAdapterModel``; the library refuses a head recorded for another class) and the
config holds exactly the keyword arguments of the head type's class (:data:`HEAD_CONFIG_KEYS`).

A *flex* head (``"config"`` is a dict: classification, tagging, ...) belongs to the adapter; the
runtime builds and routes it (``adapterhub.runtime.heads``). A *static* head (``"config": null``)
is the model class's own head (GPT-2's ``lm_head``) saved along; it must equal the model's weights.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ...errors import AdapterFormatError, UnsupportedOperationError
from ...plugin.records import AdapterFiles
from .layout import (
    BASE_PREFIXES,
    FLEX_HEAD_CLASSES,
    HEAD_CONFIG_FILE,
    HEAD_PICKLE,
    HEAD_SAFETENSORS,
    WRITTEN_VERSION,
    load_weights,
)

#: The keys of ``head_config.json``'s ``config`` per head type, as the ``adapters`` 1.3.0 head
#: classes build them (``ClassificationHead``, ``MultiLabelClassificationHead``, ``TaggingHead``);
#: the library builds a head from exactly these keyword arguments and refuses any other.
HEAD_CONFIG_KEYS = {
    "classification": ("head_type", "num_labels", "layers", "activation_function", "label2id", "use_pooler",
                       "bias", "dropout_prob"),
    "multilabel_classification": ("head_type", "num_labels", "layers", "activation_function", "label2id",
                                  "use_pooler", "bias", "dropout_prob"),
    "tagging": ("head_type", "num_labels", "layers", "activation_function", "label2id", "dropout_prob"),
}


def _read_head_config(path: Path) -> dict | None:
    """The parsed ``head_config.json`` in the adapter folder ``path``; None if there is none."""
    head_config_path = path / HEAD_CONFIG_FILE
    if not head_config_path.is_file():
        return None
    try:
        return json.loads(head_config_path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise AdapterFormatError(f"{head_config_path}: not valid JSON ({exc})") from None


def read_head(path: str | Path, allow_pickle: bool) -> dict | None:
    """A prediction head saved beside the adapter: {"config", "state_dict" (keys from the head's
    Sequential: ``1.weight``...), "name"}; None if there is none."""
    path = Path(path)
    head_config = _read_head_config(path)
    if head_config is None:
        return None
    if head_config.get("config") is None:
        return None  # a static head (the model class's own, e.g. lm_head): see read_static_head
    state = load_weights(path, HEAD_SAFETENSORS, HEAD_PICKLE, allow_pickle)
    name = head_config.get("name", "")
    prefix = f"heads.{name}."
    head_state = {k[len(prefix):] if k.startswith(prefix) else k: v for k, v in state.items()}
    return {"config": head_config.get("config", {}), "state_dict": head_state, "name": name,
            "hidden_size": head_config.get("hidden_size")}


def read_static_head(path: str | Path, allow_pickle: bool) -> dict | None:
    """The model class's own head saved beside the adapter (``head_config.json`` with ``"config": null``).

    ``adapters`` writes one when saving from a model with a fixed head (``GPT2LMHeadModel``:
    ``lm_head.weight``) and loads it back into the model. Keys are relative to the whole model.
    Returns {"state_dict", "model_class", "source"} or None.
    """
    path = Path(path)
    head_config = _read_head_config(path)
    if head_config is None:
        return None
    if head_config.get("config") is not None:
        return None
    state = load_weights(path, HEAD_SAFETENSORS, HEAD_PICKLE, allow_pickle)
    return {"state_dict": state, "model_class": head_config.get("model_class"), "source": str(path)}


def _own_tensor(model: Any, key: str) -> Any:
    """The tensor ``model.state_dict()[key]`` would hold, looked up alone (None where that key is absent).

    Building the whole state dict copies every key of a large model on each load just to read one or
    two heads. ``state_dict`` lists, per module, its non-None parameters and its non-None persistent
    buffers under the module's own path; a tied weight (GPT-2 ``lm_head.weight`` is ``wte.weight``)
    is listed under every module holding it, so resolving the owning module by path finds it too.
    """
    module_path, _, leaf = key.rpartition(".")
    try:
        module = model.get_submodule(module_path)
    except AttributeError:
        return None
    parameter = module._parameters.get(leaf)
    if parameter is not None:
        return parameter.detach()
    buffer = module._buffers.get(leaf)
    if buffer is not None and leaf not in module._non_persistent_buffers_set:
        return buffer.detach()
    return None


def check_static_head(model: Any, adapter: AdapterFiles) -> None:
    """Accept a static head only if it equals the model's own weights (the usual case: it was saved
    along untouched). A changed static head would replace base weights (tied embeddings too), which
    adapterhub does not do: refuse it by name. Keys are relative to ``model`` itself (as its
    ``state_dict`` names them), looked up one at a time."""
    static = adapter.static_head
    if not static:
        return
    import torch

    where = Path(static["source"]) / HEAD_SAFETENSORS
    for key, value in static["state_dict"].items():
        own = _own_tensor(model, key)
        if own is None:
            raise UnsupportedOperationError(
                f"{where}: static head tensor {key!r} has no counterpart in {type(model).__name__}",
                hint=f"the adapter was saved from {static.get('model_class') or 'another model class'}; load it "
                "on that class, or delete head_config.json and the head weights to use the adapter alone")
        if own.shape != value.shape or not torch.equal(own.cpu().to(value.dtype), value):
            raise UnsupportedOperationError(
                f"{where}: static head tensor {key!r} differs from the model's own weights; adapterhub does not "
                "overwrite base weights", hint="delete head_config.json and the head weights to use the adapter "
                "with the model's own head")


def _head_refusal(head_type: str, setting: str, why: str) -> UnsupportedOperationError:
    return UnsupportedOperationError(
        f"cannot save this adapter's {head_type} head in the AdapterHub format: {setting}: {why}",
        hint="no adapter format holds this head; save the adapter without it (delete_head) or build the head "
        "with settings the adapters library supports")


def head_files(head: dict, adapter_config: dict) -> tuple[dict, dict]:
    """``head_config.json`` and the ``model_head.safetensors`` tensors for ``head`` ({"config",
    "state_dict", "hidden_size"?}) beside an adapter whose ``adapter_config.json`` is ``adapter_config``,
    as ``adapters`` 1.3.0 saves a flex head; raises before anything is written when the library
    would not rebuild exactly this head."""
    config = dict(head.get("config") or {})
    head_type = str(config.get("head_type", "classification"))
    keys = HEAD_CONFIG_KEYS.get(head_type)
    if keys is None:
        raise _head_refusal(head_type, f"head_type={head_type!r}", "the writer knows only "
                            f"{', '.join(HEAD_CONFIG_KEYS)} heads")
    model_type = str(adapter_config.get("model_type") or "")
    flex_class = FLEX_HEAD_CLASSES.get(model_type)
    if flex_class is None or model_type not in BASE_PREFIXES:
        raise _head_refusal(head_type, f"model_type={model_type!r}",
                            "the adapters library has no flex-head model class for it")
    if head_type == "tagging" and not config.get("bias", True):
        raise _head_refusal(head_type, "bias=False", "the library's TaggingHead always has an output bias")
    name = adapter_config["name"]
    head_config = {
        "config": {k: config.get(k) for k in keys},
        "hidden_size": head.get("hidden_size") or adapter_config["hidden_size"],
        "model_class": flex_class, "model_name": adapter_config["model_name"],
        "model_type": model_type, "name": name, "version": WRITTEN_VERSION,
    }
    return head_config, {f"heads.{name}.{k}": v for k, v in head["state_dict"].items()}
