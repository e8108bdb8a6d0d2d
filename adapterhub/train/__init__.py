"""``adapterhub train``: labelled data in, a trained adapter folder with its model card out, ready for
``adapterhub push``. Built on transformers' ``Trainer`` and :class:`~adapterhub.AdapterModel`.

* :mod:`.data`: reading ``.jsonl``/``.csv`` rows, their columns, label maps;
* :mod:`.recipe`: each method's default options and learning rate, LoRA's usual targets;
* :mod:`.run`: building the model, training, evaluating, writing the folder;
* :mod:`.card`: the model card.

Sits above :mod:`adapterhub.publish` (it records the base model as ``push`` will resolve it) and
below the CLI. Importing it does not import torch.
"""

from __future__ import annotations

from .data import DataSet, read_rows
from .recipe import DEFAULT_LEARNING_RATE, DEFAULT_OPTIONS, METHODS, Recipe
from .run import TrainRequest, TrainResult, train_adapter

__all__ = ["DEFAULT_LEARNING_RATE", "DEFAULT_OPTIONS", "METHODS", "DataSet", "Recipe", "TrainRequest", "TrainResult",
           "read_rows", "train_adapter"]
