"""``am(..., adapter_names=[...])`` and ``am.generate(..., adapter_names=[...])``: every row of a mixed
batch equals the same row run with its adapter active alone (or with no adapter, for ``"__base__"``).

The adapters are made with random weights (LoRA's B and IA3's vectors off their identity init,
bottleneck up-projections with BERT init), so that every adapter visibly changes its rows; each
test checks that first, so a comparison cannot pass because the adapters do nothing. The equality
with PEFT's own ``adapter_names`` output is in ``test_rows_peft.py``.
"""

from __future__ import annotations

import pytest
import torch
from support.fixtures import tiny_base

from adapterhub import AdapterModel, BatchSplit, Parallel, Stack
from adapterhub.errors import (
    AdapterNotLoadedError,
    CompositionError,
    UnsupportedOperationError,
    UsageError,
)
from adapterhub.plugin import get_method

ATOL = 1e-5
BASE_ROW = "__base__"


#: LoRA / IA3 targets per model (Llama: q/v attention of a GQA model, and the MLP's down_proj)
TARGETS = {
    "gpt2": {"lora": ["c_attn", "c_proj", "c_fc"], "ia3": (["c_attn", "mlp.c_proj"], ["mlp.c_proj"])},
    "llama": {"lora": ["q_proj", "k_proj", "v_proj", "o_proj", "down_proj"],
              "ia3": (["k_proj", "v_proj", "down_proj"], ["down_proj"])},
    "bert": {"lora": ["query", "value", "intermediate.dense"],
             "ia3": (["key", "value", "output.dense"], ["output.dense"])},
}


