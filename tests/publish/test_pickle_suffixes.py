"""One list of pickle suffixes: what push refuses (pointing at `adapterhub convert`), convert converts."""

from __future__ import annotations

import json

import pytest

from adapterhub.errors import AdapterFormatError, PublishError
from adapterhub.layout import PICKLE_SUFFIXES
from adapterhub.publish import convert_to_safetensors, push_directory, validate_adapter_dir


def _pickled_lora(folder, suffix: str):
    """A PEFT LoRA folder whose weights were saved with torch.save as adapter_model<suffix>."""
    import torch
    from peft import LoraConfig, get_peft_model
    from safetensors.torch import load_file

    from adapterhub.testing import tiny_bert

    get_peft_model(tiny_bert(1), LoraConfig(r=2, target_modules=["query"])).save_pretrained(str(folder))
    safetensors = folder / "adapter_model.safetensors"
    config = json.loads((folder / "adapter_config.json").read_text())
    config["base_model_name_or_path"] = "alice/tiny-bert"
    (folder / "adapter_config.json").write_text(json.dumps(config))
    torch.save(load_file(str(safetensors)), folder / f"adapter_model{suffix}")
    safetensors.unlink()
    return folder


@pytest.mark.parametrize("suffix", [".ckpt", ".pth", ".pickle"])
def test_push_refuses_and_convert_converts_the_same_pickles(tmp_path, suffix):
    adapter = _pickled_lora(tmp_path / "adapter", suffix)
    with pytest.raises(PublishError) as info:
        push_directory(adapter, repo_id="alice/x", version="1.0.0", task="t", check=False, dry_run=True)
    assert any(f"adapter_model{suffix}" in p and f"adapterhub convert {adapter} --to-safetensors" in p
               for p in info.value.problems)

    converted = convert_to_safetensors(adapter)
    assert [(a.name, b.name) for a, b in converted] == [(f"adapter_model{suffix}", "adapter_model.safetensors")]
    assert validate_adapter_dir(adapter, check=False).method == "lora"
    result = push_directory(adapter, repo_id="alice/x", version="1.0.0", task="t", check=False, dry_run=True)
    assert result.dry_run and "adapter_model.safetensors" in {f.path for f in result.files}


def test_convert_with_nothing_to_convert_lists_every_suffix(tmp_path):
    (tmp_path / "adapter_config.json").write_text("{}")
    (tmp_path / ".cache").mkdir()
    (tmp_path / ".cache" / "old.bin").write_bytes(b"x")  # not part of the adapter: not converted either
    with pytest.raises(AdapterFormatError) as info:
        convert_to_safetensors(tmp_path)
    assert all(f"*{s}" in info.value.message for s in PICKLE_SUFFIXES)
