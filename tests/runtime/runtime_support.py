"""Shared paths and helpers of tests/runtime (a uniquely named module: every test area has a conftest)."""

from __future__ import annotations

import json
from pathlib import Path

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "peft-0.21.2"
#: The tiny base models are shared by every test area; case.json names them as "base/<model>".
SHARED_FIXTURES = FIXTURES.parent


def load_case(case: str):
    from safetensors.torch import load_file

    folder = FIXTURES / case
    meta = json.loads((folder / "case.json").read_text())
    return folder, meta, load_file(str(folder / "reference.safetensors"))


def load_base(meta):
    import transformers

    cls = getattr(transformers, meta["base_class"])
    return cls.from_pretrained(str(SHARED_FIXTURES / meta["base"])).eval()


def logits(model, inputs):
    import torch

    with torch.no_grad():
        out = model(**inputs)
    return out.logits if hasattr(out, "logits") else out.last_hidden_state