def _randomise(am: AdapterModel, name: str, seed: int) -> None:
    """Move a fresh adapter's weights off their init (bottleneck up-projections start at zero)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in get_method(am.adapters[name].method).parameters(am.model, name):
            p.add_(torch.randn(p.shape, generator=gen, dtype=p.dtype) * 0.1)


def _add(am: AdapterModel, kind: str, name: str, method: str, seed: int, **extra) -> None:
    from peft import IA3Config, LoraConfig

    torch.manual_seed(seed)
    if method == "lora":
        cfg = dict(r=4, lora_alpha=8, target_modules=TARGETS[kind]["lora"], init_lora_weights=False)
        cfg.update(extra)
        am.add_adapter(name, LoraConfig(**cfg))
    elif method == "ia3":
        targets, ff = TARGETS[kind]["ia3"]
        am.add_adapter(name, IA3Config(target_modules=targets, feedforward_modules=ff, init_ia3_weights=False))
    elif method == "bottleneck":
        am.add_adapter(name, "bottleneck", preset=extra.get("preset", "seq_bn"), reduction_factor=4,
                       init_weights="bert")
        _randomise(am, name, seed)
    else:
        raise AssertionError(method)


def _inputs(kind: str, rows: int, padded: bool = True, seq: int = 7) -> dict:
    gen = torch.Generator().manual_seed(rows * 31 + seq)
    ids = torch.randint(3, 120, (rows, seq), generator=gen)
    mask = torch.ones_like(ids)
    if padded:  # a mix of row lengths: causal models pad on the left, BERT on the right
        for i in range(rows):
            cut = i % 3
            if cut:
                if kind == "bert":
                    mask[i, -cut:] = 0
                    ids[i, -cut:] = 0
                else:
                    mask[i, :cut] = 0
                    ids[i, :cut] = 0
    return {"input_ids": ids, "attention_mask": mask}


def _out(output):
    return output.logits if hasattr(output, "logits") else output.last_hidden_state


def _alone(am: AdapterModel, inputs: dict, name: str) -> torch.Tensor:
    """The whole batch with ``name`` active alone (the base for "__base__")."""
    with torch.no_grad():
        if name == BASE_ROW:
            with am.disable_adapter():
                return _out(am(**inputs))
        am.set_adapter(name)
        return _out(am(**inputs))


def _assert_rows_match(am: AdapterModel, inputs: dict, names: list[str]) -> torch.Tensor:
    with torch.no_grad():
        mixed = _out(am(**inputs, adapter_names=names))
    base = _alone(am, inputs, BASE_ROW)
    valid = inputs["attention_mask"].bool()
    if mixed.shape[1] > valid.shape[1]:  # prompt tuning's virtual tokens come first
        valid = torch.cat([valid.new_ones(valid.shape[0], mixed.shape[1] - valid.shape[1]), valid], 1)
    for name in dict.fromkeys(names):
        expected = _alone(am, inputs, name)
        rows = [i for i, n in enumerate(names) if n == name]
        for i in rows:
            torch.testing.assert_close(mixed[i][valid[i]], expected[i][valid[i]], atol=ATOL, rtol=0)
            if name != BASE_ROW:  # the adapter acts on its rows
                assert (expected[i][-base.shape[1]:] - base[i]).abs().max() > 1e-3, name
    return mixed


# -- one method, several adapters, every model shape ------------------------------------------------


@pytest.mark.parametrize("kind", ["gpt2", "llama", "bert"])
@pytest.mark.parametrize("method", ["lora", "ia3", "bottleneck"])
def test_each_row_equals_its_adapter_alone(kind, method):
    am = AdapterModel(tiny_base(kind))
    for i, name in enumerate(("x", "y", "z")):
        _add(am, kind, name, method, seed=i + 1)
    names = ["y", "x", BASE_ROW, "z", "x", "y"]
    _assert_rows_match(am, _inputs(kind, len(names)), names)


@pytest.mark.parametrize("variant", [{"use_dora": True}, {"use_rslora": True},
                                     {"rank_pattern": {"c_fc": 2}, "alpha_pattern": {"c_attn": 3}},
                                     {"r": 8, "lora_alpha": 4, "lora_dropout": 0.1}])
def test_lora_variants_with_other_ranks_share_a_batch(variant):
    """Adapters of different ranks, scalings and DoRA in one batch (the stacks pad smaller ranks)."""
    am = AdapterModel(tiny_base("gpt2"))
    _add(am, "gpt2", "plain", "lora", seed=1, r=2, lora_alpha=4)
    _add(am, "gpt2", "variant", "lora", seed=2, **variant)
    names = ["variant", "plain", BASE_ROW, "variant"]
    _assert_rows_match(am, _inputs("gpt2", 4), names)


def test_a_batch_of_one_adapter_and_a_batch_of_base_rows():
    am = AdapterModel(tiny_base("gpt2"))
    _add(am, "gpt2", "x", "lora", seed=1)
    _add(am, "gpt2", "y", "lora", seed=2)
    inputs = _inputs("gpt2", 3)
    _assert_rows_match(am, inputs, ["y"] * 3)
    _assert_rows_match(am, inputs, [BASE_ROW] * 3)


# -- pairs of methods: each method serves its rows, the others' rows get none of its adapters -----

PAIRS = [("lora", "ia3"), ("lora", "bottleneck"), ("ia3", "bottleneck")]


@pytest.mark.parametrize("kind", ["gpt2", "llama", "bert"])
@pytest.mark.parametrize("pair", PAIRS, ids="+".join)
def test_rows_of_different_methods_in_one_batch(kind, pair):
    am = AdapterModel(tiny_base(kind))
    for i, method in enumerate(pair):
        _add(am, kind, f"{method}1", method, seed=10 + i)
        _add(am, kind, f"{method}2", method, seed=20 + i)
    first, second = pair
    names = [f"{second}1", f"{first}1", BASE_ROW, f"{first}2", f"{second}2"]
    _assert_rows_match(am, _inputs(kind, len(names)), names)


def test_lora_ia3_and_bottleneck_rows_together_and_the_setup_comes_back():
    """Three methods in one batch; the next call without adapter_names serves the active Stack."""
    am = AdapterModel(tiny_base("gpt2"))
    _add(am, "gpt2", "l", "lora", seed=1)
    _add(am, "gpt2", "i", "ia3", seed=2)
    _add(am, "gpt2", "b", "bottleneck", seed=3)
    inputs = _inputs("gpt2", 4)
    am.set_adapter(Stack("l", "i", "b"))
    with torch.no_grad():
        stacked = _out(am(**inputs))
        mixed = _out(am(**inputs, adapter_names=["b", "i", "l", BASE_ROW]))
        again = _out(am(**inputs))
    torch.testing.assert_close(again, stacked, atol=0, rtol=0)
    assert am.active_adapters == ["l", "i", "b"]
    for i, name in enumerate(["b", "i", "l", BASE_ROW]):
        expected = _alone(am, inputs, name)
        torch.testing.assert_close(mixed[i], expected[i], atol=ATOL, rtol=0)


def test_batch_split_and_parallel_are_rows():
    """BatchSplit serves the same rows as adapter_names; Parallel gives every child the whole batch."""
    am = AdapterModel(tiny_base("gpt2"))
    _add(am, "gpt2", "l", "lora", seed=1)
    _add(am, "gpt2", "i", "ia3", seed=2)
    inputs = _inputs("gpt2", 3)
    with torch.no_grad():
        by_names = _out(am(**inputs, adapter_names=["l", "i", "i"]))
        am.set_adapter(BatchSplit("l", "i", batch_sizes=[1, 2]))
        split = _out(am(**inputs))
        am.set_adapter(Parallel("l", "i"))
        parallel = _out(am(**inputs))
    torch.testing.assert_close(split, by_names, atol=0, rtol=0)
    assert parallel.shape[0] == 6
    torch.testing.assert_close(parallel[:3], _alone(am, inputs, "l"), atol=ATOL, rtol=0)
    torch.testing.assert_close(parallel[3:], _alone(am, inputs, "i"), atol=ATOL, rtol=0)


# -- prompts: every row needs a prompt of one length ----------------------------------------------


@pytest.mark.parametrize("kind", ["gpt2", "llama"])
@pytest.mark.parametrize("method", ["prompt_tuning", "prefix_tuning", "p_tuning"])
def test_prompt_rows(tmp_path, kind, method):
    """Prompts made by PEFT (random virtual tokens; P-tuning's encoder moved off its init)."""
    from peft import PrefixTuningConfig, PromptEncoderConfig, PromptTuningConfig, get_peft_model

    am = AdapterModel(tiny_base(kind))
    cls = {"prompt_tuning": PromptTuningConfig, "prefix_tuning": PrefixTuningConfig,
           "p_tuning": PromptEncoderConfig}[method]
    for i, name in enumerate(("p", "q")):
        torch.manual_seed(i)
        extra = {"encoder_hidden_size": 16} if method == "p_tuning" else {}
        get_peft_model(tiny_base(kind), cls(task_type="CAUSAL_LM", num_virtual_tokens=3, **extra)).save_pretrained(
            tmp_path / name)
        am.load_adapter(tmp_path / name, name=name)
        _randomise(am, name, seed=i)
    am.eval()
    inputs = _inputs(kind, 3, padded=False)
    _assert_rows_match(am, inputs, ["q", "p", "q"])
    with pytest.raises(CompositionError, match="1 row"):
        am(**inputs, adapter_names=["q", BASE_ROW, "p"])


def test_prompt_rows_of_different_lengths_are_refused():
    from peft import PromptTuningConfig

    am = AdapterModel(tiny_base("gpt2"))
    am.add_adapter("p3", PromptTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=3))
    am.add_adapter("p5", PromptTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=5))
    am.eval()
    with pytest.raises(CompositionError, match="same length"):
        am(**_inputs("gpt2", 2, padded=False), adapter_names=["p3", "p5"])


