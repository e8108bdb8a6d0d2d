"""adapterhub's AdapterHub-format writes, judged by the real ``adapters`` 1.3.0 library.

``tests/fixtures/generate/make_adapters_roundtrip.py`` had adapterhub write every case of
``support.roundtrip_cases`` (LoRA, IA3, bottleneck, prompt and prefix tuning on BERT, GPT-2 and
Llama, heads included) and then had the library load exactly those files, record its output at
every position of a batch with a right-padded row, which keys it could not place, and its own
save of the same adapter. Here:

* what adapterhub writes today is what the library was given (byte for byte), so a regression in
  the writer is caught;
* the library's output equals adapterhub's, both for the adapter as built and as read back;
* the library placed every tensor, and its own save has the same files, config keys and values,
  weight names and shapes (the only differences are the library's own, each asserted: it cannot
  write safetensors where tensors share storage, it saves prefix tuning's per-layer aliases, and
  from its flex-head model it prefixes keys with ``bert.``);
* the library's default ``load_adapter(dir)`` cannot read these folders (it wants
  ``pytorch_adapter.bin``), which is why every load call adapterhub prints passes
  ``use_safetensors=True``;
* every combination the format cannot hold is refused before anything is written.
"""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file
from support.roundtrip_cases import (
    ADAPTER_NAME,
    BASES,
    BY_NAME,
    CASES,
    DEMO,
    DEMO_NAME,
    REFUSED,
    ROUNDTRIP,
    base_model,
    build,
    demo_dir,
    demo_files,
    inputs,
    minilm,
    output,
    read_json,
)

from adapterhub import AdapterModel
from adapterhub.errors import UnsupportedOperationError
from adapterhub.toolkit.adapters_format.layout import BASE_PREFIXES, LOAD_CALL

#: compared with outputs the `adapters` library produced: run by .ci/compat on every transformers release
pytestmark = pytest.mark.fidelity

ATOL = 1e-5
NAMES = [c.name for c in CASES]


def _fixture(name: str) -> tuple:
    folder = ROUNDTRIP / name
    return folder, read_json(folder / "case.json"), load_file(str(folder / "library_output.safetensors"))


def _written(folder, spec: dict):
    """The folder the library loaded: the case's ``written/``, or (the demo) the shipped adapter itself."""
    return ROUNDTRIP.parents[2] / spec["written_dir"] if "written_dir" in spec else folder / "written"


def test_every_case_has_a_fixture_and_every_fixture_a_case():
    on_disk = sorted(p.name for p in ROUNDTRIP.iterdir() if p.is_dir())
    assert on_disk == sorted([*NAMES, DEMO])
    methods = {(c.method, c.base) for c in CASES}
    for method in ("lora", "ia3", "bottleneck"):
        assert {b for m, b in methods if m == method} == {"bert", "gpt2", "llama"}, method
    assert {b for m, b in methods if m == "prefix_tuning"} == {"bert", "gpt2", "llama"}
    assert ("prompt_tuning", "bert") in methods  # the library refuses prompt tuning on GPT-2 and Llama
    assert {c.base for c in CASES if c.head} == {"bert", "gpt2", "llama"}
    assert {c.head.get("head_type", "classification") for c in CASES if c.head} == {
        "classification", "multilabel_classification", "tagging"}


@pytest.mark.parametrize("name", NAMES)
def test_writer_still_writes_what_the_library_was_given(name, tmp_path):
    folder, spec, _ = _fixture(name)
    assert spec["library_result"]["library_version"] == "1.3.0"
    am = build(BY_NAME[name], tmp_path / "source")
    written = am.save_adapter(tmp_path / "now", ADAPTER_NAME, format="adapters")
    assert sorted(p.name for p in written) == spec["written_files"]
    assert sorted(p.name for p in (tmp_path / "now").iterdir()) == sorted(p.name for p in (folder / "written").iterdir())
    for path in (folder / "written").iterdir():
        assert (tmp_path / "now" / path.name).read_bytes() == path.read_bytes(), path.name


@pytest.mark.parametrize("name", NAMES)
def test_library_output_equals_adapterhubs_at_every_position(name, tmp_path):
    folder, spec, ref = _fixture(name)
    case = BY_NAME[name]
    batch = {"input_ids": ref["input_ids"], "attention_mask": ref["attention_mask"]}
    assert torch.equal(batch["attention_mask"], inputs()["attention_mask"])
    assert (batch["attention_mask"] == 0).any()  # a padded row: every position is compared, padded ones too
    expected = ref["expected"]
    assert list(expected.shape) == spec["library_result"]["output_shape"]

    built = output(build(case, tmp_path / "source"), batch)
    reread = output(_reloaded(folder), batch)
    assert built.shape == expected.shape
    assert torch.allclose(built, expected, atol=ATOL, rtol=0), float((built - expected).abs().max())
    assert torch.allclose(reread, expected, atol=ATOL, rtol=0), float((reread - expected).abs().max())
    if "delta_vs_base" in spec["library_result"]:
        assert spec["library_result"]["delta_vs_base"] > 1e-3  # the library ran the adapter, not the base


