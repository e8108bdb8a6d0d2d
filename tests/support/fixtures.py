"""Paths of the fixtures saved by the real libraries, and their loaders.

``FIXTURES`` is ``tests/fixtures``: ``adapters-1.3.0/`` and ``peft-0.21.2/`` hold adapters saved by
those libraries with ``reference.safetensors`` (inputs and the output the library computed) and
``case.json``; ``base/`` holds the tiny base models every area shares.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
ADAPTERS = FIXTURES / "adapters-1.3.0"
PEFT = FIXTURES / "peft-0.21.2"
BASE = FIXTURES / "base"


def load_reference(case_dir: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(str(case_dir / "reference.safetensors"))


def case(case_dir: Path) -> dict:
    return json.loads((case_dir / "case.json").read_text())


def load_case(name: str):
    """(folder, case.json, reference tensors) of the PEFT case ``name``."""
    folder = PEFT / name
    return folder, case(folder), load_reference(folder)


def load_base(meta: dict):
    """The tiny base a case.json names (``"base/<model>"``, relative to ``FIXTURES``), in eval mode."""
    import transformers

    cls = getattr(transformers, meta["base_class"])
    return cls.from_pretrained(str(FIXTURES / meta["base"])).eval()


def tiny_base(kind: str):
    """The tiny ``gpt2``, ``llama`` (grouped-query attention) or ``bert`` base of ``base/``, in eval mode."""
    import transformers

    cls = {"gpt2": transformers.GPT2LMHeadModel, "llama": transformers.LlamaForCausalLM,
           "bert": transformers.BertModel}[kind]
    return cls.from_pretrained(str(BASE / f"tiny-{kind}")).eval()


def logits(model, inputs):
    import torch

    with torch.no_grad():
        out = model(**inputs)
    return out.logits if hasattr(out, "logits") else out.last_hidden_state


def state_hash(model, exclude: tuple[str, ...] = ()) -> str:
    h = hashlib.sha256()
    for key, value in sorted(model.state_dict().items()):
        if any(e in key for e in exclude):
            continue
        h.update(key.encode())
        h.update(value.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()
