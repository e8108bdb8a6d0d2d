"""Bottleneck adapters against outputs the `adapters` 1.3.0 library computed (fixtures)."""

from __future__ import annotations

import pytest
import torch

from adapterhub import AdapterModel, Average, BatchSplit, Parallel, Stack
from adapterhub.errors import PickleRefusedError, UnsupportedOperationError
from adapterhub.plugin import get_method

from support.fixtures import ADAPTERS, load_reference, state_hash

#: compared with outputs PEFT or `adapters` produced: run by .ci/compat on every transformers release
pytestmark = pytest.mark.fidelity

ATOL = 1e-5


def _out(am, inputs):
    with torch.no_grad():
        return am(**inputs).last_hidden_state


@pytest.mark.parametrize("case_name,pickle", [("seq_bn", True), ("seq_bn_safetensors", False)])
def test_single_adapter_matches_adapters_library(bert, case_name, pickle):
    ref = load_reference(ADAPTERS / case_name)
    am = AdapterModel(bert)
    name = am.load_adapter(ADAPTERS / case_name, name="seq", allow_pickle=pickle)
    am.set_adapter(name)
    out = _out(am, {"input_ids": ref["input_ids"], "attention_mask": ref["attention_mask"]})
    assert torch.allclose(out, ref["expected"], atol=ATOL, rtol=0)


def test_pickle_refused_without_allow_pickle(bert):
    am = AdapterModel(bert)
    before = state_hash(bert)
    with pytest.raises(PickleRefusedError) as info:
        am.load_adapter(ADAPTERS / "seq_bn", name="seq")
    assert "pytorch_adapter.bin" in str(info.value) and "allow_pickle" in str(info.value)
    assert state_hash(bert) == before and not am.adapters


def test_stack_matches_adapters_library(bert):
    ref = load_reference(ADAPTERS / "stack_seqbn")
    am = AdapterModel(bert)
    am.load_adapter(ADAPTERS / "stack_seqbn" / "a", name="a", allow_pickle=True)
    am.load_adapter(ADAPTERS / "stack_seqbn" / "b", name="b", allow_pickle=True)
    am.set_adapter(Stack("a", "b"))
    out = _out(am, {"input_ids": ref["input_ids"], "attention_mask": ref["attention_mask"]})
    assert torch.allclose(out, ref["expected"], atol=ATOL, rtol=0)


def _manual_average_reference(bert, inputs, adapters, weights):
    """adapters' Average written out by hand: LN(mean_i(w_i*(up_i(relu(down_i(LN(h+x)))) + h)) + x)."""
    from transformers.models.bert.modeling_bert import BertOutput

    def forward(self, hidden_states, input_tensor):
        idx = int(self._idx)
        h = self.dropout(self.dense(hidden_states))
        x = self.LayerNorm(h + input_tensor)
        outs = []
        for sd, w in zip(adapters, weights):
            p = f"encoder.layer.{idx}.output.adapters."
            down = torch.relu(torch.nn.functional.linear(x, sd[p + "adapter_down.0.weight"], sd[p + "adapter_down.0.bias"]))
            up = torch.nn.functional.linear(down, sd[p + "adapter_up.weight"], sd[p + "adapter_up.bias"])
            outs.append(w * (up + h))
        return self.LayerNorm(sum(outs) / len(outs) + input_tensor)

    for i, layer in enumerate(bert.encoder.layer):
        layer.output._idx = i
    original = BertOutput.forward
    BertOutput.forward = forward
    try:
        with torch.no_grad():
            return bert(**inputs).last_hidden_state
    finally:
        BertOutput.forward = original


def test_average_follows_adapters_formula(bert, bert_inputs):
    from transformers import BertModel

    from support.fixtures import BASE

    method = get_method("bottleneck")
    files = [method.read(ADAPTERS / "stack_seqbn" / n, allow_pickle=True) for n in ("a", "b")]
    am = AdapterModel(bert)
    am.load_adapter(ADAPTERS / "stack_seqbn" / "a", name="a", allow_pickle=True)
    am.load_adapter(ADAPTERS / "stack_seqbn" / "b", name="b", allow_pickle=True)
    am.set_adapter(Average("a", "b", weights=[1, 3]))
    out = _out(am, bert_inputs)
    fresh = BertModel.from_pretrained(str(BASE / "tiny-bert")).eval()
    expected = _manual_average_reference(fresh, bert_inputs, [f.state_dict for f in files], [0.25, 0.75])
    assert torch.allclose(out, expected, atol=ATOL, rtol=0)
    single = AdapterModel(BertModel.from_pretrained(str(BASE / "tiny-bert")).eval())
    single.load_adapter(ADAPTERS / "stack_seqbn" / "a", name="a", allow_pickle=True)
    single.set_adapter("a")
    assert (out - _out(single, bert_inputs)).abs().max() > 1e-3  # averaging is not a no-op


