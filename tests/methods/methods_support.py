"""Shared paths and helpers for tests/methods (imported by the tests and conftest)."""

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


def state_hash(model, exclude: tuple[str, ...] = ()) -> str:
    h = hashlib.sha256()
    for key, value in sorted(model.state_dict().items()):
        if any(e in key for e in exclude):
            continue
        h.update(key.encode())
        h.update(value.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


