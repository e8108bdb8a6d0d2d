"""Every PEFT adapter type against PEFT 0.21.2 itself.

``tests/fixtures/peft-0.21.2-types`` was made by ``tests/fixtures/generate/make_peft_types_fixtures.py``
with PEFT: two seeded random adapters (``a``, ``b``) of every type PEFT can create on the tiny
GPT-2, Llama and BERT bases, and PEFT's outputs: ``a`` alone, ``a`` merged, ``a`` and ``b`` active
at once, and rows split between them (``adapter_names``); where PEFT refused something, its error
instead. Here adapterhub loads each adapter and must match PEFT to 1e-5 in fp32 wherever PEFT
computed an output, refuse wherever PEFT refused, and refuse the types it cannot run, saying why;
whatever fails leaves the model bit-identical.
"""

from __future__ import annotations

import json

import pytest
import torch
from support.fixtures import FIXTURES, logits

from adapterhub import AdapterModel, BatchSplit, Stack
from adapterhub.errors import AdapterFormatError, AdapterHubError, UnsupportedOperationError
from adapterhub.plugin import get_method
from adapterhub.testing import state_dict_copy, state_dicts_equal

#: compared with outputs PEFT produced: run by .ci/compat on every transformers release
pytestmark = pytest.mark.fidelity

TYPES = FIXTURES / "peft-0.21.2-types"
INDEX: dict[str, dict[str, object]] = json.loads((TYPES / "index.json").read_text())
ATOL = 1e-5

#: the PEFT types adapterhub refuses to run, each with words its refusal must contain (the reason)
REFUSED = {
    "MULTITASK_PROMPT_TUNING": "task_ids",
    "ADAPTION_PROMPT": "not a layer tuner",
    "POLY": "task_ids",
    "XLORA": "classifier",
    "CPT": "prompt learning",
    "CARTRIDGE": "prompt learning",
    "SHADOW": "shadow network",
}


def _cases(created: bool) -> list:
    return [pytest.param(t, arch, id=f"{t.lower()}-{arch}")
            for t, archs in INDEX.items() for arch, state in archs.items() if (state == "created") == created]


def _case(peft_type: str, arch: str) -> tuple:
    from safetensors.torch import load_file

    folder = TYPES / peft_type.lower() / arch
    meta = json.loads((folder / "case.json").read_text())
    outputs = folder / "outputs.safetensors"
    return folder, meta, (load_file(str(outputs)) if outputs.exists() else {})


def _base(meta: dict):
    import transformers

    return getattr(transformers, meta["base_class"]).from_pretrained(str(FIXTURES / meta["base"])).eval()


def _feed() -> dict:
    from safetensors.torch import load_file

    inputs = load_file(str(TYPES / "inputs.safetensors"))
    return {"input_ids": inputs["input_ids"], "attention_mask": inputs["attention_mask"]}


def _close(am, expected, feed) -> float:
    out = logits(am, feed)
    torch.testing.assert_close(out, expected, atol=ATOL, rtol=0)
    return float((out - expected).abs().max())


def test_the_fixtures_cover_every_peft_type():
    from peft.utils.peft_types import PeftType

    assert set(INDEX) == {t.value for t in PeftType}
    assert all(set(archs) == {"gpt2", "llama", "bert"} for archs in INDEX.values())
    created = {t for t, archs in INDEX.items() if "created" in archs.values()}
    assert len(created) >= 40, created  # PEFT creates almost every type on at least one base


@pytest.mark.parametrize(("peft_type", "arch"), _cases(created=True))
def test_adapterhub_matches_peft(peft_type, arch):
    folder, meta, ref = _case(peft_type, arch)
    feed = _feed()
    base = _base(meta)
    pristine = state_dict_copy(base)
    am = AdapterModel(base)
    if peft_type in REFUSED:
        with pytest.raises(UnsupportedOperationError, match=peft_type) as info:
            am.load_adapter(folder / "a", name="a")
        assert REFUSED[peft_type] in str(info.value)
        assert state_dicts_equal(pristine, state_dict_copy(base)) and not hasattr(base, "peft_config")
        return
    if meta["saved_tensors"] == 0:  # PEFT put no layer on this base (OSF skips GPT-2's Conv1D): nothing to load
        with pytest.raises(AdapterFormatError, match="holds no tensors"):
            am.load_adapter(folder / "a", name="a")
        return
    results = meta["outputs"]
    am.load_adapter(folder / "a", name="a")
    am.set_adapter("a")
    _close(am, ref["alone"], feed)
    method = get_method(am.adapters["a"].method)

    before = state_dict_copy(am.model)
    if results["merged"]["ok"]:
        am.merge_adapter()
        _close(am, ref["merged"], feed)
        am.unmerge_adapter()
    else:  # PEFT cannot merge it (on this base): neither can adapterhub, and nothing changes
        with pytest.raises(AdapterHubError):
            am.merge_adapter()
    assert state_dicts_equal(before, state_dict_copy(am.model))
    _close(am, ref["alone"], feed)

    if (folder / "b").is_dir():
        _two_at_once(am, method, folder, results, ref, feed)
    model = am.unload()
    assert state_dicts_equal(pristine, state_dict_copy(model))
    assert not hasattr(model, "peft_config")