# -- generate -------------------------------------------------------------------------------------


def _generate(am, inputs, **kwargs):
    with torch.no_grad():
        return am.generate(**inputs, max_new_tokens=5, pad_token_id=0, output_logits=True,
                           return_dict_in_generate=True, **kwargs)


def _generate_alone(am, inputs, name, seed=None, **kwargs):
    if seed is not None:
        torch.manual_seed(seed)
    if name == BASE_ROW:
        with am.disable_adapter():
            return _generate(am, inputs, **kwargs)
    am.set_adapter(name)
    return _generate(am, inputs, **kwargs)


@pytest.mark.parametrize("kind", ["gpt2", "llama"])
@pytest.mark.parametrize("decoding", [
    {"num_beams": 3, "do_sample": False},
    {"num_beams": 2, "do_sample": False, "num_return_sequences": 2},
    {"do_sample": True, "top_k": 20, "seed": 7},
    {"do_sample": True, "num_return_sequences": 2, "seed": 11},
], ids=["beams", "beams_return2", "sampling", "sampling_return2"])
def test_generate_gives_each_row_its_adapters_tokens(kind, decoding):
    """Left-padded prompts; beams and return sequences of a row use its adapter; sampling with a seed
    draws the same tokens as that adapter alone would."""
    decoding = dict(decoding)
    seed = decoding.pop("seed", None)
    am = AdapterModel(tiny_base(kind))
    _add(am, kind, "l", "lora", seed=1)
    _add(am, kind, "i", "ia3", seed=2)
    _add(am, kind, "b", "bottleneck", seed=3)
    names = ["i", BASE_ROW, "l", "b"]
    inputs = _inputs(kind, len(names))
    if seed is not None:
        torch.manual_seed(seed)
    mixed = _generate(am, inputs, adapter_names=names, **decoding)
    per_row = decoding.get("num_return_sequences", 1)
    outputs = {}
    for name in dict.fromkeys(names):
        outputs[name] = _generate_alone(am, inputs, name, seed, **decoding)
    for i, name in enumerate(names):
        rows = slice(i * per_row, (i + 1) * per_row)
        assert torch.equal(mixed.sequences[rows], outputs[name].sequences[rows]), name
    if "num_beams" not in decoding:  # raw logits per step: [rows * return sequences, vocab]
        for step, got in enumerate(mixed.logits):
            for i, name in enumerate(names):
                rows = slice(i * per_row, (i + 1) * per_row)
                torch.testing.assert_close(got[rows], outputs[name].logits[step][rows], atol=ATOL, rtol=0)
    # the adapters change what is generated (logits), so the equality above is not the base's
    for name in ("l", "i", "b"):
        assert (outputs[name].logits[0] - outputs[BASE_ROW].logits[0]).abs().max() > 1e-3, name


