"""``am(..., adapter_names=[...])`` equals what PEFT 0.21.2 computes, live, for the same adapter files.

The adapters are made and saved by PEFT (random factors: ``init_lora_weights=False``), loaded into an
AdapterModel and into a ``PeftModel`` on a second copy of the base, and both are run on one padded
batch. Where PEFT serves the rows itself (the LoRA family without DoRA, and the PEFT types whose
layers take ``adapter_names``) the reference is PEFT's own ``adapter_names`` output; for the rows
PEFT cannot mix (DoRA, IA3) it is PEFT's output with that adapter active alone.
"""

from __future__ import annotations

import warnings

import pytest
import torch
from support.fixtures import tiny_base

from adapterhub import AdapterModel
from adapterhub.errors import CompositionError

#: compared with outputs PEFT produced: run by .ci/compat on every transformers release
pytestmark = pytest.mark.fidelity

ATOL = 1e-5
BASE_ROW = "__base__"


TARGETS = {"gpt2": ["c_attn", "c_proj", "c_fc"], "llama": ["q_proj", "k_proj", "v_proj", "o_proj", "down_proj"],
           "bert": ["query", "value", "intermediate.dense"]}
#: a module of each model to give its own rank and alpha (``rank_pattern`` / ``alpha_pattern``)
PATTERN = {"gpt2": "c_fc", "llama": "down_proj", "bert": "intermediate.dense"}

#: name -> LoraConfig keywords; every one of them is served by PEFT's own adapter_names forward
LORAS = {
    "plain": {"r": 4, "lora_alpha": 8},
    "rslora": {"r": 8, "lora_alpha": 4, "use_rslora": True},
    "pattern": {"r": 2, "lora_alpha": 4, "rank_pattern": {"PAT": 6}, "alpha_pattern": {"PAT": 3}},
    "lorabias": {"r": 3, "lora_alpha": 5, "lora_bias": True},
}


def _save_loras(root, kind: str, configs: dict) -> dict:
    from peft import LoraConfig, get_peft_model

    folders = {}
    for i, (name, cfg) in enumerate(configs.items()):
        cfg = {k: ({PATTERN[kind]: x for x in v.values()} if k.endswith("_pattern") else v) for k, v in cfg.items()}
        torch.manual_seed(100 + i)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model = get_peft_model(tiny_base(kind), LoraConfig(target_modules=TARGETS[kind], init_lora_weights=False,
                                                            **cfg))
        if cfg.get("lora_bias"):  # PEFT initialises lora_B's bias at zero: give it values to carry
            with torch.no_grad():
                for n, p in model.named_parameters():
                    if "lora_B" in n and n.endswith("bias"):
                        p.normal_(0, 0.1)
        model.save_pretrained(root / name)
        folders[name] = root / name
    return folders


def _both(folders: dict, kind: str):
    from peft import PeftModel

    am = AdapterModel(tiny_base(kind))
    names = list(folders)
    for name in names:
        am.load_adapter(folders[name], name=name)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pm = PeftModel.from_pretrained(tiny_base(kind), folders[names[0]], adapter_name=names[0])
        for name in names[1:]:
            pm.load_adapter(folders[name], adapter_name=name)
    return am, pm.eval()


def _inputs(kind: str, rows: int, tokens: int = 8) -> dict:
    """Padded rows; ``tokens=1``: one token per row, the shape of a decode step."""
    gen = torch.Generator().manual_seed(rows)
    ids = torch.randint(3, 120, (rows, tokens), generator=gen)
    mask = torch.ones_like(ids)
    for i in range(rows):
        cut = i % 3 if tokens > 2 else 0
        if cut:
            if kind == "bert":
                mask[i, -cut:] = 0
            else:
                mask[i, :cut] = 0
    return {"input_ids": ids, "attention_mask": mask}


def _out(output):
    return output.logits if hasattr(output, "logits") else output.last_hidden_state


@pytest.mark.parametrize("tokens", [8, 1])
@pytest.mark.parametrize("kind", ["gpt2", "llama", "bert"])
def test_lora_family_rows_equal_peft_adapter_names(tmp_path, kind, tokens):
    am, pm = _both(_save_loras(tmp_path, kind, LORAS), kind)
    names = ["pattern", "plain", BASE_ROW, "rslora", "lorabias", "plain", "pattern"]
    inputs = _inputs(kind, len(names), tokens)
    with torch.no_grad():
        ours = _out(am(**inputs, adapter_names=names))
        theirs = _out(pm(**inputs, adapter_names=names))
        with pm.disable_adapter():
            plain = _out(pm(**inputs))
    torch.testing.assert_close(ours, theirs, atol=ATOL, rtol=0)
    for i, name in enumerate(names):  # every adapter acts on its rows
        assert ((theirs[i] - plain[i]).abs().max() > 1e-3) == (name != BASE_ROW), name