def _reloaded(folder):
    am = AdapterModel(base_model(read_json(folder / "case.json")["adapterhub"]["base"]))
    am.set_adapter(am.load_adapter(folder / "written", name=ADAPTER_NAME))
    am.model.eval()
    return am


@pytest.mark.parametrize("name", [*NAMES, DEMO])
def test_library_placed_every_tensor_and_saves_the_same_layout(name):
    folder, spec, _ = _fixture(name)
    result = spec["library_result"]
    layout = read_json(folder / "library_layout.json")
    written = _written(folder, spec)
    ours = sorted(p.name for p in written.iterdir() if p.name in spec["written_files"])
    pickled = not result["own_save"]["use_safetensors"]
    # the library's flex-head model saved an adapter without a head (Compacter): its keys carry "bert."
    flex_without_head = spec["library"]["class"].endswith("AdapterModel") and "head_config.json" not in ours
    base_prefix = BASE_PREFIXES[read_json(written / "adapter_config.json")["model_type"]] + "."

    # the library could not place nothing of ours: prefix tuning's per-layer copies alias the pool
    assert result["loading_info"]["unexpected_keys"] == []
    aliases = {k for group in layout["shared"].get("pytorch_adapter.bin", []) for k in group
               if not k.startswith("prefix_tuning.")}
    assert set(result["loading_info"]["missing_keys"]) <= aliases

    # file names: the same, except that the library pickles what it cannot write as safetensors
    renamed = {"pytorch_adapter.bin": "adapter.safetensors", "pytorch_model_head.bin": "model_head.safetensors"}
    assert sorted(renamed.get(f, f) for f in layout["files"]) == ours
    assert pickled == any(f.endswith(".bin") for f in layout["files"])
    if pickled:
        assert "share memory" in result["own_save"]["safetensors_refused"]

    for file_name, theirs in layout["json"].items():
        mine = read_json(written / file_name)
        assert set(mine) == set(theirs), file_name
        if isinstance(theirs.get("config"), dict):
            assert set(mine["config"]) == set(theirs["config"]), file_name
            assert mine["config"] == theirs["config"], file_name  # every value read as written
        for key in set(theirs) - {"config"}:
            if key == "model_class" and flex_without_head:
                assert (mine[key], theirs[key]) == (BASES[BY_NAME[name].base][2], spec["library"]["class"])
            else:
                assert mine[key] == theirs[key], (file_name, key)

    for file_name, theirs in layout["tensors"].items():
        mine = load_file(str(written / renamed.get(file_name, file_name)))

        def ours_for(key: str) -> str:
            return key[len(base_prefix):] if flex_without_head else key

        # tensors the library keeps as one storage: we write each name it has (copied apart, the same
        # values), except prefix tuning's per-layer aliases of the pool, which it restores on load
        dropped = set()
        for group in layout["shared"][file_name]:
            present = [ours_for(k) for k in group if ours_for(k) in mine]
            assert present, group
            assert all(torch.equal(mine[present[0]], mine[k]) for k in present), group
            dropped |= {k for k in group if ours_for(k) not in mine}
        assert all(".prefix_tuning.pool.prefix_tunings." in k for k in dropped), dropped
        expected = {ours_for(k): v for k, v in theirs.items() if k not in dropped}
        assert sorted(mine) == sorted(expected), file_name
        for key, tensor in mine.items():
            assert list(tensor.shape) == expected[key]["shape"], key
            assert str(tensor.dtype).replace("torch.", "") == expected[key]["dtype"], key


@pytest.mark.parametrize("name", [*NAMES, DEMO])
def test_library_default_load_call_needs_use_safetensors(name):
    _, spec, _ = _fixture(name)
    assert "use_safetensors=True" in spec["library_result"]["load_call"]
    assert spec["library_result"]["default_load_call"]["outcome"].startswith("OSError")
    assert "use_safetensors=True" in LOAD_CALL


def test_shipped_demo_adapter_is_what_the_library_loaded_and_computes_the_same(tmp_path):
    """emotion/minilm-nrc as shipped: the library loads it on its BertAdapterModel (head included), and
    its logits equal adapterhub's; re-saving it today writes the same bytes."""
    import hashlib

    folder, spec, ref = _fixture(DEMO)
    assert spec["written_files"] == demo_files() and _written(folder, spec) == demo_dir()
    for name in demo_files():
        assert hashlib.sha256((demo_dir() / name).read_bytes()).hexdigest() == spec["written_sha256"][name], name
    batch = load_file(str(folder / "inputs.safetensors"))
    assert (batch["attention_mask"] == 0).any()
    model, _ = minilm()
    am = AdapterModel(model)
    am.set_adapter(am.load_adapter(demo_dir(), name=DEMO_NAME))
    logits = output(am, batch)
    assert logits.shape == ref["expected"].shape == (3, 4)
    assert torch.allclose(logits, ref["expected"], atol=ATOL, rtol=0), float((logits - ref["expected"]).abs().max())
    am.save_adapter(tmp_path / "again", DEMO_NAME, format="adapters")
    for name in demo_files():
        assert (tmp_path / "again" / name).read_bytes() == (demo_dir() / name).read_bytes(), name