def test_generate_with_a_batch_split_setup_follows_the_beams():
    am = AdapterModel(tiny_base("gpt2"))
    _add(am, "gpt2", "l", "lora", seed=1)
    _add(am, "gpt2", "i", "ia3", seed=2)
    inputs = _inputs("gpt2", 3)
    by_names = _generate(am, inputs, adapter_names=["l", "i", "i"], num_beams=2)
    am.set_adapter(BatchSplit("l", "i", batch_sizes=[1, 2]))
    split = _generate(am, inputs, num_beams=2)
    assert torch.equal(split.sequences, by_names.sequences)
    with torch.no_grad():  # after generate, the setup serves the batch's own three rows again
        assert _out(am(**inputs)).shape[0] == 3


# -- the stacks follow loads, deletions and edits ---------------------------------------------------


def test_loading_deleting_and_editing_adapters_between_batches():
    am = AdapterModel(tiny_base("gpt2"))
    _add(am, "gpt2", "x", "lora", seed=1)
    _add(am, "gpt2", "y", "lora", seed=2)
    inputs = _inputs("gpt2", 3)
    _assert_rows_match(am, inputs, ["x", "y", BASE_ROW])
    am.delete_adapter("x")
    _add(am, "gpt2", "z", "lora", seed=3, r=8)  # takes x's place, with a larger rank
    _assert_rows_match(am, inputs, ["z", "y", BASE_ROW])
    with pytest.raises(AdapterNotLoadedError, match="'x'"):
        am(**inputs, adapter_names=["x", "y", "z"])
    with torch.no_grad():  # an adapter edited in place is served with its new weights
        for p in get_method("lora").parameters(am.model, "y"):
            p.mul_(2.0)
    _assert_rows_match(am, inputs, ["z", "y", "y"])
    for i in range(12):  # more adapters than a fresh stack holds: it grows
        _add(am, "gpt2", f"n{i}", "lora", seed=40 + i)
    _assert_rows_match(am, _inputs("gpt2", 4), ["n11", "n0", "y", "n7"])


