"""Every adapters-1.3.0 case made by tests/fixtures/generate/make_adapters_fixtures.py, loaded through
``AdapterModel`` on the same tiny base (transformers 5) and compared with the output the ``adapters``
library itself computed (``reference.safetensors`` ``expected``).

Cases: double_seq_bn, par_bn, seq_bn with non-default knobs, gated seq_bn, Average, Parallel,
BatchSplit (bottleneck compositions), IA3 and prompt tuning in the adapters format, and
bottlenecks on GPT-2 and Llama. Prompt tuning on GPT-2 / Llama is refused by the library (the
cases record its refusal); adapterhub refuses the same combination.
"""

from __future__ import annotations

import pytest
import torch
import transformers
from support.fixtures import ADAPTERS, FIXTURES, case, load_reference

from adapterhub import AdapterModel, Average, BatchSplit, Parallel, Stack

#: compared with outputs PEFT or `adapters` produced: run by .ci/compat on every transformers release
pytestmark = pytest.mark.fidelity

GENERATED = [
    "double_seq_bn",
    "par_bn",
    "seq_bn_knobs",
    "seq_bn_gated",
    "average_seqbn",
    "parallel_seqbn",
    "batchsplit_seqbn",
    "ia3",
    "gpt2_seq_bn",
    "gpt2_double_seq_bn",
    "gpt2_lora",
    "gpt2_lora_qkv_mlp",
    "gpt2_ia3",
    "llama_seq_bn",
    "llama_par_bn",
]

# Cases where the library refuses the combination (case.json "outcome": "refused").
REFUSED_PROMPT_TUNING = ["gpt2_prompt_tuning", "llama_prompt_tuning"]

_BASES: dict[str, dict] = {}


def _block(composition: dict):
    """The adapterhub block for a case.json composition (adapters' class names and kwargs)."""
    kind, children = composition["type"], composition["children"]
    if kind == "Average":
        return Average(*children, weights=composition["weights"])
    if kind == "BatchSplit":
        return BatchSplit(*children, batch_sizes=composition["batch_sizes"])
    return {"Stack": Stack, "Parallel": Parallel}[kind](*children)


def _fresh_base(spec: dict):
    """A fresh base model per test; the state dict is read from disk once per session."""
    key = spec["base"]
    cls = getattr(transformers, spec["base_class"])
    if key not in _BASES:
        _BASES[key] = {"config": transformers.AutoConfig.from_pretrained(str(FIXTURES / key)),
                       "state": cls.from_pretrained(str(FIXTURES / key)).state_dict()}
    cached = _BASES[key]
    model = cls(cached["config"])
    model.load_state_dict(cached["state"])
    return model.eval()


@pytest.mark.parametrize("case_name", GENERATED)
def test_matches_adapters_library_output(case_name):
    case_dir = ADAPTERS / case_name
    spec = case(case_dir)
    assert spec["library"] == "adapters" and spec["library_version"] == "1.3.0"
    ref = load_reference(case_dir)
    pickled = "pickle" in spec["weights_file"]
    am = AdapterModel(_fresh_base(spec))
    if spec["composition"] is None:
        name = am.load_adapter(case_dir, name=spec["adapter_name"], allow_pickle=pickled)
        am.set_adapter(name)
    else:
        for sub in spec["adapter_dirs"]:
            am.load_adapter(case_dir / sub, name=sub, allow_pickle=pickled)
        am.set_adapter(_block(spec["composition"]))
    with torch.no_grad():
        out = getattr(am(input_ids=ref["input_ids"], attention_mask=ref["attention_mask"]), spec["output"])
    expected = ref["expected"]
    assert list(out.shape) == list(expected.shape) == spec["expected_shape"]
    tol = spec["tolerance"]
    diff = (out - expected).abs().max().item()
    assert torch.allclose(out, expected, atol=tol["atol"], rtol=tol["rtol"]), f"{case_name}: max |diff| {diff}"
    # The adapter must matter: the plain base differs from the expected output.
    assert spec["delta_vs_base"] > 100 * tol["atol"]


def _prompt_tuning_output(attn_implementation: str | None = None):
    case_dir = ADAPTERS / "prompt_tuning"
    spec = case(case_dir)
    ref = load_reference(case_dir)
    model = _fresh_base(spec)
    if attn_implementation is not None:
        model.set_attn_implementation(attn_implementation)
        assert model.config._attn_implementation == attn_implementation
    am = AdapterModel(model)
    am.load_adapter(case_dir, name="prompt")
    am.set_adapter("prompt")
    with torch.no_grad():
        out = am(input_ids=ref["input_ids"], attention_mask=ref["attention_mask"]).last_hidden_state
    assert list(out.shape) == list(ref["expected"].shape) == [3, 14, 64]
    return out, ref, spec