@pytest.mark.parametrize("tokens", [8, 1])
@pytest.mark.parametrize("kind", ["gpt2", "llama", "bert"])
def test_dora_rows_equal_peft_dora_alone(tmp_path, kind, tokens):
    """PEFT refuses adapter_names with DoRA; each DoRA row equals PEFT's DoRA adapter alone."""
    configs = {"dora": {"r": 4, "lora_alpha": 8, "use_dora": True}, "plain": LORAS["plain"],
               "dora_rs": {"r": 2, "lora_alpha": 8, "use_dora": True, "use_rslora": True}}
    am, pm = _both(_save_loras(tmp_path, kind, configs), kind)
    names = ["dora", "plain", "dora_rs", BASE_ROW, "dora"]
    inputs = _inputs(kind, len(names), tokens)
    with torch.no_grad():
        ours = _out(am(**inputs, adapter_names=names))
        for name in dict.fromkeys(names):
            if name == BASE_ROW:
                with pm.disable_adapter():
                    theirs = _out(pm(**inputs))
            else:
                pm.set_adapter(name)
                theirs = _out(pm(**inputs))
            for i in (i for i, n in enumerate(names) if n == name):
                torch.testing.assert_close(ours[i], theirs[i], atol=ATOL, rtol=0)
        with pytest.raises(ValueError, match="DoRA"):  # (last: PEFT leaves its row hooks behind)
            pm(**inputs, adapter_names=names)


@pytest.mark.parametrize("kind", ["gpt2", "llama", "bert"])
def test_ia3_rows_equal_peft_ia3_alone(tmp_path, kind):
    """PEFT has no per-row IA3 (its IA3 layers drop adapter_names); each row equals PEFT's adapter alone."""
    from peft import IA3Config, PeftModel, get_peft_model

    targets = {"gpt2": (["c_attn", "mlp.c_proj"], ["mlp.c_proj"]), "llama": (["k_proj", "v_proj", "down_proj"],
               ["down_proj"]), "bert": (["key", "value", "output.dense"], ["output.dense"])}[kind]
    for i, name in enumerate(("u", "v")):
        torch.manual_seed(i)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            cfg = IA3Config(target_modules=targets[0], feedforward_modules=targets[1], init_ia3_weights=False)
            get_peft_model(tiny_base(kind), cfg).save_pretrained(tmp_path / name)
    am = AdapterModel(tiny_base(kind))
    for name in ("u", "v"):
        am.load_adapter(tmp_path / name, name=name)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pm = PeftModel.from_pretrained(tiny_base(kind), tmp_path / "u", adapter_name="u").eval()
        pm.load_adapter(tmp_path / "v", adapter_name="v")
    names = ["v", BASE_ROW, "u", "v"]
    inputs = _inputs(kind, len(names))
    with torch.no_grad():
        ours = _out(am(**inputs, adapter_names=names))
        pm.set_adapter("u")
        u = _out(pm(**inputs))
        pm.set_adapter("v")
        v = _out(pm(**inputs))
        with pm.disable_adapter():
            base = _out(pm(**inputs))
    for i, expected in enumerate((v, base, u, v)):
        torch.testing.assert_close(ours[i], expected[i], atol=ATOL, rtol=0)
    assert (u - v).abs().max() > 1e-3


@pytest.mark.parametrize("kind", ["gpt2", "llama"])
def test_generate_with_beams_and_sampling_equals_peft(tmp_path, kind):
    """PEFT repeats adapter_names for beams itself; both give the same tokens and logits. (PEFT does
    not repeat them for num_return_sequences; test_rows.py checks that case against each adapter alone.)"""
    am, pm = _both(_save_loras(tmp_path, kind, {k: LORAS[k] for k in ("plain", "rslora", "pattern")}), kind)
    names = ["rslora", BASE_ROW, "plain", "pattern"]
    inputs = _inputs(kind, len(names))
    common = dict(max_new_tokens=5, pad_token_id=0, output_logits=True, return_dict_in_generate=True)
    for decoding in ({"num_beams": 3, "do_sample": False}, {"do_sample": True, "top_k": 30}):
        with torch.no_grad():
            torch.manual_seed(5)
            ours = am.generate(**inputs, adapter_names=names, **common, **decoding)
            torch.manual_seed(5)
            theirs = pm.generate(**inputs, adapter_names=names, **common, **decoding)
        assert torch.equal(ours.sequences, theirs.sequences), decoding
        for got, expected in zip(ours.logits, theirs.logits, strict=True):
            torch.testing.assert_close(got, expected, atol=ATOL, rtol=0)


