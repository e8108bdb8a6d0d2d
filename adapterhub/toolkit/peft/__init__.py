"""Plumbing for methods that wrap a PEFT layer tuner (as PEFT's ``tuners_utils.py`` serves its tuners).

:class:`PeftTunerMethod` (:mod:`.method`) is the base class; the LoRA and IA3 plugins subclass it.
"""

from ...plugin.records import BASE_ROW
from .files import OWNED_TENSORS, PEFT_PREFIX, jsonable_config, strip_peft_prefix
from .isolate import others_hidden
from .method import PeftTunerMethod, canonical_key, layer_attributes
from .streaming import layer_orientation, match_pattern_key, shape_problem

__all__ = [
    "BASE_ROW",
    "OWNED_TENSORS",
    "PEFT_PREFIX",
    "PeftTunerMethod",
    "canonical_key",
    "jsonable_config",
    "layer_attributes",
    "layer_orientation",
    "match_pattern_key",
    "others_hidden",
    "shape_problem",
    "strip_peft_prefix",
]
