"""What the generic plugin knows of PEFT's types without importing PEFT.

``PEFT_TYPES`` is PEFT 0.21.2's ``PeftType`` enum, listed here so that registering the plugin (which
the torch-free install path does, to record an adapter's method) needs no ``import peft``; a test
holds it to the installed PEFT's enum. Everything else about a type (its classes, whether it runs,
what it supports) is read from PEFT when needed (``adapterhub.toolkit.peft.tuners`` and ``.support``).
"""

from __future__ import annotations

from typing import Any

PEFT_TYPES = (
    "PROMPT_TUNING", "MULTITASK_PROMPT_TUNING", "P_TUNING", "PREFIX_TUNING", "LORA", "ADALORA", "ADAMSS",
    "BOFT", "ADAPTION_PROMPT", "IA3", "BEFT", "LILY", "LOHA", "LOKR", "OFT", "POLY", "LN_TUNING", "VERA",
    "FROD", "PVERA", "FOURIERFT", "GLORA", "XLORA", "HRA", "VBLORA", "UNILORA", "CPT", "MISS", "RANDLORA",
    "ROAD", "TRAINABLE_TOKENS", "HIRA", "SHIRA", "C3A", "WAVEFT", "OSF", "DELORA", "GRALORA", "CARTRIDGE",
    "TINYLORA", "PSOFT", "PEANUT", "SHADOW", "SUPERTUNING", "DEFT",
)

#: Config fields PEFT requires for a type and has no usable default for (or whose default makes the
#: probe slow); used only to build the probe adapters that find out what PEFT supports
#: (adapterhub.toolkit.peft.support).
PROBE_HINTS: dict[str, dict[str, Any]] = {
    "ADALORA": {"total_step": 1},
    "ADAMSS": {"r": 8, "num_subspaces": 2},
    "IA3": {"feedforward_modules": []},
    "TRAINABLE_TOKENS": {"token_indices": [1, 2], "target_modules": ["embed"]},
    "FROD": {"progressbar": False},
}

#: What a refused type would need that the runtime lacks, in words (added to PEFT-derived reasons).
NEEDS: dict[str, str] = {
    "XLORA": "X-LoRA mixes LoRA experts per token with a trained classifier that runs inside PEFT's "
             "XLoraModel; adapterhub has no classifier stage",
    "POLY": "Poly mixes its skills by a router indexed with each row's task id",
    "MULTITASK_PROMPT_TUNING": "it picks a prompt per row by task id",
    "ADAPTION_PROMPT": "it replaces the attention modules with PEFT's adapted attention",
    "CPT": "context-aware prompt tuning builds its prompt from token ids inside PeftModel.forward",
    "CARTRIDGE": "a cartridge is a trained key/value cache that PEFT's PeftModel feeds to attention",
}

#: Layer tuners the runtime still cannot run, and why (PEFT's classes cannot tell).
REFUSED: dict[str, str] = {
    "SHADOW": "ShadowPEFT runs a separate shadow network that PEFT keeps on its ShadowModel, outside the "
              "model, and attaches with forward hooks on the model; adapterhub could not switch it to eval "
              "mode, move it with the model or take its hooks off with the adapter (PEFT's "
              "inject_adapter_in_model refuses it for the same reason)",
}

#: Tensors a type stores as integers (sparse index sets), named by the last part of their key; every
#: other tensor of a PEFT type is floating point. Found by scanning what PEFT 0.21.2 saves for every
#: type (tests/fixtures/peft-0.21.2-types; a test checks this table against those files).
INTEGER_TENSORS: dict[str, tuple[str, ...]] = {
    "SHIRA": ("shira_indices",),
    "SUPERTUNING": ("supertuning_indices",),
}
INTEGER_DTYPES = frozenset({"I64", "I32", "I16", "I8", "U8"})
