"""Tensors whose dtype does not fit their method are refused by ``load_adapter`` before anything
touches the model, for every method and both formats (PEFT's and AdapterHub's, safetensors and
pickle): an ``I32`` header where ``F32`` belongs has the same byte count, so it is valid safetensors,
and would otherwise load as integers around 1e9 (PEFT loads it)."""

from __future__ import annotations

import copy
import json
import shutil
import struct
from pathlib import Path

import pytest
import torch

from adapterhub import AdapterModel
from adapterhub.errors import AdapterFormatError
from adapterhub.plugin import AdapterFiles, get_method
from adapterhub.testing import state_dict_copy, state_dicts_equal
from support.fixtures import ADAPTERS, BASE, FIXTURES, PEFT

# (method, format, fixture folder, base model) for every method and format with a saved fixture
SAVED = [
    ("lora", "peft", PEFT / "lora", "tiny-gpt2"),
    ("ia3", "peft", PEFT / "ia3", "tiny-gpt2"),
    ("prompt_tuning", "peft", PEFT / "prompt_tuning", "tiny-gpt2"),
    ("prefix_tuning", "peft", PEFT / "prefix_tuning", "tiny-gpt2"),
    ("p_tuning", "peft", FIXTURES / "peft-0.21.2-generate" / "p_tuning" / "adapter", "tiny-gpt2"),
    ("lora", "adapters", ADAPTERS / "lora_safetensors", "tiny-bert"),
    ("lora", "adapters (pickle)", ADAPTERS / "lora", "tiny-bert"),
    ("ia3", "adapters", ADAPTERS / "ia3", "tiny-bert"),
    ("bottleneck", "adapters", ADAPTERS / "seq_bn_safetensors", "tiny-bert"),
    ("bottleneck", "adapters (Compacter)", ADAPTERS / "compacter", "tiny-bert"),
    ("prompt_tuning", "adapters", ADAPTERS / "prompt_tuning", "tiny-bert"),
    ("prefix_tuning", "adapters (pickle)", ADAPTERS / "prefix_tuning", "tiny-bert"),
]


def _base(name: str):
    from transformers import AutoModel, GPT2LMHeadModel

    cls = GPT2LMHeadModel if "gpt2" in name else AutoModel
    return cls.from_pretrained(str(BASE / name)).eval()


def retype(folder: Path) -> str:
    """Declare the first floating tensor of ``folder``'s weights as int32 (same bytes); its name."""
    weights = next(p for p in sorted(folder.iterdir()) if p.name.endswith((".safetensors", ".bin"))
                   and not p.name.startswith(("reference", "model_head")))
    if weights.suffix == ".bin":
        state = torch.load(weights, weights_only=True)
        name = sorted(k for k, v in state.items() if v.dtype == torch.float32)[0]
        state[name] = state[name].clone().view(torch.int32)  # the same bytes, declared int32
        torch.save(state, weights)
        return name
    raw = weights.read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + n])
    name = sorted(k for k, v in header.items() if k != "__metadata__" and v["dtype"] == "F32")[0]
    header[name]["dtype"] = "I32"
    text = json.dumps(header).encode()
    weights.write_bytes(struct.pack("<Q", len(text)) + text + raw[8 + n:])
    return name


def _refused(am: AdapterModel, folder: Path, method: str, tensor: str, *, allow_pickle: bool = False) -> str:
    before = state_dict_copy(am.model)
    with pytest.raises(AdapterFormatError) as info:
        am.load_adapter(str(folder), name="retyped", allow_pickle=allow_pickle)
    assert state_dicts_equal(before, state_dict_copy(am.model))
    assert "retyped" not in am.adapters
    message = str(info.value)
    assert str(folder) in message and tensor in message and "has dtype I32" in message, message
    return message


@pytest.mark.parametrize("method, fmt, fixture, base", SAVED, ids=[f"{m}-{f}" for m, f, _, _ in SAVED])
def test_a_retyped_tensor_is_refused_before_the_model_is_touched(method, fmt, fixture, base, tmp_path):
    folder = shutil.copytree(fixture, tmp_path / "adapter")
    am = AdapterModel(_base(base))
    am.load_adapter(str(folder), name="intact", allow_pickle="pickle" in fmt)  # the fixture itself loads
    assert am.adapters["intact"].method == method
    am.delete_adapter("intact")
    tensor = retype(folder)
    _refused(am, folder, method, tensor, allow_pickle="pickle" in fmt)


def test_bitfit_and_qlora_refuse_retyped_tensors_too(tmp_path):
    from peft import LoraConfig

    from adapterhub.testing import save_peft_adapter, tiny_llama
    from adapterhub.toolkit.quantize import quantize_4bit

    am = AdapterModel(_base("tiny-bert"))
    am.add_adapter("bf", "bitfit")
    am.save_adapter(tmp_path / "bitfit", "bf")
    am.delete_adapter("bf")
    _refused(am, tmp_path / "bitfit", "bitfit", retype(tmp_path / "bitfit"))

    base = tiny_llama(seed=1)
    path = save_peft_adapter(base, LoraConfig(r=2, target_modules=["q_proj"]), tmp_path / "q", seed=2)
    quantized = AdapterModel(quantize_4bit(copy.deepcopy(base)))
    tensor = retype(path)
    message = _refused(quantized, path, "qlora", tensor)
    assert "must be floating point" in message  # U8 is allowed in a QLoRA file, but not for a LoRA factor


def test_the_contract_checks_whatever_a_method_read():
    """A plugin with a reader of its own is held to its declaration by the runtime."""
    lora = get_method("lora")
    good = AdapterFiles("lora", {}, {"m.lora_A.weight": torch.zeros(2, 2)}, source="/x")
    lora.check_dtypes(good)
    bad = AdapterFiles("lora", {}, {"m.lora_A.weight": torch.zeros(2, 2, dtype=torch.int64)}, source="/x")
    with pytest.raises(AdapterFormatError, match=r"/x: tensor 'm.lora_A.weight' has dtype I64; lora tensors must be"):
        lora.check_dtypes(bad)
    head = AdapterFiles("lora", {}, {}, source="/x", head={"state_dict": {"1.weight": torch.zeros(1, dtype=torch.uint8)}})
    with pytest.raises(AdapterFormatError, match="head tensor '1.weight' has dtype U8"):
        lora.check_dtypes(head)
    qlora = get_method("qlora")
    packed = AdapterFiles("qlora", {}, {"classifier.modules_to_save.default.weight": torch.zeros(4, dtype=torch.uint8)})
    qlora.check_dtypes(packed)  # bitsandbytes' packed 4-bit layout
    with pytest.raises(AdapterFormatError):
        qlora.check_dtypes(AdapterFiles("qlora", {}, {"m.lora_B.weight": torch.zeros(4, dtype=torch.uint8)}))
