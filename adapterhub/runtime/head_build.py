"""Building a prediction head the way ``adapters`` 1.3.0 builds its flex heads, and what it reads.

:func:`check_head` refuses a spec before the model changes; :func:`build_head` builds the module
(``PredictionHead.build``'s layout, so ``model_head.safetensors`` keys match); :func:`new_head_spec`
makes a fresh one for ``add_head``; :func:`_head_input` picks what the head reads: every token
(tagging), the pooler output (``use_pooler``), the last token that is not padding on the decoders
``adapters`` classifies that way (:data:`LAST_TOKEN_MODEL_TYPES`), else the first token.

No torch at import time.
"""

from __future__ import annotations

from typing import Any

from ..errors import IncompatibleBaseModelError, UnsupportedOperationError, UsageError

#: Head types built here: classifiers (one label or several per input) and a per-token tagger.
HEAD_TYPES = ("classification", "multilabel_classification", "tagging")
#: Decoders whose classification heads read the last token, as ``adapters`` (and transformers'
#: ``*ForSequenceClassification``) do: the last token that is not ``pad_token_id``, or the last
#: position when the model has no pad token. Every other model reads the first token.
LAST_TOKEN_MODEL_TYPES = frozenset({"gpt2", "gptj", "llama", "mistral"})


def _where(spec: dict[str, Any]) -> str:
    return f"{spec.get('source') or 'adapter'}/head_config.json"


def check_head(spec: dict[str, Any], model: Any) -> None:
    """Raise before any change to the model when ``spec`` cannot become a head on ``model``."""
    config = spec.get("config") or {}
    head_type = config.get("head_type", "classification")
    if head_type not in HEAD_TYPES:
        raise UnsupportedOperationError(
            f"{_where(spec)}: config.head_type {head_type!r} is not supported",
            hint=f"supported head types: {', '.join(HEAD_TYPES)}; delete head_config.json and "
            "model_head.safetensors to load the adapter without its head",
        )
    if not isinstance(config.get("num_labels"), int) or config["num_labels"] < 1:
        raise IncompatibleBaseModelError(f"{_where(spec)}: config.num_labels must be a positive integer")
    hidden = _hidden_size(model)
    if spec.get("hidden_size") and int(spec["hidden_size"]) != hidden:
        raise IncompatibleBaseModelError(
            f"{_where(spec)}: hidden_size is {spec['hidden_size']} but the model's hidden size is {hidden}",
            hint="the head was trained on another base model",
        )
    got = {k: tuple(v.shape) for k, v in (spec.get("state_dict") or {}).items()}
    layers = config.get("layers", 2)
    act = config.get("activation_function")
    # A downloaded head_config.json must not make us build a huge head just to compare shapes:
    # every layer needs a tensor in the file, and the comparison runs on the meta device.
    if not isinstance(layers, int) or not 1 <= layers <= max(len(got), 1):
        raise IncompatibleBaseModelError(f"{_where(spec)}: config.layers={layers!r} does not match the head weights")
    if layers > 1 and act and _activation(act) is None:
        raise UnsupportedOperationError(f"{_where(spec)}: config.activation_function {act!r} is not supported")
    import torch

    with torch.device("meta"):
        expected = {k: tuple(v.shape) for k, v in _layers(hidden, config, 0.0).state_dict().items()}
    if expected != got:
        raise IncompatibleBaseModelError(
            f"{_where(spec)}: the head weights {sorted(got.items())[:4]} do not match the head its config "
            f"describes {sorted(expected.items())[:4]}",
            hint="check layers, num_labels and bias in head_config.json against model_head.safetensors",
        )


def _hidden_size(model: Any) -> int:
    config = getattr(model, "config", None)
    hidden = getattr(config, "hidden_size", None) or getattr(config, "d_model", None)
    if not hidden:
        raise IncompatibleBaseModelError(f"{type(model).__name__}: no config.hidden_size for an adapter head")
    return int(hidden)


def _activation(name: str) -> Any:
    """The activation module ``adapters`` builds for ``name`` (its ``Activation_Function_Class``:
    transformers' activations by lower-cased name, plus ``leakyrelu``); None when unknown."""
    import torch
    from transformers.activations import ACT2FN

    name = str(name).lower()
    if name == "leakyrelu":
        return torch.nn.LeakyReLU()
    return ACT2FN[name] if name in ACT2FN else None


def _layers(hidden: int, config: dict[str, Any], default_dropout: float) -> Any:
    """AdapterHub's layout (``adapters``' ``PredictionHead.build``): [Dropout, Linear(h, h),
    activation] * (layers - 1) + [Dropout, Linear(h, labels)]. The hidden Linears always have a bias;
    ``bias`` applies to the last one; no activation module when ``activation_function`` is empty.

    The indices of this Sequential are the keys of ``model_head.safetensors`` (``1.weight``, ``4.bias``).
    """
    import torch

    p = config.get("dropout_prob")
    p = default_dropout if p is None else float(p)
    bias = bool(config.get("bias", True))
    act = config.get("activation_function")
    modules: list[Any] = []
    for _ in range(int(config.get("layers", 2)) - 1):
        modules += [torch.nn.Dropout(p), torch.nn.Linear(hidden, hidden)]
        if act:
            modules.append(_activation(act))
    modules += [torch.nn.Dropout(p), torch.nn.Linear(hidden, int(config["num_labels"]), bias=bias)]
    return torch.nn.Sequential(*modules)


