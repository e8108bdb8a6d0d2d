"""Prediction heads carried by adapters: a runtime feature, independent of the adapter's method.

A method's ``read`` puts a head spec into ``AdapterFiles.head`` (the AdapterHub reader
does so for ``head_config.json`` + ``model_head.safetensors``, whatever the method)::

    {"config": {"head_type", "num_labels", "layers", "activation_function", "dropout_prob",
                "use_pooler", "bias", "label2id", ...},        # head_config.json's "config"
     "state_dict": {"1.weight": ..., "4.bias": ...},          # keys of the head's Sequential
     "name": str, "hidden_size": int | None}

:class:`AdapterModel` builds the head module (:func:`.head_build.build_head`: the layout ``adapters``
builds, and what a head reads), keeps it on the model as
``model.adapterhub_heads[<adapter name>]`` (so it moves, trains and counts like any parameter),
and hands the spec back on ``save_adapter`` (:meth:`HeadSet.export`), so ``format="adapters"``
writes the head files again.

**Where a head reads.** A forward hook on ``model.base_model`` (the bare encoder: the ``BertModel``
inside a ``BertForSequenceClassification``, or the model itself) keeps the encoder's output; a
forward hook on the top-level model computes the head from it. A head therefore never sees the
model's own logits and works on a bare encoder and on a model with its own task head alike.
The top-level output's ``logits`` become the head's (and ``loss`` is computed from ``labels`` with
the head's loss; the labels are kept away from the model's own head, which may have another
number of labels). Hooks exist only while at least one head is loaded.

**Which head answers** (AdapterHub's convention, :func:`route`):

* a single adapter or a Stack / Average: the head of the *last* adapter of the setup that has one.
  An adapter whose config lists PEFT ``modules_to_save`` (a saved copy of the model's classifier)
  counts as having a head: the model's own one, so the model's logits are left as they are;
* Parallel / BatchSplit: each slice (child) answers with the last head among the adapters acting
  on it. When every slice answers with the model's own head, the output stays one batch, as
  without heads. Otherwise ``am(**inputs)`` returns a :class:`MultiHeadOutput`: a list with one
  output per child, in child order, each holding that child's rows of every batched field and
  its head's ``logits`` (and ``loss`` when labels were given); ``outputs.heads[i]`` names the
  adapter whose head answered slice i (None for the model's own head).

No torch at import time (the runtime is reachable from the CLI).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..composition import BatchSplit, Block, Parallel
from ..errors import AdapterNotLoadedError, UsageError
from .head_build import (  # noqa: F401 - the runtime's head API lives here too
    HEAD_TYPES,
    LAST_TOKEN_MODEL_TYPES,
    _head_input,
    _hidden_size,
    build_head,
    check_head,
    new_head_spec,
    write_head_beside,
)

HEADS_ATTR = "adapterhub_heads"
#: The model's own head (a PEFT modules_to_save classifier, or no adapter head at all).
MODEL_HEAD = None


# --- routing -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Route:
    """Which head answers: one for the whole batch, or one per slice of a Parallel / BatchSplit."""

    heads: tuple[str | None, ...]  # adapter names with runtime heads; None = the model's own head
    split: Block | None = None  # the Parallel / BatchSplit whose slices ``heads`` follow

    @property
    def multi(self) -> bool:
        return self.split is not None and any(h is not MODEL_HEAD for h in self.heads)

    @property
    def idle(self) -> bool:
        return all(h is MODEL_HEAD for h in self.heads)


def route(block: Block | None, head_of: Callable[[str], str | bool]) -> Route:
    """The heads that answer for ``block``.

    ``head_of(name)``: ``"runtime"`` when the adapter carries a head built here, ``"model"`` when it
    replaces the model's own head (PEFT modules_to_save), False when it has no head.
    """
    if block is None:
        return Route((MODEL_HEAD,))
    split = _find_split(block)
    if split is None:
        return Route((_last_head(block.names(), head_of),))
    heads = tuple(_last_head(_slice_names(block, split, i), head_of) for i in range(len(split.children)))
    return Route(heads, split)


def _last_head(names: list[str], head_of: Callable[[str], str | bool]) -> str | None:
    for name in reversed(names):
        kind = head_of(name)
        if kind == "runtime":
            return name
        if kind == "model":
            return MODEL_HEAD
    return MODEL_HEAD


def _find_split(block: Block) -> Block | None:
    if isinstance(block, (Parallel, BatchSplit)):
        return block
    for child in block.children:
        if isinstance(child, Block):
            found = _find_split(child)
            if found is not None:
                return found
    return None


def _slice_names(block: Block | str, split: Block, index: int) -> list[str]:
    """The adapters acting on slice ``index`` of ``split``, in setup order."""
    if isinstance(block, str):
        return [block]
    if block is split:
        return _slice_names(split.children[index], split, index)
    return [n for child in block.children for n in _slice_names(child, split, index)]


def slice_rows(split: Block, total: int) -> list[tuple[int, int]]:
    """(start, stop) rows of each slice of ``split`` in a batch of ``total`` rows."""
    if isinstance(split, BatchSplit):
        sizes = list(split.batch_sizes)
    else:
        sizes = [total // len(split.children)] * len(split.children)
    if sum(sizes) != total:
        raise UsageError(f"{split!r}: slices of {sizes} rows do not cover a batch of {total}")
    bounds, start = [], 0
    for size in sizes:
        bounds.append((start, start + size))
        start += size
    return bounds


# --- outputs -------------------------------------------------------------------------------------


class MultiHeadOutput(list):
    """One output per child of a Parallel / BatchSplit whose children answer with different heads.

    ``outputs[i]`` is the model's output restricted to child i's rows, with ``logits`` from child
    i's head (and its ``loss`` when labels were given); ``outputs.heads[i]`` is the adapter whose
    head answered (None: the model's own head), ``outputs.children[i]`` the child itself (an
    adapter name or a Stack) and ``outputs.rows[i]`` its (start, stop) rows in the batch.
    """

    def __init__(self, outputs: list[Any], heads: list[str | None], children: list[Any],
                 rows: list[tuple[int, int]]) -> None:
        super().__init__(outputs)
        self.heads = heads
        self.children = children
        self.rows = rows

    def __repr__(self) -> str:
        return f"MultiHeadOutput(children={self.children}, heads={self.heads}, rows={self.rows})"


def _rows_of(value: Any, start: int, stop: int, total: int) -> Any:
    if hasattr(value, "shape") and value.dim() > 0 and value.shape[0] == total:
        return value[start:stop]
    if isinstance(value, tuple):
        return tuple(_rows_of(v, start, stop, total) for v in value)
    return value


def _loss(config: dict[str, Any], logits: Any, labels: Any) -> Any:
    import torch.nn.functional as F

    head_type = config.get("head_type", "classification")
    if head_type == "multilabel_classification":
        return F.binary_cross_entropy_with_logits(logits, labels.to(logits.dtype))
    if logits.shape[-1] == 1:
        return F.mse_loss(logits.squeeze(-1), labels.to(logits.dtype))
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), labels.reshape(-1), ignore_index=-100)


# --- the heads on one model ------------------------------------------------------------------------


class HeadSet:
    """The runtime heads on one model, their hooks and which of them answers."""

    def __init__(self, model: Any) -> None:
        self.model = model
        self.route = Route((MODEL_HEAD,))
        self._hooks: list[Any] = []
        self._encoder_output: Any = None
        self._labels: Any = None
        self._input_ids: Any = None

    def __contains__(self, name: str) -> bool:
        heads = self.model._modules.get(HEADS_ATTR)
        return heads is not None and name in heads

    def get(self, name: str) -> Any:
        if name not in self:
            raise AdapterNotLoadedError(f"adapter {name!r} has no head")
        return self.model._modules[HEADS_ATTR][name]

    def config(self, name: str) -> dict[str, Any] | None:
        return dict(self.get(name).head_config) if name in self else None

    def attach(self, name: str, module: Any) -> None:
        import torch

        if HEADS_ATTR not in self.model._modules:
            self.model.add_module(HEADS_ATTR, torch.nn.ModuleDict())
        self.model._modules[HEADS_ATTR][name] = module
        if not self._hooks:
            self._install_hooks()

    def remove(self, name: str) -> None:
        heads = self.model._modules.get(HEADS_ATTR)
        if heads is None or name not in heads:
            return
        del heads[name]
        if len(heads) == 0:
            self.clear()

    def clear(self) -> None:
        """Remove every head and hook: the model is as it was before the first head."""
        self.model._modules.pop(HEADS_ATTR, None)
        for handle in self._hooks:
            handle.remove()
        self._hooks.clear()
        self._encoder_output = self._labels = self._input_ids = None
        self.route = Route((MODEL_HEAD,))

    def export(self, name: str) -> dict[str, Any] | None:
        if name not in self:
            return None
        head = self.get(name)
        return {"config": dict(head.head_config), "name": name, "hidden_size": _hidden_size(self.model),
                "state_dict": {k: v.detach().clone() for k, v in head.state_dict().items()}}

    def parameters(self, name: str) -> list[Any]:
        return list(self.get(name).parameters()) if name in self else []

    # -- hooks --------------------------------------------------------------------------------

    def _install_hooks(self) -> None:
        encoder = getattr(self.model, "base_model", None)
        encoder = self.model if encoder is None else encoder
        self._hooks = [
            encoder.register_forward_hook(self._keep_encoder_output),
            self.model.register_forward_pre_hook(self._take_labels, with_kwargs=True),
            self.model.register_forward_hook(self._answer),
        ]

    def _keep_encoder_output(self, module: Any, args: Any, output: Any) -> None:
        if not self.route.idle:
            self._encoder_output = output

    def _take_labels(self, module: Any, args: tuple, kwargs: dict) -> tuple[tuple, dict]:
        # labels are for the answering head; the model's own head may have another label count
        self._labels = None
        self._input_ids = kwargs.get("input_ids", args[0] if args else None)
        if not self.route.idle and "labels" in kwargs:
            kwargs = dict(kwargs)
            self._labels = kwargs.pop("labels")
        return args, kwargs

    def _answer(self, module: Any, args: Any, output: Any) -> Any:
        encoder_output, labels, input_ids = self._encoder_output, self._labels, self._input_ids
        self._encoder_output = self._labels = self._input_ids = None
        if self.route.idle:
            return output
        if encoder_output is None:
            raise UsageError(f"{type(self.model).__name__}.base_model did not run: the adapter head has no input")
        if not hasattr(output, "keys"):
            raise UsageError("adapter heads need dict-like model outputs", hint="do not pass return_dict=False")
        if not self.route.multi:
            return self._with_head(output, self.route.heads[0], encoder_output, labels, input_ids)
        total = int(encoder_output[0].shape[0])
        bounds = slice_rows(self.route.split, total)
        outputs = []
        for head, (start, stop) in zip(self.route.heads, bounds, strict=True):
            part = type(output)() if _constructible(output) else {}
            for key, value in output.items():
                if key != "loss":
                    part[key] = _rows_of(value, start, stop, total)
            rows = _rows_of(encoder_output[0], start, stop, total)
            pooled = getattr(encoder_output, "pooler_output", None)
            pooled = None if pooled is None else pooled[start:stop]
            sliced_labels = None if labels is None else labels[start:stop]
            sliced_ids = None if input_ids is None else _rows_of(input_ids, start, stop, total)
            outputs.append(self._with_head(part, head, (rows, pooled), sliced_labels, sliced_ids))
        return MultiHeadOutput(outputs, list(self.route.heads), list(self.route.split.children), bounds)

    def _with_head(self, output: Any, head_name: str | None, encoder_output: Any, labels: Any,
                   input_ids: Any = None) -> Any:
        if head_name is MODEL_HEAD:
            return output
        head = self.get(head_name)
        config = getattr(self.model, "config", None)
        last_token = None
        if getattr(config, "model_type", None) in LAST_TOKEN_MODEL_TYPES:
            last_token = (getattr(config, "pad_token_id", None), input_ids)
        logits = head(_head_input(head.head_config, encoder_output, last_token))
        output["logits"] = logits
        if labels is not None:
            output["loss"] = _loss(head.head_config, logits, labels)
        return output


def _constructible(output: Any) -> bool:
    try:
        type(output)()
    except Exception:  # noqa: BLE001 - any output class that needs arguments: use a plain dict
        return False
    return True
