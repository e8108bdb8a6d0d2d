"""adapterhub.toolkit.transformers_compat: the one module that knows how transformers releases spell things."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from adapterhub import AdapterModel  # noqa: E402
from adapterhub.testing import tiny_gpt2, tiny_llama  # noqa: E402
from adapterhub.toolkit import transformers_compat as compat  # noqa: E402


def _expected_name(module) -> str:
    import inspect

    params = inspect.signature(type(module).forward).parameters
    return "cache" if "cache" in params else "past_key_values"


def test_cache_argument_follows_the_models_own_signature():
    from transformers import BertConfig, BertModel

    bert = BertModel(BertConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64))
    attention = bert.encoder.layer[0].attention.self
    for module in (tiny_gpt2(), tiny_llama(), bert, attention):
        name = compat.cache_argument(module)
        assert name in compat.CACHE_ARGUMENTS
        assert name == _expected_name(module)


def test_set_cache_drops_every_other_spelling():
    model = tiny_gpt2()
    kwargs = {"past_key_values": "old", "cache": "older", "input_ids": 1}
    compat.set_cache(model, kwargs, "new")
    assert kwargs == {compat.cache_argument(model): "new", "input_ids": 1}


def test_get_cache_reads_either_spelling():
    assert compat.get_cache({}) is None
    assert compat.get_cache({"past_key_values": "a"}) == "a"
    assert compat.get_cache({"cache": "b"}) == "b"
    assert compat.get_cache({"cache": None, "past_key_values": "c"}) == "c"


def test_a_prefix_cache_reaches_the_model_under_the_name_it_takes():
    """The real round trip: a cache built by the compat helpers and passed under the model's own name
    is used (the output grows the cache by the real tokens), on whatever transformers is installed."""
    model = tiny_gpt2()
    cfg = model.config
    head_dim = cfg.n_embd // cfg.n_head
    prefix = [(torch.randn(2, cfg.n_head, 3, head_dim), torch.randn(2, cfg.n_head, 3, head_dim))
              for _ in range(cfg.n_layer)]
    kwargs = compat.set_cache(model, {"input_ids": torch.tensor([[1, 2, 3, 4], [5, 6, 7, 8]])},
                              compat.dynamic_cache(prefix))
    with torch.no_grad():
        out = model(**kwargs, use_cache=True)
    assert compat.cache_length(compat.output_cache(out)) == 3 + 4
    plain = model(input_ids=kwargs["input_ids"]).logits
    assert (out.logits - plain).abs().max() > 1e-4  # the prefix acted


def test_the_runtime_never_needs_transformers_own_peft_integration(monkeypatch):
    """transformers 5.24's PeftAdapterMixin (model.load_adapter/add_adapter/set_adapter/...) demands
    peft >= 0.22, which no registry has yet. adapterhub drives peft's tuner layers itself, so a full
    load / switch / merge / disable cycle must never touch those methods."""
    from transformers import PreTrainedModel

    from adapterhub.testing import save_peft_adapter

    def refuse(self, *args, **kwargs):
        raise AssertionError("transformers' PEFT integration was called")

    for name in ("load_adapter", "add_adapter", "set_adapter", "enable_adapters", "disable_adapters",
                 "active_adapters", "get_adapter_state_dict", "delete_adapter"):
        if hasattr(PreTrainedModel, name):
            monkeypatch.setattr(PreTrainedModel, name, refuse)
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        from peft import LoraConfig

        folder = save_peft_adapter(tiny_gpt2(), LoraConfig(target_modules=["c_attn"], r=4), tmp)
        am = AdapterModel(tiny_gpt2())
        am.load_adapter(folder, name="a")
        am.add_adapter("b", "ia3", target_modules=["c_attn", "c_fc"], feedforward_modules=["c_fc"])
        am.set_adapter(["a", "b"])
        ids = torch.tensor([[1, 2, 3]])
        with torch.no_grad():
            before = am(input_ids=ids).logits
            am.merge_adapter()
            am.unmerge_adapter()
            with am.disable_adapter():
                am(input_ids=ids)
            torch.testing.assert_close(am(input_ids=ids).logits, before)