def test_prompt_tuning_unpadded_rows_match_adapters_library():
    out, ref, spec = _prompt_tuning_output()
    mask = ref["attention_mask"].bool().all(dim=1)  # rows without padding
    assert mask.tolist() == [True, False, True]
    assert torch.allclose(out[mask], ref["expected"][mask], atol=spec["tolerance"]["atol"], rtol=0)


@pytest.mark.parametrize("attn_implementation", ["eager", "sdpa"])
def test_prompt_tuning_padded_row_matches_adapters_library(attn_implementation):
    """The fixture was computed with transformers 4.57's default sdpa attention, where adapters 1.3.0 lets
    the prompt query rows attend to padded keys; adapterhub reproduces that on either attention kernel."""
    out, ref, spec = _prompt_tuning_output(attn_implementation)
    assert "sdpa" in spec["attn_implementation"]
    assert ref["attention_mask"][1].tolist() == [1] * 7 + [0] * 3
    assert torch.allclose(out, ref["expected"], atol=spec["tolerance"]["atol"], rtol=0), \
        f"max |diff| {(out - ref['expected']).abs().max().item()}"


def test_changed_static_head_is_refused_and_model_untouched(tmp_path):
    """adapters saves GPT2LMHeadModel's own lm_head beside the adapter; a changed one is refused."""
    import shutil

    from safetensors.torch import load_file, save_file

    from adapterhub.errors import UnsupportedOperationError

    case_dir = ADAPTERS / "gpt2_seq_bn"
    spec = case(case_dir)
    shutil.copytree(case_dir, tmp_path / "a")
    head = load_file(str(tmp_path / "a" / "model_head.safetensors"))
    assert set(head) == {"lm_head.weight"}
    save_file({"lm_head.weight": head["lm_head.weight"] + 1.0}, str(tmp_path / "a" / "model_head.safetensors"))
    model = _fresh_base(spec)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    am = AdapterModel(model)
    with pytest.raises(UnsupportedOperationError, match="lm_head.weight"):
        am.load_adapter(tmp_path / "a", name="seq_bn")
    assert not am.adapters
    after = model.state_dict()
    assert set(after) == set(before) and all(torch.equal(after[k], before[k]) for k in before)


def test_decoder_bottleneck_delete_restores_base():
    case_dir = ADAPTERS / "llama_seq_bn"
    spec = case(case_dir)
    ref = load_reference(case_dir)
    model = _fresh_base(spec)
    inputs = {"input_ids": ref["input_ids"], "attention_mask": ref["attention_mask"]}
    with torch.no_grad():
        base_out = model(**inputs).logits
    keys = set(model.state_dict())
    am = AdapterModel(model)
    am.load_adapter(case_dir, name="seq_bn")
    am.set_adapter("seq_bn")
    assert any("output_adapters.adapters.seq_bn" in k for k in model.state_dict())
    am.delete_adapter("seq_bn")
    assert set(model.state_dict()) == keys
    with torch.no_grad():
        assert torch.equal(model(**inputs).logits, base_out)


def test_saved_bottleneck_reloads_identically(tmp_path):
    """A GPT-2 bottleneck re-saved by adapterhub (safetensors) reproduces the library's output."""
    case_dir = ADAPTERS / "gpt2_double_seq_bn"
    spec = case(case_dir)
    ref = load_reference(case_dir)
    am = AdapterModel(_fresh_base(spec))
    am.load_adapter(case_dir, name="double_seq_bn")
    am.save_adapter(tmp_path / "out", "double_seq_bn", format="adapters")
    again = AdapterModel(_fresh_base(spec))
    again.load_adapter(tmp_path / "out", name="double_seq_bn")
    again.set_adapter("double_seq_bn")
    with torch.no_grad():
        out = again(input_ids=ref["input_ids"], attention_mask=ref["attention_mask"]).logits
    assert torch.allclose(out, ref["expected"], atol=spec["tolerance"]["atol"], rtol=0)


