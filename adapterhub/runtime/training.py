"""What training needs from an ``AdapterModel``: which adapters train, the tensors a training checkpoint
holds, and writing the trained adapters in their own format. A mixin of
:class:`~adapterhub.runtime.model.AdapterModel`, which owns the state (``_infos``, ``_heads``, ...).

**transformers' Trainer.** ``Trainer`` saves a ``PreTrainedModel`` or a ``PeftModel`` with its
``save_pretrained``; any other ``torch.nn.Module`` (an ``AdapterModel`` is one) is checkpointed as
``model.safetensors`` written from ``model.state_dict()``, and ``resume_from_checkpoint`` and
``load_best_model_at_end`` read that file back with ``load_state_dict``. So here ``state_dict()``
holds the tensors of the trainable adapters and heads only: a checkpoint carries no base-model
weight, and resuming restores exactly what was trained (P-tuning's prompt encoder too, which the
PEFT format, holding only the encoder's output, cannot give back). The adapters in their methods'
own formats are what :meth:`AdapterTraining.save_pretrained` writes;
:class:`~adapterhub.runtime.callbacks.SaveAdaptersCallback` writes them into every checkpoint.

**Which parameters train.** Exactly those of the trainable adapters (created by ``add_adapter``,
or loaded with ``is_trainable=True``, or passed to :meth:`set_trainable`) that are active, and
their heads; the base model stays frozen. Gradient checkpointing is the wrapped model's
(``gradient_checkpointing_enable`` / ``activation_checkpointing_enable`` reach it unchanged).
"""

from __future__ import annotations

import inspect
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ..errors import UnsupportedOperationError, UsageError
from ..plugin.registry import get_method

#: keyword arguments of ``PeftModel.save_pretrained`` that have no meaning here (always safetensors,
#: never embedding layers, the state is the model's own)
_IGNORED_SAVE_ARGUMENTS = frozenset({"safe_serialization", "save_embedding_layers", "state_dict", "max_shard_size"})