@pytest.mark.parametrize("peft_type", ["road", "glora"])
def test_other_peft_types_rows_equal_peft_adapter_names(tmp_path, peft_type):
    """A PEFT type run by PEFT's own layers (the generic plugin): rows go through PEFT's forward."""
    import peft

    make = {"road": lambda: peft.RoadConfig(group_size=8, target_modules=["q_proj", "v_proj"], init_weights=False),
            "glora": lambda: peft.GloraConfig(r=4, target_modules=["q_proj", "v_proj"])}[peft_type]
    folders = {}
    for i, name in enumerate(("one", "two")):
        torch.manual_seed(i)
        model = peft.get_peft_model(tiny_base("llama"), make())
        with torch.no_grad():  # off the identity init
            for n, p in model.named_parameters():
                if p.requires_grad:
                    p.add_(torch.randn_like(p) * 0.1)
        model.save_pretrained(tmp_path / name)
        folders[name] = tmp_path / name
    am, pm = _both(folders, "llama")
    assert am.adapters["one"].method == peft_type
    names = ["two", BASE_ROW, "one"]
    inputs = _inputs("llama", len(names))
    with torch.no_grad():
        ours = _out(am(**inputs, adapter_names=names))
        theirs = _out(pm(**inputs, adapter_names=names))
        pm.set_adapter("one")
        one = _out(pm(**inputs))
    torch.testing.assert_close(ours, theirs, atol=ATOL, rtol=0)
    torch.testing.assert_close(ours[2], one[2], atol=ATOL, rtol=0)
    assert (theirs[0] - theirs[2]).abs().max() > 1e-3


@pytest.mark.parametrize("peft_type", ["loha", "lokr"])
def test_peft_types_peft_cannot_mix_are_refused(tmp_path, peft_type):
    """LoHa's and LoKr's PEFT layers take no adapter_names: a mixed batch of them is an error, not
    rows silently served by the active adapter."""
    import peft

    cls = {"loha": peft.LoHaConfig, "lokr": peft.LoKrConfig}[peft_type]
    peft.get_peft_model(tiny_base("llama"), cls(r=4, alpha=8, target_modules=["q_proj"])).save_pretrained(tmp_path / "a")
    am = AdapterModel(tiny_base("llama"))
    am.load_adapter(tmp_path / "a", name="a")
    with pytest.raises(CompositionError, match=f"'a' is a {peft_type} adapter"):
        am(**_inputs("llama", 2), adapter_names=["a", BASE_ROW])


def test_qlora_rows_equal_peft_adapter_names(tmp_path):
    """LoRAs on a 4-bit base (the qlora method): rows go through PEFT's bitsandbytes layers."""
    pytest.importorskip("bitsandbytes")
    from peft import PeftModel

    from adapterhub.toolkit.quantize import quantize_4bit

    folders = _save_loras(tmp_path, "llama", {k: LORAS[k] for k in ("plain", "rslora")})
    am = AdapterModel(quantize_4bit(tiny_base("llama"), "nf4"))
    for name, folder in folders.items():
        am.load_adapter(folder, name=name)
    assert am.adapters["plain"].method == "qlora"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pm = PeftModel.from_pretrained(quantize_4bit(tiny_base("llama"), "nf4"), folders["plain"], adapter_name="plain")
        pm.load_adapter(folders["rslora"], adapter_name="rslora")
    names = ["rslora", BASE_ROW, "plain"]
    inputs = _inputs("llama", len(names))
    with torch.no_grad():
        ours = _out(am(**inputs, adapter_names=names))
        theirs = _out(pm.eval()(**inputs, adapter_names=names))
    torch.testing.assert_close(ours, theirs, atol=ATOL, rtol=0)
    assert (theirs[0] - theirs[2]).abs().max() > 1e-3
