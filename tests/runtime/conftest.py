"""Fixtures for the runtime tests: PEFT-saved fixtures with PEFT's reference outputs, tiny models."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import pytest

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "peft-0.21.2"

warnings.filterwarnings("ignore", message=".*Already found a `peft_config`.*")


def load_case(case: str):
    from safetensors.torch import load_file

    folder = FIXTURES / case
    meta = json.loads((folder / "case.json").read_text())
    return folder, meta, load_file(str(folder / "reference.safetensors"))


def load_base(meta):
    import transformers

    cls = getattr(transformers, meta["base_class"])
    return cls.from_pretrained(str(FIXTURES / meta["base"])).eval()


@pytest.fixture(scope="module")
def inputs():
    from adapterhub.testing import tiny_inputs

    return tiny_inputs()


@pytest.fixture(scope="module")
def llama_base():
    from adapterhub.testing import tiny_llama

    return tiny_llama(seed=1)


def logits(model, inputs):
    import torch

    with torch.no_grad():
        out = model(**inputs)
    return out.logits if hasattr(out, "logits") else out.last_hidden_state
