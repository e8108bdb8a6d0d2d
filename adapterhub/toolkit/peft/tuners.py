"""PEFT's registry of tuner types, read from PEFT itself: the tuner and layer classes behind a
``peft_type``, and whether the runtime can run the type at all (and if not, why).

PEFT maps every ``peft_type`` to a config class and a tuner class (``peft.mapping``). A *layer
tuner* (a ``BaseTuner`` with a ``tuner_layer_cls``) puts its own layers into the model, which is
what :class:`~.method.PeftTunerMethod` manages. Everything else runs only inside PEFT's own
``PeftModel``: prompt learning (virtual tokens added in ``PeftModel.forward``), tuners that are not
``BaseTuner``s, tuners without layers, and tuners that route every row by ``task_ids``.
:func:`refusal` says which of those a type is, from PEFT's classes; nothing here names a type.

Imports peft (and torch) when called; importing this module does not.
"""

from __future__ import annotations

import inspect
from functools import cache
from typing import Any


def _mapping() -> tuple[dict[Any, Any], dict[Any, Any]]:
    from peft.mapping import PEFT_TYPE_TO_CONFIG_MAPPING, PEFT_TYPE_TO_TUNER_MAPPING

    return PEFT_TYPE_TO_CONFIG_MAPPING, PEFT_TYPE_TO_TUNER_MAPPING


def known_types() -> list[str]:
    """Every ``peft_type`` the installed PEFT knows (its ``PeftType`` enum), in PEFT's order."""
    from peft.utils.peft_types import PeftType

    return [t.value for t in PeftType]


def config_class(peft_type: str) -> Any:
    """PEFT's config class for ``peft_type`` (None when PEFT does not know it)."""
    configs, _ = _mapping()
    return next((c for t, c in configs.items() if _value(t) == peft_type.upper()), None)


def tuner_class(peft_type: str) -> Any:
    """PEFT's tuner class for ``peft_type`` (``LoHaModel`` for ``LOHA``); None when PEFT has none."""
    _, tuners = _mapping()
    return next((c for t, c in tuners.items() if _value(t) == peft_type.upper()), None)


def layer_class(peft_type: str) -> Any:
    """The base class of the layers PEFT injects for ``peft_type`` (the tuner's ``tuner_layer_cls``)."""
    return getattr(tuner_class(peft_type), "tuner_layer_cls", None)


def _value(peft_type: Any) -> str:
    return str(getattr(peft_type, "value", peft_type)).upper()


def _takes_task_ids(fn: Any) -> bool:
    try:
        return "task_ids" in inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return False


@cache
def refusal(peft_type: str) -> str | None:
    """Why the runtime cannot run ``peft_type`` (a sentence naming the type), or None when it can.

    Decided from PEFT's classes: the runtime injects a layer tuner's layers into the model and
    drives them itself, so it can run exactly the layer tuners whose forward needs nothing but the
    model's own inputs.
    """
    from peft import __version__ as peft_version
    from peft.config import PromptLearningConfig
    from peft.tuners.tuners_utils import BaseTuner

    kind = peft_type.upper()
    config_cls, tuner = config_class(kind), tuner_class(kind)
    if config_cls is None or tuner is None:
        return f"{kind} is not a PEFT {peft_version} adapter type"
    if issubclass(config_cls, PromptLearningConfig):
        why = (f"{kind} is prompt learning: PEFT adds its virtual tokens inside its own PeftModel.forward "
               f"({tuner.__name__}), not through layers that can be injected into a model")
        if _takes_task_ids(getattr(tuner, "forward", None)):
            why += "; it also needs task_ids for every row, which the runtime does not pass"
        return why
    if not (isinstance(tuner, type) and issubclass(tuner, BaseTuner)):
        return (f"{kind} is implemented by PEFT's {tuner.__name__}, which is not a layer tuner: PEFT runs it "
                f"only inside its own PeftModel")
    if getattr(tuner, "tuner_layer_cls", None) is None:
        return (f"{kind} ({tuner.__name__}) has no layers of its own to inject: PEFT runs it only inside its "
                "own PeftModel")
    if _takes_task_ids(tuner.forward):
        return (f"{kind} routes every row by task_ids ({tuner.__name__}.forward(task_ids=...)), which the "
                "runtime does not pass")
    return None
