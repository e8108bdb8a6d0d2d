"""Which transformers class an adapter needs, and why an adapter does not fit a model.

A PEFT adapter's keys are relative to the model class it was trained on: one trained on
``BertForSequenceClassification`` reads ``bert.encoder...`` and carries ``classifier.*`` for its
labels, one trained on ``BertModel`` reads ``encoder...``. Loading onto the other class, or onto a
classifier with another label count, fails for reasons that have nothing to do with the base model's
weights; :func:`mismatch_hint` names the reason and the fix, and :func:`task_model_class` /
:func:`label_count` say what to load instead.

No torch at import time.
"""

from __future__ import annotations

from typing import Any

from ..plugin.records import AdapterFiles

#: PEFT ``task_type`` -> the transformers Auto class of a model with that task's head.
TASK_MODEL_CLASSES = {
    "SEQ_CLS": "AutoModelForSequenceClassification",
    "TOKEN_CLS": "AutoModelForTokenClassification",
    "QUESTION_ANS": "AutoModelForQuestionAnswering",
    "CAUSAL_LM": "AutoModelForCausalLM",
    "SEQ_2_SEQ_LM": "AutoModelForSeq2SeqLM",
    "FEATURE_EXTRACTION": "AutoModel",
}

#: Classes whose head has one output per label (``num_labels``).
_LABELLED = {"AutoModelForSequenceClassification", "AutoModelForTokenClassification"}


def task_model_class(task_type: Any) -> str | None:
    """The Auto class name for a PEFT ``task_type`` (``"SEQ_CLS"``), or None when there is none."""
    return TASK_MODEL_CLASSES.get(str(task_type).upper()) if task_type else None


def needs_labels(auto_class: str) -> bool:
    return auto_class in _LABELLED


def _saved_modules(adapter: AdapterFiles) -> list[str]:
    saved = adapter.config.get("modules_to_save") or []
    return [saved] if isinstance(saved, str) else [str(m) for m in saved]


def label_count(adapter: AdapterFiles) -> int | None:
    """How many labels the classifier an adapter saves (``modules_to_save``) has, when it saves one."""
    for module in _saved_modules(adapter):
        for key, tensor in adapter.state_dict.items():
            if (key == f"{module}.weight" or key.endswith(f".{module}.weight")) and len(tensor.shape) == 2:
                return int(tensor.shape[0])
    return None


def _has(model: Any, path: str) -> bool:
    module = model
    for part in path.split("."):
        module = getattr(module, "_modules", {}).get(part)
        if module is None:
            return False
    return True


def _module_paths(adapter: AdapterFiles) -> list[str]:
    """The module path of every tensor, up to the first part that is the adapter's own."""
    own = ("lora_", "ia3_", "modules_to_save", "base_layer")
    paths = []
    for key in adapter.state_dict:
        parts = key.split(".")
        cut = next((i for i, p in enumerate(parts) if p.startswith(own)), len(parts) - 1)
        paths.append(".".join(parts[:cut]))
    return [p for p in paths if p]


def mismatch_hint(model: Any, adapter: AdapterFiles) -> str | None:
    """Why ``adapter`` does not fit ``model`` when the cause is the model class or its label count;
    None when it is neither (then the base model itself is likely another one)."""
    model_class = type(model).__name__
    task_type = adapter.config.get("task_type")
    wanted = task_model_class(task_type)
    labels = label_count(adapter)
    load = f"{wanted}.from_pretrained(BASE" + (f", num_labels={labels})" if labels and wanted in _LABELLED else ")")

    saved = set(_saved_modules(adapter))
    missing = [p for p in _module_paths(adapter) if not _has(model, p)]
    # the task head the adapter saves (``classifier``) is missing from a bare base model too
    paths = [p for p in missing if p not in saved]
    if missing and not paths:
        return (f"the adapter saves a task head ({', '.join(sorted(saved))}) that a {model_class} does not have: "
                "load the base with " + (load if wanted else "the class it was trained with"))
    if paths:
        heads = {p.split(".", 1)[0] for p in paths if "." in p}
        if len(heads) == 1 and all("." in p and _has(model, p.split(".", 1)[1]) for p in paths):
            prefix = heads.pop()
            return (f"the adapter was saved from a model with a task head (its keys start with {prefix!r}"
                    + (f", task_type {task_type}" if task_type else "") + f"), not a {model_class}: load the base with "
                    + (load if wanted else "the class it was trained with, e.g. AutoModelForSequenceClassification"))
        base = getattr(model, "base_model", model)
        prefix = getattr(model, "base_model_prefix", "")
        if base is not model and prefix and all(_has(model, f"{prefix}.{p}") for p in paths):
            return (f"the adapter was saved from the bare base model (its keys have no {prefix!r} prefix), not a "
                    f"{model_class}: load it onto AutoModel.from_pretrained(BASE), or onto {model_class}'s "
                    f"{prefix!r} submodule")
        return None
    for module in _saved_modules(adapter):
        theirs = next((t for k, t in adapter.state_dict.items()
                       if (k == f"{module}.weight" or k.endswith(f".{module}.weight")) and len(t.shape) == 2), None)
        target = getattr(model, "_modules", {}).get(module)
        weight = getattr(target, "weight", None)
        if theirs is not None and weight is not None and weight.dim() == 2 and weight.shape[0] != theirs.shape[0]:
            return (f"the adapter's {module!r} has {theirs.shape[0]} outputs (labels) and the model's has "
                    f"{weight.shape[0]}: load the base with num_labels={theirs.shape[0]}")
    return None
