"""AdapterHub ``adapters``-library format (1.x; older adapter-transformers files too): the generic part.

Layout of one adapter directory::

    adapter_config.json      {"config": {...}, "name", "model_type", "hidden_size", "version", ...}
    adapter.safetensors      or pytorch_adapter.bin (torch pickle, refused unless allow_pickle)
    head_config.json         optional prediction head saved with the adapter (:mod:`.heads`)
    model_head.safetensors   or pytorch_model_head.bin

Weight keys embed the adapter name (``...output.adapters.<name>.adapter_up.weight``) and, when the
file was saved from a model with heads, the base-model prefix (``bert.``). The canonical forms of
adapterhub's methods drop both, and their keys are relative to the **bare base model**
(``model.base_model``: the ``BertModel`` inside a ``BertForSequenceClassification``); use
:func:`rebase_keys` to get keys relative to a wrapper model. Each method converts its own
architecture (bottleneck and prompt methods in their plugins, LoRA/IA3 in
:mod:`adapterhub.toolkit.peft.adapters_lora`); this module reads raw weights and writes folders.

Writing produces what ``adapters`` 1.3.0 saves for the same adapter: keys relative to the bare base
model and ``model_class`` its class (``BertModel``), or, beside a prediction head, the library's
flex-head layout (``bert.``-prefixed keys, ``BertAdapterModel``). Safetensors only: load such a
folder in the library with :data:`LOAD_CALL`. A write the library would not reproduce exactly is
refused before anything is written (:func:`refusal`).

Nothing here imports torch at module level.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ...errors import UnsupportedOperationError
from ...plugin.records import CONFIG_NAME, FLOAT_DTYPES, AdapterFiles
from ..safetensors_header import DtypeRule
from ..weights import find_weights, load_tensors, save_tensors, write_json

WEIGHTS_SAFETENSORS = "adapter.safetensors"
WEIGHTS_PICKLE = "pytorch_adapter.bin"
HEAD_CONFIG_FILE = "head_config.json"
HEAD_SAFETENSORS = "model_head.safetensors"
HEAD_PICKLE = "pytorch_model_head.bin"
WRITTEN_VERSION = "adapters.1.3.0"

#: base_model_prefix of the transformers classes for the model types adapters supports.
BASE_PREFIXES = {
    "bert": "bert", "roberta": "roberta", "xlm-roberta": "roberta", "distilbert": "distilbert",
    "albert": "albert", "electra": "electra", "deberta": "deberta", "deberta-v2": "deberta",
    "xmod": "roberta", "bert-generation": "bert", "gpt2": "transformer", "gptj": "transformer",
    "llama": "model", "mistral": "model", "bart": "model", "mbart": "model", "t5": "transformer",
    "mt5": "transformer", "vit": "vit", "beit": "beit", "plbart": "model", "whisper": "model",
}

#: The bare base-model class per model type: what ``adapters`` records as ``model_class`` when it
#: saves from the model that keys are relative to (adapterhub writes keys relative to the bare base).
BASE_CLASSES = {"bert": "BertModel", "roberta": "RobertaModel", "xlm-roberta": "XLMRobertaModel",
                "gpt2": "GPT2Model", "llama": "LlamaModel", "mistral": "MistralModel"}

#: The ``adapters`` flex-head model class per model type (``ADAPTER_MODEL_MAPPING_NAMES`` of 1.3.0):
#: a ``head_config.json`` must name it, or ``load_adapter`` refuses the head.
FLEX_HEAD_CLASSES = {
    "albert": "AlbertAdapterModel", "bart": "BartAdapterModel", "beit": "BeitAdapterModel",
    "bert": "BertAdapterModel", "bert-generation": "BertGenerationAdapterModel", "clip": "CLIPAdapterModel",
    "deberta": "DebertaAdapterModel", "deberta-v2": "DebertaV2AdapterModel",
    "distilbert": "DistilBertAdapterModel", "electra": "ElectraAdapterModel", "gpt2": "GPT2AdapterModel",
    "gptj": "GPTJAdapterModel", "llama": "LlamaAdapterModel", "mbart": "MBartAdapterModel",
    "mistral": "MistralAdapterModel", "mt5": "MT5AdapterModel", "plbart": "PLBartAdapterModel",
    "roberta": "RobertaAdapterModel", "t5": "T5AdapterModel", "vit": "ViTAdapterModel",
    "whisper": "WhisperAdapterModel", "xlm-roberta": "XLMRobertaAdapterModel", "xmod": "XmodAdapterModel",
}

#: How to load an adapterhub-written folder in the ``adapters`` library: its default reads
#: ``pytorch_adapter.bin``, and adapterhub writes safetensors only.
LOAD_CALL = "model.load_adapter(path, use_safetensors=True)"

#: Legacy names (adapter-transformers 1.x-3.x) -> current names, applied to every key on load.
LEGACY_RENAMES = (
    ("attention_text_task_adapters", "adapters"),
    ("attention_text_lang_adapters", "adapters"),
    ("layer_text_task_adapters", "adapters"),
    ("layer_text_lang_adapters", "adapters"),
    ("invertible_lang_adapters", "invertible_adapters"),
)


def is_adapters_format(config: dict) -> bool:
    """Whether a parsed ``adapter_config.json`` is AdapterHub-format (not PEFT)."""
    return (
        isinstance(config, dict)
        and "peft_type" not in config
        and isinstance(config.get("config"), dict)
        and "name" in config
    )


def architecture(config: dict) -> str:
    """``bottleneck`` (no architecture key), ``lora``, ``ia3``, ``prefix_tuning``, ``prompt_tuning``, ..."""
    inner = config.get("config") or {}
    arch = inner.get("architecture")
    if arch is None:
        return "bottleneck"
    if arch == "lora" and inner.get("composition_mode") == "scale":
        return "ia3"
    return str(arch)


def load_weights(path: Path, safetensors_name: str, pickle_name: str, allow_pickle: bool,
                 dtypes: DtypeRule = FLOAT_DTYPES) -> dict:
    """The tensors of ``safetensors_name`` (or, with ``allow_pickle``, ``pickle_name``) in ``path``,
    each of a dtype ``dtypes`` allows."""
    return load_tensors(find_weights(Path(path), (safetensors_name, pickle_name)), allow_pickle=allow_pickle,
                        dtypes=dtypes)


def _legacy_rename(key: str) -> str:
    for old, new in LEGACY_RENAMES:
        key = key.replace(old, new)
    return key


def _base_prefix(config: dict, keys: list[str]) -> str | None:
    """The base-model prefix the keys carry (``bert``), or None when saved from a bare base model."""
    candidates = {BASE_PREFIXES.get(str(config.get("model_type", "")))} | set(BASE_PREFIXES.values())
    body = [k for k in keys if not k.startswith("heads.")]
    if not body:
        return None
    first = {k.split(".", 1)[0] for k in body}
    if len(first) == 1:
        (only,) = first
        if only in candidates and only not in {"encoder", "layers", "h", "prefix_tuning", "prompt_tuning"}:
            return only
    return None


def read_raw(path: str | Path, config: dict, allow_pickle: bool,
             dtypes: DtypeRule = FLOAT_DTYPES) -> tuple[dict, str | None]:
    """Weights with legacy renames applied and the base-model prefix removed, plus that prefix.
    Every tensor must have a dtype ``dtypes`` allows (by its name in the file)."""
    state = load_weights(Path(path), WEIGHTS_SAFETENSORS, WEIGHTS_PICKLE, allow_pickle, dtypes)
    state = {_legacy_rename(k): v for k, v in state.items()}
    prefix = _base_prefix(config, list(state))
    if prefix:
        state = {k[len(prefix) + 1:] if k.startswith(prefix + ".") else k: v for k, v in state.items()}
    return state, prefix


def meta(config: dict) -> dict:
    """Everything of ``adapter_config.json`` but the inner ``config`` (name, model_type, ...)."""
    return {k: v for k, v in config.items() if k != "config"}


def adapter_name(adapter: AdapterFiles) -> str:
    """The name the adapter is written under (its AdapterHub name, else its runtime name)."""
    return str((adapter.extras.get("adapters_meta") or {}).get("name") or adapter.name or "adapter")


def refusal(method: str, setting: str, why: str, *, hint: str | None = None) -> UnsupportedOperationError:
    """The error for a write the AdapterHub format cannot hold exactly: it names the method, the
    setting and the format that can hold it (PEFT's, unless ``hint`` says otherwise)."""
    return UnsupportedOperationError(
        f"cannot save this {method} adapter in the AdapterHub format: {setting}: {why}",
        hint=hint or "save it with format='peft', which holds it exactly")


def model_class(adapter: AdapterFiles, model_type: str | None) -> str:
    """``model_class`` of ``adapter_config.json``: the flex-head class when a head is written (the
    class ``adapters`` saves such a folder from), else the bare base class (keys are relative to it)."""
    model_type = model_type or adapter.model_type or ""
    if adapter.head:
        return FLEX_HEAD_CLASSES.get(model_type, "")
    saved = (adapter.extras.get("adapters_meta") or {}).get("model_class")
    return BASE_CLASSES.get(model_type) or str(saved or "")


def full_config(inner: dict, adapter: AdapterFiles, name: str, model_type: str | None) -> dict:
    """``adapter_config.json`` as ``adapters`` 1.3.0 writes it around the inner ``config``."""
    saved = dict(adapter.extras.get("adapters_meta") or {})
    model_type = model_type or adapter.model_type or saved.get("model_type", "")
    return {
        "config": inner,
        "hidden_size": saved.get("hidden_size", adapter.hidden_size),
        "model_class": model_class(adapter, model_type),
        "model_name": saved.get("model_name") or adapter.config.get("base_model_name_or_path") or "",
        "model_type": model_type,
        "name": name,
        "version": WRITTEN_VERSION,
    }


def write(path: str | Path, config: dict, tensors: dict, adapter: AdapterFiles) -> list[Path]:
    """Write an adapters-format folder: weights, config, and the adapter's head if it has one.

    ``tensors`` are keyed relative to the bare base model. With a head the folder is what
    ``adapters`` saves from its flex-head model: adapter keys carry the base-model prefix
    (``bert.``), and both configs name the flex-head class. The head is checked before anything
    is written, so a refused head leaves no folder behind.
    """
    from .heads import head_files

    path = Path(path)
    head = head_files(adapter.head, config) if adapter.head else None
    if head is not None:
        prefix = BASE_PREFIXES.get(str(config.get("model_type") or ""))
        tensors = {f"{prefix}.{k}": v for k, v in tensors.items()}
    path.mkdir(parents=True, exist_ok=True)
    written = [save_tensors(tensors, path / WEIGHTS_SAFETENSORS), write_json(path / CONFIG_NAME, config)]
    if head is not None:
        head_config, head_tensors = head
        written += [save_tensors(head_tensors, path / HEAD_SAFETENSORS), write_json(path / HEAD_CONFIG_FILE, head_config)]
    return written


def rebase_keys(state_dict: dict, model: Any) -> dict:
    """Keys relative to ``model.base_model`` -> keys relative to ``model`` (adds ``bert.`` for a
    ``BertForSequenceClassification``; unchanged for a bare ``BertModel``)."""
    base = getattr(model, "base_model", model)
    if base is model:
        return dict(state_dict)
    prefix = next((n for n, m in model.named_children() if m is base), None)
    if prefix is None:
        return dict(state_dict)
    return {f"{prefix}.{k}": v for k, v in state_dict.items()}
