"""``save_setup`` / ``load_setup`` (runtime/setup_file.py): a folder path gives one self-contained
folder, a ``.json`` path a file with its adapters beside it; saved adapters are recorded relative to
the setup, so the folder can move. And the active setup reads as PEFT's ``active_adapters``."""

from __future__ import annotations

import copy
import json
import shutil

import pytest
import torch
from support.fixtures import BASE

from adapterhub import AdapterModel, Stack

INPUTS = {"input_ids": torch.tensor([[2, 5, 7, 9]]), "attention_mask": torch.ones(1, 4, dtype=torch.long)}


@pytest.fixture(scope="module")
def base():
    from transformers import BertModel

    return BertModel.from_pretrained(str(BASE / "tiny-bert")).eval()


def _output(am):
    with torch.no_grad():
        return am(**INPUTS).last_hidden_state


def _trained(base):
    am = AdapterModel(copy.deepcopy(base))
    am.add_adapter("l", "lora", r=2, target_modules=["query"])
    am.add_adapter("b", "bottleneck", reduction_factor=8)
    torch.manual_seed(0)
    with torch.no_grad():
        for name, p in am.model.named_parameters():
            if "lora_B" in name:
                p.add_(torch.randn(p.shape) * 0.1)
    am.set_adapter(Stack("l", "b"))
    return am


def test_set_adapter_gives_active_adapters_as_peft_names_them(base):
    am = _trained(base)
    am.set_adapter("l")
    assert am.active_adapters == ["l"] and am.active_setup == Stack("l")
    am.set_adapter(["b", "l"])
    assert am.active_adapters == ["b", "l"]
    am.set_adapter(None)
    assert am.active_adapters == [] and am.active_setup is None


def test_a_folder_path_gives_one_self_contained_folder_that_can_move(base, tmp_path, monkeypatch):
    am = _trained(base)
    expected = _output(am)
    written = am.save_setup(tmp_path / "my-setup")
    assert written == tmp_path / "my-setup" / "setup.json"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["my-setup"]  # no sibling file or folder
    assert sorted(p.name for p in (tmp_path / "my-setup" / "adapters").iterdir()) == ["b", "l"]
    sources = {n: a["source"] for n, a in json.loads(written.read_text())["adapters"].items()}
    assert sources == {"b": "adapters/b", "l": "adapters/l"}

    moved = tmp_path / "elsewhere" / "copy"
    shutil.copytree(tmp_path / "my-setup", moved)
    shutil.rmtree(tmp_path / "my-setup")
    monkeypatch.chdir(tmp_path / "elsewhere")  # another working directory too
    fresh = AdapterModel(copy.deepcopy(base))
    fresh.load_setup(moved)  # the folder, or the file inside it
    assert fresh.active_setup == Stack("l", "b")
    assert torch.equal(_output(fresh), expected)


def test_a_json_path_is_a_file_with_its_adapters_beside_it(base, tmp_path):
    am = _trained(base)
    written = am.save_setup(tmp_path / "team.json")
    assert written == tmp_path / "team.json"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["team.adapters", "team.json"]
    fresh = AdapterModel(copy.deepcopy(base))
    fresh.load_setup(written)
    assert torch.equal(_output(fresh), _output(am))