class AdapterTraining:
    """set_trainable / state_dict / load_state_dict / save_pretrained (see the module docstring)."""

    #: transformers' Trainer reads this after a load that left keys missing; nothing is tied here
    _keys_to_ignore_on_save = None

    # -- which adapters train ------------------------------------------------------------------

    @property
    def trainable_adapters(self) -> list[str]:
        """Names of the adapters that train when active (created ones, or made trainable)."""
        return [n for n, info in self._infos.items() if info.trainable]

    def set_trainable(self, adapter_names: str | Sequence[str], trainable: bool = True) -> None:
        """Make loaded adapters (and their heads) trainable, e.g. to continue training one from disk
        or the Hub; the base model is frozen, as for a new adapter. ``trainable=False`` freezes them
        again. Only active adapters get gradients."""
        names = [adapter_names] if isinstance(adapter_names, str) else list(adapter_names)
        for name in names:
            method = self._method(name)
            if trainable and not method.trainable:
                raise UnsupportedOperationError(f"adapter {name!r}: method {method.name!r} cannot be trained")
            if name in self._merged:
                raise UnsupportedOperationError(f"adapter {name!r} is merged", hint="call unmerge_adapter() first")
        if trainable:
            # training an adapter means a frozen base, as add_adapter leaves it (the trainable adapters
            # that are active get their flags back just below)
            self.model.requires_grad_(False)
        for name in names:
            info = self._infos[name]
            method = get_method(info.method)
            if trainable and not info.trainable:
                method.make_trainable(self.model, name)
            info.trainable = trainable
            if name in self._heads:
                (self._trainable_heads.add if trainable else self._trainable_heads.discard)(name)
            if not trainable:
                for p in [*method.parameters(self.model, name), *self._heads.parameters(name)]:
                    p.requires_grad_(False)
        self._apply_trainable()

    # -- how many train (PEFT's names) ----------------------------------------------------------

    def get_nb_trainable_parameters(self) -> tuple[int, int]:
        """(trainable parameters, all parameters), as PEFT's method of the same name."""
        trainable = total = 0
        for p in self.model.parameters():
            count = p.numel()
            if type(p).__name__ == "Params4bit":  # two 4-bit weights per byte of storage, as PEFT counts them
                storage = getattr(p, "quant_storage", None)
                count *= 2 * (storage.itemsize if storage is not None else p.element_size())
            total += count
            if p.requires_grad:
                trainable += count
        return trainable, total

    def print_trainable_parameters(self) -> None:
        """Print PEFT's line: trainable params, all params and the trainable share."""
        trainable, total = self.get_nb_trainable_parameters()
        share = 100 * trainable / total if total else 0.0
        print(f"trainable params: {trainable:,d} || all params: {total:,d} || trainable%: {share:.4f}")

    # -- what transformers' Trainer reads --------------------------------------------------------

    @property
    def _hf_peft_config_loaded(self) -> bool:
        # transformers' Trainer refuses to train a quantized model unless this says adapters are attached
        return bool(self.trainable_adapters)

    @property
    def accepts_loss_kwargs(self) -> bool:
        """Whether the loss uses Trainer's ``num_items_in_batch`` (then Trainer does not average it over
        gradient accumulation itself): the wrapped model's answer, except that an adapter's head
        computes a mean loss of its own."""
        if not self._heads.route.idle:
            return False
        flag = getattr(self.model, "accepts_loss_kwargs", None)
        if flag is not None:
            return bool(flag)
        parameters = inspect.signature(self.model.forward).parameters.values()
        return any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters)

    def _trainable_parameters(self) -> dict[str, Any]:
        """Parameter name (as ``named_parameters()`` gives it) -> parameter, for every trainable adapter and head."""
        wanted: set[int] = set()
        for name in self.trainable_adapters:
            wanted.update(id(p) for p in get_method(self._infos[name].method).parameters(self.model, name))
        for name in self._trainable_heads:
            wanted.update(id(p) for p in self._heads.parameters(name))
        return {n: p for n, p in self.named_parameters() if id(p) in wanted}

    def state_dict(self, *args: Any, destination: Any = None, prefix: str = "", keep_vars: bool = False) -> Any:
        """The trainable adapters' and heads' tensors, by parameter name: what a training checkpoint
        holds. The whole model's state is ``am.model.state_dict()``."""
        if args:
            raise TypeError("AdapterModel.state_dict takes keyword arguments only")
        out = OrderedDict() if destination is None else destination
        for name, param in self._trainable_parameters().items():
            out[prefix + name] = param if keep_vars else param.detach()
        return out

    def load_state_dict(self, state_dict: Mapping[str, Any], strict: bool = True, assign: bool = False) -> Any:
        """Copy tensors from :meth:`state_dict` (a training checkpoint) into the trainable adapters."""
        import torch
        from torch.nn.modules.module import _IncompatibleKeys

        own = self._trainable_parameters()
        missing = [k for k in own if k not in state_dict]
        unexpected = [k for k in state_dict if k not in own]
        wrong = [f"{k}: {tuple(state_dict[k].shape)} in the checkpoint, {tuple(own[k].shape)} in the model"
                 for k in own if k in state_dict and tuple(state_dict[k].shape) != tuple(own[k].shape)]
        if wrong or (strict and (missing or unexpected)):
            raise RuntimeError(
                "Error(s) in loading state_dict for AdapterModel: "
                + "; ".join([*(f"size mismatch for {w}" for w in wrong),
                             *([f"missing keys {missing[:5]}"] if missing else []),
                             *([f"unexpected keys {unexpected[:5]}"] if unexpected else [])])
                + " (an AdapterModel's state dict holds its trainable adapters: create the same adapters, "
                "with the same names and options, before loading a checkpoint)")
        with torch.no_grad():
            for key, param in own.items():
                if key in state_dict:
                    param.copy_(state_dict[key].to(device=param.device, dtype=param.dtype))
        return _IncompatibleKeys(missing, unexpected)

    @property
    def base_model(self) -> Any:
        """The wrapped model's backbone (``model.base_model``: the ``LlamaModel`` in a ``LlamaForCausalLM``),
        as the adapters see it: calling it runs the whole adapted model up to the backbone's output.

        TRL's trainers replace ``forward`` with a fused LM head that calls ``model.base_model(...)``
        and projects its hidden states itself. Calling the bare backbone would skip what adapters do
        around it (prompt tuning and P-tuning prepend virtual tokens to the wrapped model's input), so
        this runs the wrapped model and stops at the backbone's output, keeping the hidden states of
        the real tokens only (the labels TRL aligns them with have no virtual positions). Attributes
        are the backbone's own.
        """
        return _AdaptedBackbone(self)

    # -- saving ----------------------------------------------------------------------------------

    def save_pretrained(
        self,
        save_directory: str | Path,
        selected_adapters: Sequence[str] | None = None,
        *,
        is_main_process: bool = True,
        **kwargs: Any,
    ) -> list[Path]:
        """Write adapters in their methods' own formats (PEFT's name and argument order).

        ``selected_adapters``: default the trainable adapters, else the active ones. One adapter is
        written into ``save_directory`` itself; several go into ``save_directory/<name>/`` each.
        """
        unknown = set(kwargs) - _IGNORED_SAVE_ARGUMENTS
        if unknown:
            raise TypeError(f"save_pretrained() got unexpected keyword arguments {sorted(unknown)}")
        if kwargs.get("safe_serialization") is False:
            raise UsageError("adapterhub saves safetensors only", hint="drop safe_serialization=False")
        names = list(selected_adapters) if selected_adapters is not None else (
            self.trainable_adapters or self.active_adapters)
        if not names:
            raise UsageError("save_pretrained: no adapter to save", hint="add_adapter() or load_adapter() first")
        if not is_main_process:
            return []
        root = Path(save_directory)
        written: list[Path] = []
        for name in names:
            written += self.save_adapter(root if len(names) == 1 else root / name, name)
        return written


class _StopAtBackbone(Exception):
    def __init__(self, output: Any) -> None:
        super().__init__("backbone reached")
        self.output = output


class _AdaptedBackbone:
    """``AdapterModel.base_model``: see there."""

    def __init__(self, adapter_model: Any) -> None:
        self._am = adapter_model
        self._backbone = getattr(adapter_model.model, "base_model", adapter_model.model)

    def __getattr__(self, item: str) -> Any:
        return getattr(self._backbone, item)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        am = self._am
        if self._backbone is am.model:
            return am(*args, **kwargs)  # a bare backbone: the wrapped model is all there is

        def stop(module: Any, inputs: Any, output: Any) -> None:
            raise _StopAtBackbone(output)

        first = args[0] if args else kwargs.get("input_ids", kwargs.get("inputs_embeds"))
        handle = self._backbone.register_forward_hook(stop)
        try:
            am(*args, **kwargs)
        except _StopAtBackbone as reached:
            output = reached.output
        else:
            raise RuntimeError(f"{type(am.model).__name__} did not run its backbone")
        finally:
            handle.remove()
        hidden = output.last_hidden_state
        real = first.shape[1] if first is not None else hidden.shape[1]
        if hidden.shape[1] > real:  # virtual tokens in front of the real ones
            output.last_hidden_state = hidden[:, hidden.shape[1] - real:]
        return output