def test_batch_split_and_parallel_by_rows(bert):
    ref = load_reference(ADAPTERS / "seq_bn")
    inputs = {"input_ids": ref["input_ids"], "attention_mask": ref["attention_mask"]}
    am = AdapterModel(bert)
    am.load_adapter(ADAPTERS / "seq_bn", name="seq", allow_pickle=True)
    am.load_adapter(ADAPTERS / "stack_seqbn" / "b", name="b", allow_pickle=True)
    am.set_adapter("b")
    only_b = _out(am, inputs)
    am.set_adapter(BatchSplit("seq", "b", batch_sizes=[1, 2]))
    split = _out(am, inputs)
    assert torch.allclose(split[:1], ref["expected"][:1], atol=ATOL, rtol=0)
    assert torch.allclose(split[1:], only_b[1:], atol=ATOL, rtol=0)
    am.set_adapter(Parallel("seq", "b"))
    par = _out(am, inputs)
    assert par.shape[0] == 6
    assert torch.allclose(par[:3], ref["expected"], atol=ATOL, rtol=0)
    assert torch.allclose(par[3:], only_b, atol=ATOL, rtol=0)


def test_merge_is_refused_and_unload_restores_base(bert, bert_inputs):
    before = state_hash(bert)
    base_out = _out(AdapterModel(bert), bert_inputs)
    am = AdapterModel(bert)
    am.load_adapter(ADAPTERS / "seq_bn_safetensors", name="seq")
    am.set_adapter("seq")
    with pytest.raises(UnsupportedOperationError, match="cannot be merged"):
        am.merge_adapter()
    with pytest.raises(UnsupportedOperationError, match="cannot be merged"):
        get_method("bottleneck").merge(bert, "seq")
    am.delete_adapter("seq")
    assert state_hash(bert) == before
    assert torch.equal(_out(AdapterModel(bert), bert_inputs), base_out)


def test_save_adapters_format_round_trip_and_peft_refused(bert, bert_inputs, tmp_path):
    import json

    ref = load_reference(ADAPTERS / "seq_bn")
    am = AdapterModel(bert)
    am.load_adapter(ADAPTERS / "seq_bn", name="seq_bn", allow_pickle=True)
    with pytest.raises(UnsupportedOperationError, match="PEFT has no bottleneck"):
        am.save_adapter(tmp_path / "peft", "seq_bn", format="peft")
    am.save_adapter(tmp_path / "out", "seq_bn", format="adapters")
    written = json.loads((tmp_path / "out" / "adapter_config.json").read_text())
    original = json.loads((ADAPTERS / "seq_bn" / "adapter_config.json").read_text())
    assert sorted(written["config"]) == sorted(original["config"])
    assert written["config"] == original["config"]
    # byte layout as the library writes it (indent 2, sorted keys, no trailing newline)
    library_text = (ADAPTERS / "seq_bn" / "adapter_config.json").read_text()
    assert library_text == json.dumps(original, indent=2, sort_keys=True)
    assert (tmp_path / "out" / "adapter_config.json").read_text() == json.dumps(written, indent=2, sort_keys=True)
    from safetensors.torch import load_file

    assert set(load_file(str(tmp_path / "out" / "adapter.safetensors"))) == set(
        torch.load(ADAPTERS / "seq_bn" / "pytorch_adapter.bin", weights_only=True))
    am.delete_adapter("seq_bn")
    am.load_adapter(tmp_path / "out", name="again")
    am.set_adapter("again")
    assert torch.allclose(_out(am, bert_inputs), ref["expected"], atol=ATOL, rtol=0)


@pytest.mark.parametrize("preset", ["seq_bn", "double_seq_bn", "par_bn"])
def test_training_changes_only_adapter_params(bert, bert_inputs, preset, tmp_path):
    base_hash = state_hash(bert, exclude=(".adapters.",))
    am = AdapterModel(bert)
    am.add_adapter("t", "bottleneck", preset=preset, reduction_factor=8)
    am.set_adapter("t")
    params = get_method("bottleneck").parameters(bert, "t")
    assert {id(p) for p in bert.parameters() if p.requires_grad} == {id(p) for p in params}
    before = [p.detach().clone() for p in params]
    opt = torch.optim.SGD(params, lr=0.1)
    bert.train()
    for _ in range(3):
        opt.zero_grad()
        am(**bert_inputs).last_hidden_state.pow(2).mean().backward()
        opt.step()
    bert.eval()
    assert any(not torch.equal(a, p) for a, p in zip(before, params))
    assert state_hash(bert, exclude=(".adapters.",)) == base_hash
    trained = _out(am, bert_inputs)
    am.save_adapter(tmp_path / "t", "t", format="adapters")
    am.unload()
    assert state_hash(bert) == base_hash
    am.load_adapter(tmp_path / "t", name="t2")
    am.set_adapter("t2")
    assert torch.allclose(_out(am, bert_inputs), trained, atol=1e-6, rtol=0)