@pytest.mark.parametrize("case_name", REFUSED_PROMPT_TUNING)
def test_decoder_prompt_tuning_refused_like_adapters_library(case_name):
    """adapters 1.3.0 refuses prompt tuning on GPT-2 / Llama (add_adapter and load_adapter raise
    ValueError); adapterhub refuses loading the same files, leaving the model as it was."""
    from adapterhub.errors import IncompatibleBaseModelError

    case_dir = ADAPTERS / case_name
    spec = case(case_dir)
    assert spec["library"] == "adapters" and spec["library_version"] == "1.3.0"
    assert spec["outcome"] == "refused" and spec["library_supports_adapter_prompt_tuning"] is False
    for call in ("add_adapter", "load_adapter"):
        assert spec["refusals"][call]["error"].startswith("ValueError:")
        assert "is not supported by this model" in spec["refusals"][call]["error"]
    model = _fresh_base(spec)
    model_type = model.config.model_type
    ids = torch.tensor([[1, 5, 9, 2, 7], [1, 3, 4, 0, 0]])
    mask = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]])
    with torch.no_grad():
        base_out = model(input_ids=ids, attention_mask=mask).logits
    before = {k: v.clone() for k, v in model.state_dict().items()}
    am = AdapterModel(model)
    with pytest.raises(IncompatibleBaseModelError, match=f"not supported on '{model_type}' models") as info:
        am.load_adapter(case_dir, name="prompt")
    assert "PEFT-format prompt tuning" in info.value.hint
    assert not am.adapters and "adapterhub_prompts" not in model._modules
    after = model.state_dict()
    assert set(after) == set(before) and all(torch.equal(after[k], before[k]) for k in before)
    with torch.no_grad():  # no hook left behind: same output, mask not widened
        assert torch.equal(am(input_ids=ids, attention_mask=mask).logits, base_out)


def test_bert_prompt_tuning_file_refused_on_gpt2():
    """The library's own BERT prompt-tuning save (hidden 64, as tiny-gpt2) is refused on GPT-2 too."""
    from adapterhub.errors import IncompatibleBaseModelError

    am = AdapterModel(_fresh_base(case(ADAPTERS / "gpt2_seq_bn")))
    with pytest.raises(IncompatibleBaseModelError, match="prompt tuning"):
        am.load_adapter(ADAPTERS / "prompt_tuning", name="prompt")
    assert not am.adapters


def test_decoder_prompt_tuning_not_saved_in_adapters_format(tmp_path):
    """A PEFT-style prompt made on GPT-2 saves as PEFT, but not as AdapterHub files the library refuses."""
    from adapterhub.errors import UnsupportedOperationError

    am = AdapterModel(_fresh_base(case(ADAPTERS / "gpt2_seq_bn")))
    am.add_adapter("prompt", "prompt_tuning", num_virtual_tokens=3)
    with pytest.raises(UnsupportedOperationError, match="'gpt2' model in the AdapterHub format"):
        am.save_adapter(tmp_path / "ah", "prompt", format="adapters")
    assert not (tmp_path / "ah" / "adapter_config.json").exists()
    am.save_adapter(tmp_path / "peft", "prompt", format="peft")
    assert (tmp_path / "peft" / "adapter_model.safetensors").is_file()


@pytest.mark.parametrize("case_name", ["gpt2_lora", "gpt2_lora_qkv_mlp", "gpt2_ia3"])
def test_fused_c_attn_reads_into_peft_and_writes_back_as_the_library_did(case_name, tmp_path):
    """The library's own LoRA/IA3 on GPT-2's fused c_attn (one A per enabled matrix): read into PEFT's
    form (block-diagonal B, same scaling), it reproduces the library's output in PEFT itself, and
    written back in the AdapterHub format it is the library's file again (config and tensors)."""
    import json

    from peft import PeftModel
    from safetensors.torch import load_file

    case_dir = ADAPTERS / case_name
    spec = case(case_dir)
    ref = load_reference(case_dir)
    inputs = {"input_ids": ref["input_ids"], "attention_mask": ref["attention_mask"]}
    name = spec["adapter_name"]
    am = AdapterModel(_fresh_base(spec))
    am.load_adapter(case_dir, name=name)
    am.save_adapter(tmp_path / "peft", name, format="peft")
    peft_model = PeftModel.from_pretrained(_fresh_base(spec), str(tmp_path / "peft")).eval()
    with torch.no_grad():
        assert torch.allclose(peft_model(**inputs).logits, ref["expected"], atol=1e-5, rtol=0)

    am.save_adapter(tmp_path / "ah", name, format="adapters")
    original = json.loads((case_dir / "adapter_config.json").read_text())
    again = json.loads((tmp_path / "ah" / "adapter_config.json").read_text())
    assert again["config"] == original["config"]
    theirs = {k.removeprefix("transformer."): v for k, v in load_file(str(case_dir / "adapter.safetensors")).items()}
    ours = load_file(str(tmp_path / "ah" / "adapter.safetensors"))
    assert set(ours) == set(theirs)
    assert all(torch.equal(ours[k], theirs[k]) for k in theirs)
