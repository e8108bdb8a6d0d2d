"""Compacter (bottleneck adapters with PHM layers, ``phm_layer: true``) in the adapters format.

Cases made by the real ``adapters`` 1.3.0 (tests/fixtures/generate/make_adapters_fixtures.py, on the
library's ``BertAdapterModel`` without a head, so the output is tiny-bert's last_hidden_state):
CompacterConfig, CompacterPlusPlusConfig, shared W + factorized rule + rank 2 + no bias, and a
per-layer rule with unfactorized W. Loaded here on a plain transformers ``BertModel``.
"""

from __future__ import annotations

import json
import shutil

import pytest
import torch
import transformers
from support.fixtures import ADAPTERS, FIXTURES, case, load_reference
from safetensors.torch import load_file

from adapterhub import AdapterModel
from adapterhub.errors import AdapterHubError

#: compared with outputs PEFT or `adapters` produced: run by .ci/compat on every transformers release
pytestmark = pytest.mark.fidelity

CASES = ["compacter", "compacter_plus_plus", "compacter_knobs", "compacter_unshared"]


def _bert():
    return transformers.BertModel.from_pretrained(str(FIXTURES / "base" / "tiny-bert")).eval()


def _run(am, ref):
    with torch.no_grad():
        return am(input_ids=ref["input_ids"], attention_mask=ref["attention_mask"]).last_hidden_state


@pytest.mark.parametrize("case_name", CASES)
def test_compacter_matches_adapters_library_output(case_name):
    case_dir = ADAPTERS / case_name
    spec = case(case_dir)
    assert spec["library_version"] == "1.3.0" and spec["config"]["phm_layer"] is True
    ref = load_reference(case_dir)
    am = AdapterModel(_bert())
    name = am.load_adapter(case_dir, name=spec["adapter_name"])
    am.set_adapter(name)
    out = _run(am, ref)
    diff = (out - ref["expected"]).abs().max().item()
    assert torch.allclose(out, ref["expected"], atol=spec["tolerance"]["atol"], rtol=0), f"max |diff| {diff}"
    assert spec["delta_vs_base"] > 100 * spec["tolerance"]["atol"]


@pytest.mark.parametrize("case_name", ["compacter", "compacter_knobs", "compacter_unshared"])
def test_compacter_save_round_trips_tensors(case_name, tmp_path):
    case_dir = ADAPTERS / case_name
    spec = case(case_dir)
    ref = load_reference(case_dir)
    am = AdapterModel(_bert())
    am.load_adapter(case_dir, name=spec["adapter_name"])
    am.save_adapter(tmp_path / "out", spec["adapter_name"], format="adapters")
    original = {k.removeprefix("bert."): v for k, v in load_file(str(case_dir / "adapter.safetensors")).items()}
    saved = load_file(str(tmp_path / "out" / "adapter.safetensors"))
    assert set(saved) == set(original)
    assert any(k.startswith(f"shared_parameters.{spec['adapter_name']}.") for k in saved) == \
        (case_name != "compacter_unshared")
    for key, value in original.items():
        assert torch.equal(saved[key], value), key
    config = json.loads((tmp_path / "out" / "adapter_config.json").read_text())
    assert config["config"]["phm_layer"] is True
    again = AdapterModel(_bert())
    again.set_adapter(again.load_adapter(tmp_path / "out", name=spec["adapter_name"]))
    assert torch.allclose(_run(again, ref), ref["expected"], atol=spec["tolerance"]["atol"], rtol=0)


def test_compacter_missing_shared_rule_is_refused(tmp_path):
    """A Compacter file without its shared phm_rule (what adapters writes from a bare BertModel) is refused."""
    src = ADAPTERS / "compacter"
    shutil.copytree(src, tmp_path / "a")
    from safetensors.torch import save_file

    weights = load_file(str(src / "adapter.safetensors"))
    save_file({k: v for k, v in weights.items() if "shared_parameters" not in k}, str(tmp_path / "a" / "adapter.safetensors"))
    am = AdapterModel(_bert())
    with pytest.raises(AdapterHubError, match="shared_parameters.phm_rule"):
        am.load_adapter(tmp_path / "a", name="compacter")


def test_compacter_indivisible_phm_dim_is_refused(tmp_path):
    """phm_dim must divide the bottleneck size (CompacterConfig's reduction_factor 32 on hidden 64 gives 2)."""
    shutil.copytree(ADAPTERS / "compacter", tmp_path / "a")
    cfg_path = tmp_path / "a" / "adapter_config.json"
    cfg = json.loads(cfg_path.read_text())
    cfg["config"]["reduction_factor"] = 32
    cfg_path.write_text(json.dumps(cfg))
    am = AdapterModel(_bert())
    with pytest.raises(AdapterHubError, match="phm_dim"):
        am.load_adapter(tmp_path / "a", name="compacter")


def test_compacter_trains_from_preset():
    am = AdapterModel(_bert())
    am.add_adapter("x", "bottleneck", preset="compacter", reduction_factor=8)
    am.set_adapter("x")
    params = [p for p in am.model.parameters() if p.requires_grad]
    assert params and any(p.shape == (4, 4, 4) for p in params)  # the shared phm_rule trains too
    ids = torch.tensor([[1, 5, 7, 9]])
    loss = am(input_ids=ids).last_hidden_state.pow(2).mean()
    loss.backward()
    assert all(p.grad is not None for p in params)


def test_compacter_delete_removes_shared_parameters():
    model = _bert()
    before = set(model.state_dict())
    am = AdapterModel(model)
    am.load_adapter(ADAPTERS / "compacter", name="compacter")
    assert "shared_parameters.compacter.phm_rule" in model.state_dict()
    am.delete_adapter("compacter")
    assert set(model.state_dict()) == before
