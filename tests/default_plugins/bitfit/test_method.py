"""BitFit: biases only; create/train/save/load, merge/unmerge, stack/average as bias deltas."""

from __future__ import annotations

import pytest
import torch
from support.fixtures import state_hash

from adapterhub import AdapterModel, Average, BatchSplit
from adapterhub.errors import CompositionError
from adapterhub.plugin import get_method


def _train(am, model, inputs, name):
    params = get_method("bitfit").parameters(model, name)
    opt = torch.optim.SGD(params, lr=0.5)
    for _ in range(3):
        opt.zero_grad()
        am(**inputs).last_hidden_state.pow(3).mean().backward()
        opt.step()


def _biases(model):
    return {n: p.detach().clone() for n, p in model.named_parameters() if n.endswith(".bias")}


def test_bitfit_train_save_load_merge(bert, bert_inputs, tmp_path):
    from transformers import BertModel

    from support.fixtures import BASE

    pristine = state_hash(bert)
    base_biases = _biases(bert)
    non_bias = state_hash(bert, exclude=(".bias",))
    am = AdapterModel(bert)
    am.add_adapter("bf", "bitfit")
    am.set_adapter("bf")
    trainable = {n for n, p in bert.named_parameters() if p.requires_grad}
    assert trainable == set(base_biases)
    _train(am, bert, bert_inputs, "bf")
    assert state_hash(bert, exclude=(".bias",)) == non_bias  # only biases moved
    trained = _biases(bert)
    assert any(not torch.equal(trained[k], base_biases[k]) for k in trained)
    with torch.no_grad():
        trained_out = am(**bert_inputs).last_hidden_state
    am.save_adapter(tmp_path / "bf", "bf")
    am.unload()
    assert state_hash(bert) == pristine

    # Independent reference: a fresh base whose biases are set to the trained values.
    reference = BertModel.from_pretrained(str(BASE / "tiny-bert")).eval()
    with torch.no_grad():
        for n, p in reference.named_parameters():
            if n in trained:
                p.copy_(trained[n])
        expected = reference(**bert_inputs).last_hidden_state
    assert torch.allclose(trained_out, expected, atol=1e-6, rtol=0)

    am.load_adapter(tmp_path / "bf", name="loaded")
    assert am.adapters["loaded"].method == "bitfit"
    am.set_adapter("loaded")
    with torch.no_grad():
        assert torch.allclose(am(**bert_inputs).last_hidden_state, expected, atol=1e-6, rtol=0)
    am.set_adapter(None)
    am.merge_adapter(["loaded"])
    with torch.no_grad():
        assert torch.allclose(am(**bert_inputs).last_hidden_state, expected, atol=1e-6, rtol=0)
    am.unmerge_adapter()
    assert _biases(bert).keys() == base_biases.keys()
    assert all(torch.allclose(_biases(bert)[k], base_biases[k], atol=1e-7) for k in base_biases)
    am.unload()
    assert state_hash(bert) == pristine


def test_bitfit_stack_and_average_are_bias_deltas(bert, tmp_path):
    from safetensors.torch import save_file

    from adapterhub.toolkit.weights import write_json

    base = _biases(bert)
    key = "encoder.layer.0.output.dense.bias"
    deltas = {}
    for i, name in enumerate(("a", "b")):
        delta = torch.full_like(base[key], float(i + 1))
        deltas[name] = delta
        d = tmp_path / name
        d.mkdir()
        save_file({key: base[key] + delta}, str(d / "adapter_model.safetensors"))
        write_json(d / "adapter_config.json", {"adapterhub_method": "bitfit"})
    am = AdapterModel(bert)
    am.load_adapter(tmp_path / "a", name="a")
    am.load_adapter(tmp_path / "b", name="b")
    bias = dict(bert.named_parameters())[key]
    am.set_adapter(["a", "b"])
    assert torch.allclose(bias, base[key] + deltas["a"] + deltas["b"])
    am.set_adapter(Average("a", "b", weights=[1, 3]))
    assert torch.allclose(bias, base[key] + 0.25 * deltas["a"] + 0.75 * deltas["b"])
    with pytest.raises(CompositionError, match="BatchSplit"):
        am.set_adapter(BatchSplit("a", "b", batch_sizes=[1, 2]))
    am.unload()
    assert torch.equal(dict(bert.named_parameters())[key], base[key])