def build_head(spec: dict[str, Any], model: Any) -> Any:
    """The head module for ``spec`` with its weights, on the model's device and dtype."""
    config = dict(spec.get("config") or {})
    default_dropout = float(getattr(model.config, "hidden_dropout_prob", 0.1) or 0.0)
    head = _layers(_hidden_size(model), config, default_dropout)
    if spec.get("state_dict"):
        head.load_state_dict(spec["state_dict"])
    head.head_config = config
    ref = next(model.parameters())
    return head.to(device=ref.device, dtype=ref.dtype)


def new_head_spec(model: Any, num_labels: int, *, head_type: str = "classification", layers: int = 2,
                  activation_function: str = "tanh", labels: list[str] | None = None,
                  use_pooler: bool = False, dropout_prob: float | None = None, bias: bool = True,
                  seed: int | None = None) -> dict[str, Any]:
    """A freshly initialised head spec (what ``add_head`` trains)."""
    import torch

    labels = list(labels) if labels else [f"LABEL_{i}" for i in range(num_labels)]
    if len(labels) != num_labels:
        raise UsageError(f"add_head: {len(labels)} labels given for num_labels={num_labels}")
    config = {"head_type": head_type, "num_labels": int(num_labels), "layers": int(layers),
              "activation_function": activation_function, "use_pooler": bool(use_pooler),
              "dropout_prob": dropout_prob, "bias": bool(bias), "label2id": {n: i for i, n in enumerate(labels)}}
    if head_type not in HEAD_TYPES:
        raise UsageError(f"add_head: head_type {head_type!r} is not supported", hint=f"use one of {HEAD_TYPES}")
    if seed is not None:
        torch.manual_seed(seed)
    layers_ = _layers(_hidden_size(model), config, 0.0)
    return {"config": config, "state_dict": layers_.state_dict(), "name": "", "hidden_size": _hidden_size(model)}


def _head_input(config: dict[str, Any], encoder_output: Any, last_token: tuple | None = None) -> Any:
    """What the head reads: every token (tagging), the pooler output (``use_pooler``), the last
    token (``last_token`` = (pad_token_id, input_ids) on the decoders of LAST_TOKEN_MODEL_TYPES),
    else the first token."""
    hidden = encoder_output[0]
    if config.get("head_type") == "tagging":
        return hidden
    if config.get("use_pooler"):
        pooled = encoder_output[1] if isinstance(encoder_output, tuple) else getattr(encoder_output, "pooler_output", None)
        if pooled is not None:
            return pooled
    if last_token is not None:
        import torch

        pad, input_ids = last_token
        rows = torch.arange(hidden.shape[0], device=hidden.device)
        if pad is None or input_ids is None:
            return hidden[rows, -1]
        # virtual tokens a prompt method put in front of the input shift every real position
        offset = hidden.shape[1] - input_ids.shape[1]
        return hidden[rows, (input_ids != pad).sum(-1).to(hidden.device) - 1 + offset]
    return hidden[:, 0]


def write_head_beside(path: Any, head: dict[str, Any], model: Any, name: str) -> list[Any]:
    """Write ``head`` as AdapterHub's head files (``head_config.json`` + ``model_head.safetensors``) into
    ``path``, beside an adapter saved in a format that has no place for it; ``load_adapter`` reads them
    back. They are what ``adapters`` writes where that library has a flex-head class for the model,
    otherwise the same files naming the model's own class."""
    from pathlib import Path

    from ..errors import UnsupportedOperationError
    from ..toolkit.adapters_format.heads import head_files
    from ..toolkit.adapters_format.layout import HEAD_CONFIG_FILE, HEAD_SAFETENSORS, WRITTEN_VERSION
    from ..toolkit.weights import save_tensors, write_json

    config = getattr(model, "config", None)
    described = {"name": name, "hidden_size": _hidden_size(model), "model_type": getattr(config, "model_type", ""),
                 "model_name": getattr(config, "_name_or_path", "") or ""}
    try:
        head_config, tensors = head_files(head, described)
    except UnsupportedOperationError:  # no adapters-library class for this model or head: our own reader's files
        head_config = {"config": dict(head.get("config") or {}), "hidden_size": described["hidden_size"],
                       "model_class": type(model).__name__, "model_name": described["model_name"],
                       "model_type": described["model_type"], "name": name, "version": WRITTEN_VERSION}
        tensors = {f"heads.{name}.{k}": v for k, v in head["state_dict"].items()}
    path = Path(path)
    return [save_tensors(tensors, path / HEAD_SAFETENSORS), write_json(path / HEAD_CONFIG_FILE, head_config)]
