"""What ``adapterhub train`` uses when the user says nothing: each method's options and learning rate,
and LoRA's usual target modules for the architecture. No torch at import time.

The learning rates are the ones ``benchmarks/methods_table.py`` trains with (README, "Choosing a
method"): adapters train far fewer weights than full fine-tuning and take larger steps; prompts
take the largest. Any other trainable method (a PEFT type the generic plugin runs: ``loha``,
``lokr``, ``oft``, ...; a third-party plugin's method) trains with the options the user gives (PEFT
fills in its usual target modules for the architecture) and LoRA's learning rate.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..errors import UsageError

#: methods with defaults of their own here (QLoRA: LoRA on the base quantised to 4-bit nf4); any other
#: registered method that can train is accepted too (:func:`check_method`)
METHODS = ("lora", "qlora", "ia3", "prompt_tuning", "prefix_tuning", "p_tuning", "bottleneck", "bitfit")
#: the learning rate of a method without one of its own below (LoRA's)
OTHER_LEARNING_RATE = 2e-3

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
        if self.learning_rate is not None:
            return float(self.learning_rate)
        return float(DEFAULT_LEARNING_RATE.get(self.method, OTHER_LEARNING_RATE))


def check_method(method: str) -> None:
    if method in METHODS:
        return
    from ..plugin.registry import get_methods

    known = get_methods().get(method)
    if known is None or not known.trainable:
        raise UsageError(f"adapterhub train cannot train method {method!r}",
                         hint=f"methods: {', '.join(METHODS)}, or any other that `adapterhub methods` shows as "
                         "trainable (loha, lokr, oft, ...)")


def method_options(method: str, user: dict[str, Any], model_type: str | None) -> dict[str, Any]:
    """The options ``add_adapter`` gets: the method's defaults, LoRA's usual target modules for
    ``model_type``, then the user's options on top."""
    options = dict(DEFAULT_OPTIONS.get(method, {}))
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