def test_gradients_reach_the_adapters_of_the_rows_in_eval_mode():
    """In eval mode with gradients on (a trainable adapter), rows go through the adapters' own
    parameters: the output is the same and every adapter of the batch gets a gradient."""
    am = AdapterModel(tiny_base("gpt2"))
    _add(am, "gpt2", "x", "lora", seed=1)
    _add(am, "gpt2", "i", "ia3", seed=2)
    am.eval()
    inputs = _inputs("gpt2", 3)
    with torch.no_grad():
        expected = _out(am(**inputs, adapter_names=["x", "i", BASE_ROW]))
    params = [p for n in ("x", "i") for p in get_method(am.adapters[n].method).parameters(am.model, n)]
    for p in params:
        p.requires_grad_(True)
    out = _out(am(**inputs, adapter_names=["x", "i", BASE_ROW]))
    torch.testing.assert_close(out.detach(), expected, atol=ATOL, rtol=0)
    out.sum().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in params)


# -- errors ---------------------------------------------------------------------------------------


@pytest.fixture
def two_loras():
    am = AdapterModel(tiny_base("gpt2"))
    _add(am, "gpt2", "x", "lora", seed=1)
    _add(am, "gpt2", "y", "lora", seed=2)
    return am, _inputs("gpt2", 2)


def test_unknown_name_is_an_error_that_lists_the_loaded(two_loras):
    am, inputs = two_loras
    with pytest.raises(AdapterNotLoadedError, match=r"adapter_names\[1\].*'nope'") as info:
        am(**inputs, adapter_names=["x", "nope"])
    assert "x, y" in info.value.hint and BASE_ROW in info.value.hint
    with pytest.raises(AdapterNotLoadedError, match="'nope'"):
        am.generate(**inputs, adapter_names=["nope", "x"], max_new_tokens=1)


def test_wrong_length_and_wrong_type_are_errors(two_loras):
    am, inputs = two_loras
    with pytest.raises(UsageError, match="3 names but the batch has 2 rows"):
        am(**inputs, adapter_names=["x", "y", "x"])
    with pytest.raises(UsageError, match="1 names but the batch has 2 rows"):
        am.generate(**inputs, adapter_names=["x"], max_new_tokens=1)
    with pytest.raises(UsageError, match="must be a list"):
        am(**inputs, adapter_names="x")
    with pytest.raises(UsageError, match="empty"):
        am(**inputs, adapter_names=[])
    with pytest.raises(UsageError, match=r"adapter_names\[0\]"):
        am(**inputs, adapter_names=[None, "x"])


def test_training_mode_and_merged_adapters_are_refused(two_loras):
    am, inputs = two_loras
    am.train()
    with pytest.raises(UnsupportedOperationError, match="training mode") as info:
        am(**inputs, adapter_names=["x", "y"])
    assert "eval()" in info.value.hint
    am.eval()
    am.set_adapter("x")
    am.merge_adapter()
    with pytest.raises(UnsupportedOperationError, match="merged"):
        am(**inputs, adapter_names=["x", "y"])


def test_a_method_that_cannot_serve_rows_is_named(two_loras):
    am, inputs = two_loras
    am.add_adapter("bias", "bitfit")
    am.eval()
    with pytest.raises(CompositionError, match="'bias' is a bitfit adapter"):
        am(**inputs, adapter_names=["x", "bias"])
    with pytest.raises(CompositionError, match="bitfit"):
        am.set_adapter(BatchSplit("x", "bias", batch_sizes=[1, 1]))


def test_unknown_keywords_are_not_ignored(two_loras):
    am, inputs = two_loras
    with pytest.raises(UsageError, match="'adapter_name'"):  # a typo of adapter_names
        am(**inputs, adapter_name=["x", "y"])
    with pytest.raises(UsageError, match="'bogus'"):
        am(**inputs, adapter_names=["x", "y"], bogus=1)
    with torch.no_grad():  # keywords the model does take still pass
        out = am(**inputs, adapter_names=["x", "y"], use_cache=False, output_hidden_states=True)
    assert out.hidden_states is not None


def test_a_failed_call_leaves_the_active_setup_serving(two_loras):
    am, inputs = two_loras
    am.set_adapter("y")
    with torch.no_grad():
        before = _out(am(**inputs))
        with pytest.raises(UsageError):
            am(**inputs, adapter_names=["x", "x", "x"])
        with pytest.raises(AdapterNotLoadedError):
            am(**inputs, adapter_names=["x", "gone"])
        after = _out(am(**inputs))
    torch.testing.assert_close(after, before, atol=0, rtol=0)
