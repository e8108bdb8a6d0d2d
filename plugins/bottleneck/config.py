"""Bottleneck adapter configs: every ``BnConfig`` field of ``adapters`` 1.3.0 with its default,
the presets the library names (and their legacy aliases), and :func:`normalise_config`, which
fills a user's or a file's config up to the full key set and refuses what is not supported.
"""

from __future__ import annotations

from typing import Any

from adapterhub.plugin import UnsupportedOperationError

#: Every BnConfig field of adapters 1.3.0 with its class default (the key set we write).
BN_DEFAULTS: dict[str, Any] = {
    "mh_adapter": False, "output_adapter": True, "reduction_factor": 16, "non_linearity": "relu",
    "original_ln_before": True, "original_ln_after": True, "ln_before": False, "ln_after": False,
    "init_weights": "bert", "init_weights_seed": None, "is_parallel": False, "scaling": 1.0,
    "use_gating": False, "residual_before_ln": True, "adapter_residual_before_ln": False,
    "inv_adapter": None, "inv_adapter_reduction_factor": None, "cross_adapter": False,
    "leave_out": [], "dropout": 0.0, "phm_layer": False, "phm_dim": 4, "factorized_phm_W": True,
    "shared_W_phm": False, "shared_phm_rule": True, "factorized_phm_rule": False,
    "phm_c_init": "normal", "phm_init_range": 0.0001, "learn_phm": True,
    "hypercomplex_nonlinearity": "glorot-uniform", "phm_rank": 1, "phm_bias": True,
    "stochastic_depth": 0.0,
}

#: The presets adapters names (and the legacy aliases), as overrides of BN_DEFAULTS.
BN_PRESETS: dict[str, dict[str, Any]] = {
    "seq_bn": {},
    "double_seq_bn": {"mh_adapter": True, "non_linearity": "swish", "original_ln_before": False},
    "par_bn": {"original_ln_before": False, "is_parallel": True, "reduction_factor": 2,
               "scaling": 4.0, "init_weights": "mam_adapter"},
}
# Compacter (PHM layers): CompacterConfig is double_seq_bn, CompacterPlusPlusConfig seq_bn, both with these.
BN_PRESETS["compacter"] = {**BN_PRESETS["double_seq_bn"], "phm_layer": True, "reduction_factor": 32,
                           "non_linearity": "gelu"}
BN_PRESETS["compacter++"] = {"phm_layer": True, "reduction_factor": 32, "non_linearity": "gelu"}
BN_PRESETS["pfeiffer"] = BN_PRESETS["seq_bn"]
BN_PRESETS["houlsby"] = BN_PRESETS["double_seq_bn"]
BN_PRESETS["parallel"] = BN_PRESETS["par_bn"]


def normalise_config(config: dict[str, Any]) -> dict[str, Any]:
    """Fill a user/preset config up to the full BnConfig key set."""
    if isinstance(config.get("config"), dict):  # a whole adapters adapter_config.json
        config = config["config"]
    config = dict(config)
    preset = config.pop("preset", None) or config.pop("type", None) or "seq_bn"
    if preset not in BN_PRESETS:
        raise UnsupportedOperationError(
            f"unknown bottleneck preset {preset!r}", hint=f"use one of {sorted(BN_PRESETS)}")
    unknown = set(config) - set(BN_DEFAULTS)
    if unknown:
        raise UnsupportedOperationError(
            f"unknown bottleneck config keys {sorted(unknown)}",
            hint=f"known keys: {', '.join(sorted(BN_DEFAULTS))}")
    full = {**BN_DEFAULTS, **BN_PRESETS[preset], **config}
    if full["inv_adapter"]:
        raise UnsupportedOperationError("invertible adapters (inv_adapter) are not supported")
    if full["cross_adapter"]:
        raise UnsupportedOperationError("cross_adapter (encoder-decoder cross attention) is not supported")
    return full
