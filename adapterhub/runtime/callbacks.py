"""A transformers ``TrainerCallback`` that writes the trained adapters, in their methods' own formats,
into every checkpoint ``Trainer`` saves (``Trainer(..., callbacks=[SaveAdaptersCallback()])``; TRL's
trainers take it too).

``Trainer`` itself checkpoints an ``AdapterModel`` as ``model.safetensors`` holding the trainable
adapters' tensors (see :mod:`.training`), which is what ``resume_from_checkpoint`` and
``load_best_model_at_end`` read. With this callback each ``checkpoint-N/`` also holds the adapter
files (PEFT's ``adapter_config.json`` + ``adapter_model.safetensors``, AdapterHub's files for a
bottleneck adapter, a head's files), so a checkpoint loads with ``load_adapter`` (and PEFT's
``from_pretrained`` where the format is PEFT's) and can be pushed as it is. This is the mechanism
transformers' own Trainer documentation points adapter users to (a callback that saves the adapter
on ``on_save``).

Importing this module imports transformers.
"""

from __future__ import annotations

import os
from typing import Any

from transformers import TrainerCallback

PREFIX_CHECKPOINT_DIR = "checkpoint"


def _adapter_model(model: Any) -> Any:
    """The AdapterModel inside whatever wrapper a distributed run put around it."""
    from .model import AdapterModel

    while not isinstance(model, AdapterModel) and hasattr(model, "module"):
        model = model.module
    return model if isinstance(model, AdapterModel) else None


class SaveAdaptersCallback(TrainerCallback):
    """On every checkpoint save, write ``model.save_pretrained(checkpoint_dir)`` (the trainable adapters)."""

    def __init__(self, adapter_names: list[str] | None = None) -> None:
        self.adapter_names = adapter_names

    def on_save(self, args: Any, state: Any, control: Any, model: Any = None, **kwargs: Any) -> Any:
        am = _adapter_model(model)
        if am is None or not state.is_world_process_zero:
            return control
        checkpoint = os.path.join(args.output_dir, f"{PREFIX_CHECKPOINT_DIR}-{state.global_step}")
        if os.path.isdir(checkpoint):
            am.save_pretrained(checkpoint, self.adapter_names)
        return control
