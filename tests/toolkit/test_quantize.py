"""4-bit quantisation without bitsandbytes installed: an error that names the extra, not a bare
ModuleNotFoundError."""

from __future__ import annotations

import sys

import pytest
from support.fixtures import BASE

from adapterhub.errors import AdapterHubError, MissingDependencyError


def test_quantize_without_bitsandbytes_names_the_qlora_extra(monkeypatch):
    from transformers import BertModel

    from adapterhub import quantize_4bit

    model = BertModel.from_pretrained(str(BASE / "tiny-bert"))
    for name in [n for n in sys.modules if n == "bitsandbytes" or n.startswith("bitsandbytes.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "bitsandbytes", None)  # what an environment without it imports
    with pytest.raises(MissingDependencyError) as err:
        quantize_4bit(model, "nf4")
    assert isinstance(err.value, AdapterHubError) and isinstance(err.value, ImportError)
    assert "bitsandbytes" in err.value.message and "adapterhub[qlora]" in err.value.hint
    assert type(model.encoder.layer[0].attention.self.query).__name__ == "Linear"  # nothing replaced
