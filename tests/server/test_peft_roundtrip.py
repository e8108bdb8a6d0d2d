"""PEFT end to end: save a LoRA adapter, upload it, load it back with PeftModel.from_pretrained."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

from huggingface_hub import hf_hub_download

# Runs in a fresh interpreter because PEFT and transformers use huggingface_hub's import-time endpoint.
_SCRIPT = textwrap.dedent(
    """
    import sys
    from pathlib import Path

    import torch
    from huggingface_hub import HfApi
    from peft import LoraConfig, PeftModel, get_peft_model, get_peft_model_state_dict
    from safetensors.torch import load_file
    from transformers import GPT2Config, GPT2LMHeadModel

    repo_id, out = sys.argv[1], Path(sys.argv[2])
    config = GPT2Config(n_embd=32, n_layer=2, n_head=2, vocab_size=100, n_positions=64)

    def base():
        torch.manual_seed(0)
        return GPT2LMHeadModel(config)

    lora = LoraConfig(r=4, lora_alpha=8, target_modules=["c_attn"], init_lora_weights=False)
    model = get_peft_model(base(), lora)
    model.save_pretrained(out)
    api = HfApi()  # endpoint and token from HF_ENDPOINT / HF_TOKEN
    api.create_repo(repo_id, exist_ok=True)
    api.upload_folder(repo_id=repo_id, folder_path=out)

    loaded = PeftModel.from_pretrained(base(), repo_id)
    got = get_peft_model_state_dict(loaded)
    want = load_file(out / "adapter_model.safetensors")
    assert sorted(got) == sorted(want), (sorted(got), sorted(want))
    assert want, "no LoRA weights saved"
    for key, tensor in want.items():
        assert torch.equal(got[key].cpu(), tensor), key
    ids = torch.tensor([[1, 2, 3, 4]])
    model.eval(), loaded.eval()  # GPT-2 has dropout in train mode
    assert torch.equal(loaded(ids).logits, model(ids).logits)
    print("ROUNDTRIP-OK", len(want))
    """
)


def test_peft_save_upload_and_from_pretrained(hub, tmp_path, cache_dir):
    env = {
        **os.environ,
        "HF_ENDPOINT": hub.url,
        "HF_TOKEN": hub.users["alice"],
        "HF_HOME": str(tmp_path / "hf-home"),
        "HF_HUB_CACHE": str(tmp_path / "hf-home" / "hub"),
    }
    out = tmp_path / "adapter"
    result = subprocess.run(
        [sys.executable, "-c", _SCRIPT, "alice/tiny-gpt2-lora", str(out)],
        capture_output=True,
        text=True,
        env=env,
        timeout=240,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "ROUNDTRIP-OK" in result.stdout
    # Independently of PEFT: the bytes on the Hub are the bytes PEFT saved.
    for name in ("adapter_model.safetensors", "adapter_config.json"):
        path = hf_hub_download("alice/tiny-gpt2-lora", name, endpoint=hub.url, cache_dir=cache_dir)
        assert open(path, "rb").read() == (out / name).read_bytes()