def test_classification_head_travels_with_adapter(bert, bert_inputs, tmp_path):
    """An adapters-format head (head_config.json + model_head.safetensors) gives `logits`."""
    import json
    import shutil

    from safetensors.torch import save_file

    d = tmp_path / "with_head"
    shutil.copytree(ADAPTERS / "seq_bn_safetensors", d)
    g = torch.Generator().manual_seed(0)
    w1, b1 = torch.randn(64, 64, generator=g) * 0.1, torch.randn(64, generator=g) * 0.1
    w2, b2 = torch.randn(3, 64, generator=g) * 0.1, torch.randn(3, generator=g) * 0.1
    save_file({"heads.seq_bn.1.weight": w1, "heads.seq_bn.1.bias": b1,
               "heads.seq_bn.4.weight": w2, "heads.seq_bn.4.bias": b2}, str(d / "model_head.safetensors"))
    (d / "head_config.json").write_text(json.dumps({
        "config": {"activation_function": "tanh", "bias": True, "dropout_prob": None, "head_type": "classification",
                   "label2id": {"A": 0, "B": 1, "C": 2}, "layers": 2, "num_labels": 3, "use_pooler": False},
        "hidden_size": 64, "model_class": "BertAdapterModel", "model_name": "", "model_type": "bert",
        "name": "seq_bn", "version": "adapters.1.3.0"}))
    ref = load_reference(ADAPTERS / "seq_bn")
    am = AdapterModel(bert)
    am.load_adapter(d, name="clf")
    am.set_adapter("clf")
    with torch.no_grad():
        out = am(**bert_inputs)
    cls = ref["expected"][:, 0]
    expected = torch.tanh(cls @ w1.T + b1) @ w2.T + b2
    assert torch.allclose(out.logits, expected, atol=ATOL, rtol=0)
    am.save_adapter(tmp_path / "saved", "clf", format="adapters")
    assert (tmp_path / "saved" / "model_head.safetensors").is_file()
    am.unload()
    assert "logits" not in am(**bert_inputs)


def test_fresh_head_trains_saves_and_reloads_with_its_adapter(bert, bert_inputs, tmp_path):
    """add_head: a trainable AdapterHub-layout head on a new bottleneck; both come back from disk."""
    import json

    base_hash = state_hash(bert)
    am = AdapterModel(bert)
    am.add_adapter("t", "bottleneck", reduction_factor=8)
    am.add_head("t", 3, labels=["a", "b", "c"], seed=0)
    head_params = list(am.model.adapterhub_heads["t"].parameters())
    assert head_params and all(p.requires_grad for p in head_params)
    assert not any(p.requires_grad for n, p in am.model.named_parameters() if n.startswith(("embeddings", "pooler")))
    opt = torch.optim.SGD([p for p in am.model.parameters() if p.requires_grad], lr=0.5)
    am.model.train()
    before = [p.detach().clone() for p in head_params]
    out = am(**bert_inputs, labels=torch.arange(bert_inputs["input_ids"].shape[0]) % 3)
    assert out.logits.shape[-1] == 3
    out.loss.backward()
    opt.step()
    am.model.eval()
    assert any(not torch.equal(a, p) for a, p in zip(before, head_params))
    with torch.no_grad():
        trained = am(**bert_inputs)
    # the head by hand on the adapter's hidden states: Linear -> tanh -> Linear on the first token
    seq = am.model.adapterhub_heads["t"]
    cls = trained.last_hidden_state[:, 0]
    by_hand = torch.tanh(cls @ seq[1].weight.T + seq[1].bias) @ seq[4].weight.T + seq[4].bias
    assert torch.allclose(trained.logits, by_hand, atol=ATOL, rtol=0)
    am.save_adapter(tmp_path / "t", "t", format="adapters")
    head_config = json.loads((tmp_path / "t" / "head_config.json").read_text())
    assert head_config["config"]["label2id"] == {"a": 0, "b": 1, "c": 2} and head_config["name"] == "t"
    am.unload()
    assert state_hash(bert) == base_hash and "adapterhub_heads" not in bert._modules
    assert not bert._forward_hooks and not bert._forward_pre_hooks
    am.load_adapter(tmp_path / "t", name="t2")
    am.set_adapter("t2")
    with torch.no_grad():
        assert torch.allclose(am(**bert_inputs).logits, trained.logits, atol=ATOL, rtol=0)