def _two_at_once(am, method, folder, results, ref, feed) -> None:
    if not results.get("b_alone", {"ok": True})["ok"]:  # PEFT cannot load b on this base
        with pytest.raises((AdapterHubError, RuntimeError)):
            am.load_adapter(folder / "b", name="b")
            am.set_adapter(Stack("a", "b"))
            logits(am, feed)
        return
    am.load_adapter(folder / "b", name="b")
    for mode, setup in (("stack", Stack("a", "b")), ("per_row", BatchSplit("a", "b", batch_sizes=[1, 1]))):
        flag = method.supports_stack if mode == "stack" else method.supports_mixed_batch
        if results[mode]["ok"] and flag:
            am.set_adapter(setup)
            _close(am, ref[mode], feed)
        elif not method.fallback:
            continue  # a plugin written for the type may do more than PEFT (prompt learning: Stack, BatchSplit)
        else:  # PEFT cannot (or adapterhub does not claim it can): refused, never a wrong output
            with pytest.raises((AdapterHubError, RuntimeError)):
                am.set_adapter(setup)
                logits(am, feed)
    am.set_adapter(None)


#: capability flag -> the output that shows PEFT supports it
_FLAGS = {"mergeable": "merged", "supports_stack": "stack", "supports_mixed_batch": "per_row"}


def _generic_types() -> list[str]:
    return [t for t in INDEX if t not in REFUSED and get_method(t.lower()).fallback]


@pytest.mark.parametrize("peft_type", _generic_types())
def test_capabilities_are_what_peft_did(peft_type):
    """A flag is on only where PEFT did it on some base, and on wherever PEFT did it on every base."""
    method = get_method(peft_type.lower())
    for flag, mode in _FLAGS.items():
        done = []
        for arch in INDEX[peft_type]:
            if INDEX[peft_type][arch] != "created":
                continue
            meta = _case(peft_type, arch)[1]
            if meta["saved_tensors"] == 0 or (mode != "merged" and not (TYPES / peft_type.lower() / arch / "b").is_dir()):
                continue
            done.append(meta["outputs"][mode]["ok"])
        assert done, (peft_type, mode)
        if getattr(method, flag):
            assert any(done), (peft_type, flag)
        if all(done):
            assert getattr(method, flag), (peft_type, flag)


def _loadable() -> list:
    return [p for p in _cases(created=True)
            if p.values[0] not in REFUSED and _case(*p.values)[1]["saved_tensors"] > 0]


@pytest.mark.parametrize(("peft_type", "arch"), _loadable())
def test_saved_adapter_loads_in_peft_to_the_same_outputs(peft_type, arch, tmp_path):
    from peft import PeftModel

    folder, meta, ref = _case(peft_type, arch)
    am = AdapterModel(_base(meta))
    am.load_adapter(folder / "a", name="a")
    written = am.save_adapter(tmp_path / "saved", "a")
    assert sorted(p.name for p in written) == ["adapter_config.json", "adapter_model.safetensors"]
    saved = json.loads((tmp_path / "saved" / "adapter_config.json").read_text())
    assert saved["peft_type"] == peft_type
    reloaded = PeftModel.from_pretrained(_base(meta), str(tmp_path / "saved")).eval()
    torch.testing.assert_close(logits(reloaded, _feed()), ref["alone"], atol=ATOL, rtol=0)


@pytest.mark.parametrize(("peft_type", "arch"), _cases(created=False))
def test_peft_refuses_and_so_does_adapterhub(peft_type, arch):
    """Where PEFT cannot create a type on a base it still cannot, and adapterhub refuses too,
    leaving the model bit-identical."""
    from peft import PeftConfig, get_peft_model

    _, meta, _ = _case(peft_type, arch)
    recorded = meta["refusal"].split(":", 1)[0]
    with pytest.raises(Exception) as peft_error:  # noqa: PT011 - whatever PEFT raises is PEFT's refusal
        model = get_peft_model(_base(meta), PeftConfig.from_peft_type(peft_type=peft_type, **meta["config_kwargs"]))
        logits(model, _feed())
    if peft_type != "XLORA":  # X-LoRA's recorded refusal came after loading its experts, which this omits
        assert type(peft_error.value).__name__ == recorded
    base = _base(meta)
    pristine = state_dict_copy(base)
    am = AdapterModel(base)
    with pytest.raises(AdapterHubError):
        am.add_adapter("x", peft_type.lower(), **{k: v for k, v in meta["config_kwargs"].items() if k != "task_type"})
    assert state_dicts_equal(pristine, state_dict_copy(base))
    assert not hasattr(base, "peft_config") and am.adapters == {}