@pytest.mark.parametrize("name", ["gpt2_prefix_tuning", "llama_prefix_tuning"])
def test_decoder_prefix_is_the_librarys_eager_computation(name):
    """The library's sdpa path masks a prefix out whenever a padding mask exists (recorded by the
    generator): the output equals the base model's. adapterhub computes what eager attention does."""
    _, spec, _ = _fixture(name)
    sdpa = spec["library_result"]["library_sdpa"]
    assert spec["library"]["attn_implementation"] == "eager"
    assert max(sdpa["per_row_max_abs_diff_vs_base"]) < 1e-5
    assert sdpa["max_abs_diff_vs_eager"] > 0.1


@pytest.mark.parametrize("refused", REFUSED, ids=lambda r: r.name)
def test_unsupported_combinations_are_refused_before_writing(refused, tmp_path):
    am = AdapterModel(base_model(refused.base))
    am.add_adapter(ADAPTER_NAME, refused.method, **refused.config)
    if refused.head:
        am.add_head(ADAPTER_NAME, **refused.head)
    target = tmp_path / "out"
    with pytest.raises(UnsupportedOperationError) as info:
        am.save_adapter(target, ADAPTER_NAME, format="adapters")
    message = f"{info.value} {getattr(info.value, 'hint', '')}"
    for word in refused.expect:
        assert word in message, (word, message)
    assert "AdapterHub format" in message or "'adapters' format" in message or "AdapterHub-format" in message
    assert not target.exists()  # nothing half-written
    if refused.method != "bitfit" and not refused.head:
        am.save_adapter(tmp_path / "peft", ADAPTER_NAME, format="peft")  # the format that holds it
        assert (tmp_path / "peft" / "adapter_config.json").is_file()


def test_lora_on_a_model_type_without_a_known_layout_is_refused(tmp_path):
    from transformers import DistilBertConfig, DistilBertModel

    config = DistilBertConfig(vocab_size=64, dim=32, n_layers=2, n_heads=2, hidden_dim=64)
    am = AdapterModel(DistilBertModel(config).eval())
    am.add_adapter("x", "lora", r=2, target_modules=["q_lin", "v_lin"])
    with pytest.raises(UnsupportedOperationError, match="model_type='distilbert'") as info:
        am.save_adapter(tmp_path / "out", "x", format="adapters")
    assert "format='peft'" in str(info.value)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("setting", [{"leave_out": [0]}, {"use_gating": True}])
def test_adapters_prefix_with_leave_out_or_gates_is_refused_on_read(setting, tmp_path):
    """Such a prefix has chunks for some layers only (or gates): adapterhub runs prefixes in every
    layer without gates, so it refuses the file rather than computing something else."""
    import json
    import shutil

    src = ROUNDTRIP / "bert_prefix_tuning" / "written"
    shutil.copytree(src, tmp_path / "p")
    config = json.loads((tmp_path / "p" / "adapter_config.json").read_text())
    config["config"].update(setting)
    (tmp_path / "p" / "adapter_config.json").write_text(json.dumps(config))
    am = AdapterModel(base_model("bert"))
    with pytest.raises(UnsupportedOperationError, match=next(iter(setting))):
        am.load_adapter(tmp_path / "p", name="p")
    assert not am.adapters


def test_alpha_pattern_is_matched_like_peft_on_a_wrapper_model(tmp_path):
    """On GPT2LMHeadModel PEFT matches alpha_pattern against 'transformer.h.0.attn.c_attn'; the writer,
    which strips that prefix, must still see that layer 0 scales differently, and refuse."""
    from transformers import GPT2LMHeadModel

    from support.fixtures import BASE

    am = AdapterModel(GPT2LMHeadModel.from_pretrained(str(BASE / "tiny-gpt2")).eval())
    am.add_adapter("x", "lora", r=2, lora_alpha=4, target_modules=["c_attn"],
                   alpha_pattern={r"transformer\.h\.0\.attn\.c_attn": 8})
    with pytest.raises(UnsupportedOperationError, match="alpha"):
        am.save_adapter(tmp_path / "out", "x", format="adapters")
    assert not (tmp_path / "out").exists()
    am.delete_adapter("x")
    am.add_adapter("y", "lora", r=2, lora_alpha=4, target_modules=["c_attn"])  # uniform: written
    am.save_adapter(tmp_path / "ok", "y", format="adapters")
    assert read_json(tmp_path / "ok" / "adapter_config.json")["config"]["alpha"] == 4
    # keys relative to the bare base model, as from the GPT2Model the library cases were checked on
    assert all(k.startswith("h.") for k in load_file(str(tmp_path / "ok" / "adapter.safetensors")))
