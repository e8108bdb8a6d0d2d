"""What ``adapterhub train`` uses when the user says nothing: each method's options and learning rate,
and LoRA's usual target modules for the architecture. No torch at import time.

The learning rates are the ones ``benchmarks/methods_table.py`` trains with (README, "Choosing a
method"): adapters train far fewer weights than full fine-tuning and take larger steps; prompts
take the largest.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..errors import UsageError

#: methods ``adapterhub train`` can train (QLoRA: LoRA on the base quantised to 4-bit nf4)
METHODS = ("lora", "qlora", "ia3", "prompt_tuning", "prefix_tuning", "p_tuning", "bottleneck", "bitfit")

#: options a method gets unless the user sets them (LoRA's target modules are added per architecture)
DEFAULT_OPTIONS: dict[str, dict[str, Any]] = {
    "lora": {"r": 8, "lora_alpha": 16, "lora_dropout": 0.05},
    "qlora": {"r": 8, "lora_alpha": 16, "lora_dropout": 0.05},
    "ia3": {},  # PEFT picks its usual target and feed-forward modules for the architecture
    "prompt_tuning": {"num_virtual_tokens": 10},
    "prefix_tuning": {"num_virtual_tokens": 10},
    "p_tuning": {"num_virtual_tokens": 10, "encoder_hidden_size": 128},
    "bottleneck": {"preset": "seq_bn", "reduction_factor": 16},
    "bitfit": {},
}

DEFAULT_LEARNING_RATE: dict[str, float] = {
    "full": 1e-4,
    "lora": 2e-3,
    "qlora": 2e-3,
    "ia3": 1e-2,
    "prompt_tuning": 3e-2,
    "prefix_tuning": 1e-2,
    "p_tuning": 1e-2,
    "bottleneck": 3e-3,
    "bitfit": 5e-3,
}


@dataclass
class Recipe:
    """One training run's method and hyperparameters, defaults filled in."""

    method: str
    options: dict[str, Any] = field(default_factory=dict)
    epochs: float = 3.0
    learning_rate: float | None = None  # None: the method's default
    batch_size: int = 16
    seed: int = 42
    max_length: int = 128
    max_steps: int = -1  # > 0 stops after that many optimizer steps (a quick check)

    def resolved_learning_rate(self) -> float:
        return float(self.learning_rate if self.learning_rate is not None else DEFAULT_LEARNING_RATE[self.method])


def check_method(method: str) -> None:
    if method not in METHODS:
        raise UsageError(f"adapterhub train cannot train method {method!r}", hint=f"methods: {', '.join(METHODS)}")


def method_options(method: str, user: dict[str, Any], model_type: str | None) -> dict[str, Any]:
    """The options ``add_adapter`` gets: the method's defaults, LoRA's usual target modules for
    ``model_type``, then the user's options on top."""
    options = dict(DEFAULT_OPTIONS[method])
    if method in ("lora", "qlora") and "target_modules" not in user:
        targets = lora_targets(model_type)
        if targets:
            options["target_modules"] = targets
        if model_type == "gpt2":
            options["fan_in_fan_out"] = True  # GPT-2's Conv1D layers store weights transposed
    options.update(user)
    return options


def lora_targets(model_type: str | None) -> list[str] | None:
    """PEFT's usual LoRA target modules for an architecture (BERT: query, value; Llama: q_proj, v_proj; ...)."""
    if not model_type:
        return None
    from peft.utils.constants import TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING

    targets = TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING.get(model_type)
    return list(targets) if targets else None
