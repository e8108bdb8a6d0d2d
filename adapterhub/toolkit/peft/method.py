"""``PeftTunerMethod``: a base for methods that wrap one of PEFT's layer tuners (LoRA, IA3, ...).

PEFT does the math (layers, forward, merge); this package adds what the runtime needs on top:
transactional injection, exact (bit-identical) unmerge and removal, composition, and PEFT-compatible
reading and saving. The class is assembled from one mixin per job:

=====================  ===========================================================================
:mod:`.files`          ``detect``, ``read``, ``save`` (PEFT's format; AdapterHub's via :mod:`.adapters_lora`)
:mod:`.check`          ``peft_config``, ``check``, ``check_tensor``, ``base_module``
:mod:`.inject`         ``apply``, ``create``, purging a half-injected or removed adapter
:mod:`.activate`       ``loaded_names``, ``layers``, ``activate_stack``/``_average``
:mod:`.rows`           ``activate_rows``: one adapter per row, from stacked weights (:mod:`.row_kernels`)
:mod:`.merge`          ``merge``, ``unmerge``, ``remove``, ``unload``
:mod:`.streaming`      ``merge_updates``: merging into a checkpoint without a model (``module_updates``)
:mod:`.tuner_object`   PEFT's tuner object kept per model (``keeps_tuner``)
:mod:`.tuners`         PEFT's registry: the tuner and layer classes of a ``peft_type``
:mod:`.support`        what PEFT supports for a type (merge, stack, per-row), by running PEFT
this module            ``export``, ``parameters``, per-model state
=====================  ===========================================================================

A subclass sets ``name`` and ``peft_type``; ``layer_class`` and ``param_markers`` default to what
PEFT's registry says of the type (its tuner's ``tuner_layer_cls`` and the ``adapter_layer_names``
of that class and its subclasses). It may override:
``check_tensor`` (shapes of its tensors), ``merge_layer`` (fold one layer), ``copy_parameter``
(the copy merged into), ``average_adapters`` and ``reset_scales`` (Average),
``activate_rows``, and ``module_updates`` (its merge maths, for ``adapterhub export``).

No torch at import time: plugins import this module when they register.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Any, ClassVar

from ...errors import AdapterNotLoadedError
from ...plugin.contract import AdapterMethod
from ...plugin.records import AdapterFiles
from ..model_state import PerModel
from ..structure import unwrapped_name
from . import tuner_object
from .activate import PeftActivation
from .check import PeftChecks
from .files import PeftFiles, jsonable_config
from .inject import PeftInjection, owns_param
from .merge import PeftMerging
from .rows import PeftRows
from .streaming import PeftStreamedMerge


@dataclass
class PeftModelState:
    """Per-model bookkeeping of one method (kept outside the model so state_dict stays PEFT's)."""

    merged: dict[str, float] = field(default_factory=dict)  # name -> weight, in merge order
    # True while layer scales may differ from the config's (an Average ran); a fresh state does not
    # know, so the first activation resets them
    scaled: bool = True
    # layer -> {param name: the original Parameter object}; restoring them makes unmerge exact
    originals: dict[Any, dict[str, Any]] = field(default_factory=dict)
    hooks: list[Any] = field(default_factory=list)
    rows: Any = None  # RowState (:mod:`.rows`) once a batch was served one adapter per row
    # layer -> its base module when first merged into: a merge that swaps modules is undone by PEFT
    bases: dict[Any, Any] = field(default_factory=dict)
    # PEFT's tuner object, for a method with keeps_tuner (as PeftModel.base_model)
    tuner: Any = None


def canonical_key(key: str) -> str:
    """A PEFT state-dict key with other tuners' wrappers taken out.

    When other methods wrap the same module, PEFT's keys for the inner one go through each outer
    layer's ``base_layer`` (``value.base_layer.lora_A.weight``, ``value.base_layer.base_layer...``
    under two). The adapter itself does not depend on what else wraps the module, so neither do its
    saved keys: ``value.lora_A.weight``.
    """
    return unwrapped_name(key)


def layer_attributes(layer_cls: type, *, other: bool = True) -> set[str]:
    """The attribute names under which PEFT's layers of a class and of its subclasses (AdaLoRA's
    under LoRA's) hold adapter tensors: ``adapter_layer_names``, and ``other_param_names`` unless
    ``other`` is False."""
    names: set[str] = set()
    stack = [layer_cls]
    while stack:
        cls = stack.pop()
        names.update(getattr(cls, "adapter_layer_names", ()))
        if other:
            names.update(getattr(cls, "other_param_names", ()))
        stack.extend(cls.__subclasses__())
    return names


def canonical_keys(state_dict: dict[str, Any]) -> dict[str, Any]:
    """:func:`canonical_key` for every key, except where two keys would become one: PEFT nests a
    layer inside another of its own kind for tied weights (``lm_head.base_layer.<tensor>`` next to
    ``lm_head.<tensor>``), and those keys are PEFT's own, kept as they are."""
    collapsed = [canonical_key(k) for k in state_dict]
    clashes = {k for k in collapsed if collapsed.count(k) > 1}
    return {(k if c in clashes else c): v for (k, v), c in zip(state_dict.items(), collapsed, strict=True)}


class PeftTunerMethod(PeftFiles, PeftChecks, PeftInjection, PeftActivation, PeftRows, PeftMerging,
                      PeftStreamedMerge, AdapterMethod):
    """Shared implementation for a PEFT tuner type. Subclasses set the class attributes below."""

    #: PEFT's ``peft_type`` string.
    peft_type: ClassVar[str]
    #: Import path of PEFT's layer class, e.g. ``("peft.tuners.lora", "LoraLayer")``; None: the
    #: ``tuner_layer_cls`` of the type's tuner in PEFT's registry.
    layer_class: ClassVar[tuple[str, str] | None] = None
    #: Substrings that mark this method's parameters in PEFT state-dict keys; None: the layer
    #: class's ``adapter_layer_names``.
    param_markers: ClassVar[tuple[str, ...] | None] = None
    #: Keep PEFT's tuner object per model and add adapters to it as ``PeftModel`` does
    #: (:mod:`.tuner_object`) instead of ``inject_adapter_in_model``.
    keeps_tuner: ClassVar[bool] = False
    #: ``architecture`` value of an AdapterHub-format config this method reads.
    adapters_architecture: ClassVar[str | None] = None
    formats = ("peft", "adapters")

    def __init__(self) -> None:
        self._states: PerModel[PeftModelState] = PerModel(PeftModelState)

    def _state(self, model: Any) -> PeftModelState:
        return self._states(model)

    def _layer_cls(self) -> type:
        import importlib

        if self.layer_class is None:
            from .tuners import layer_class

            return layer_class(self.peft_type)
        module, name = self.layer_class
        return getattr(importlib.import_module(module), name)

    def _tuner_cls(self) -> type:
        from .tuners import tuner_class

        return tuner_class(self.peft_type)

    def _param_markers(self) -> tuple[str, ...]:
        if self.param_markers is not None:
            return self.param_markers
        return tuple(sorted(layer_attributes(self._layer_cls(), other=False)))

    def export(self, model: Any, name: str) -> AdapterFiles:
        import peft
        from peft import get_peft_model_state_dict

        configs = getattr(model, "peft_config", None) or {}
        if name not in configs:
            raise AdapterNotLoadedError(f"{self.name} adapter {name!r} is not loaded on this model")
        tuner = self._state(model).tuner if self.keeps_tuner else None
        extras: dict[str, Any] = {}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if tuner is not None:
                state_dict, extras["tuner_state"] = tuner_object.export(tuner, name)
                extras["tuner_state"] = {k: v.detach().clone() for k, v in extras["tuner_state"].items()}
            else:
                state_dict = get_peft_model_state_dict(model, adapter_name=name, save_embedding_layers=False)
        config = jsonable_config(configs[name].to_dict())
        if not config.get("base_model_name_or_path"):
            config["base_model_name_or_path"] = getattr(model, "name_or_path", None) or None
        config["peft_version"] = config.get("peft_version") or peft.__version__
        config["inference_mode"] = True
        return AdapterFiles(
            self.name,
            config,
            canonical_keys({k: v.detach().clone() for k, v in state_dict.items()}),
            format="peft",
            model_type=getattr(getattr(model, "config", None), "model_type", None),
            extras={k: v for k, v in extras.items() if v},
        )

    def parameters(self, model: Any, name: str) -> list[Any]:
        return [
            p
            for n, p in model.named_parameters()
            if owns_param(n, name, self._param_markers())
        ]
