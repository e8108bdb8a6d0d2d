"""What a method plugin imports: the whole public plugin API, in one namespace.

A plugin is a module (or object) with ``@hookimpl`` functions for the hooks in
:mod:`adapterhub.plugin.hookspecs`; ``register_methods(register)`` hands the host one
:class:`AdapterMethod` per PEFT method. Helpers for writing methods (tensor I/O with the pickle
policy, adapter folders, per-model state, PEFT tuner plumbing, the AdapterHub format, 4-bit
layers) are in :mod:`adapterhub.toolkit`. A plugin imports nothing else of adapterhub's; a test
enforces that for the built-in plugins and the example plugin.

Modules: :mod:`.contract` (``AdapterMethod``), :mod:`.records` (the typed records that cross it:
``AdapterFiles``, and ``ParamUpdate``/``MergeSite`` for merging into a checkpoint without a model;
``read_adapter_config`` and the tensor types adapter files may hold), :mod:`.hookspecs`
(the hooks), :mod:`.manager` (pluggy's manager, loading and strict mode), :mod:`.registry` (what
the plugins registered, and which method claims a folder) and :mod:`.weighted` (the checked request
behind ``add_weighted_adapter``).
"""

from __future__ import annotations

from ..errors import (
    AdapterExistsError,
    AdapterFormatError,
    AdapterNotLoadedError,
    CompositionError,
    IncompatibleBaseModelError,
    PickleRefusedError,
    UnsupportedOperationError,
)
from .contract import AdapterMethod
from .hookspecs import hookimpl
from .records import (
    BASE_ROW,
    COMBINE_MODES,
    CONFIG_NAME,
    FLOAT_DTYPES,
    QUANTIZED_DTYPES,
    AdapterFiles,
    MergeSite,
    ParamUpdate,
    read_adapter_config,
)
from .registry import detect_method, get_method, get_methods
from .weighted import COMBINATION_TYPES, WeightedRequest

__all__ = [
    "BASE_ROW",
    "COMBINATION_TYPES",
    "COMBINE_MODES",
    "CONFIG_NAME",
    "FLOAT_DTYPES",
    "QUANTIZED_DTYPES",
    "AdapterExistsError",
    "AdapterFiles",
    "AdapterFormatError",
    "AdapterMethod",
    "AdapterNotLoadedError",
    "CompositionError",
    "IncompatibleBaseModelError",
    "MergeSite",
    "ParamUpdate",
    "PickleRefusedError",
    "UnsupportedOperationError",
    "WeightedRequest",
    "detect_method",
    "get_method",
    "get_methods",
    "hookimpl",
    "read_adapter_config",
]
