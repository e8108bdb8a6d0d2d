"""``adapterhub export`` on the command line: --json, human output, exit codes (1 for a refused
export, 2 for bad usage, 130 for Ctrl-C, with nothing left behind), and the real entry point."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from adapterhub.testing import run_cli


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    from peft import LoraConfig, PromptTuningConfig, get_peft_model

    from adapterhub.testing import save_peft_adapter, tiny_llama

    root = tmp_path_factory.mktemp("export-cli")
    model = tiny_llama(seed=2)
    model.save_pretrained(root / "base", max_shard_size="60KB")
    lora = save_peft_adapter(model, LoraConfig(r=2, target_modules=["q_proj", "v_proj"]), root / "lora", seed=1)
    ia3_config = LoraConfig(r=2, target_modules=["k_proj"], use_rslora=True)
    other = save_peft_adapter(model, ia3_config, root / "other", seed=2)
    get_peft_model(tiny_llama(seed=2), PromptTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=3)).save_pretrained(
        root / "prompt")
    return {"base": root / "base", "lora": lora, "other": other, "prompt": root / "prompt"}


def test_json_output(files, tmp_path):
    out = tmp_path / "out"
    result = run_cli("export", str(files["lora"]), str(files["other"]), "--base", str(files["base"]), "--out", str(out),
                     "--weights", "0.5,2", "--dtype", "bf16", "--max-shard-size", "50KB", "--json")
    assert result.exit_code == 0, result.stderr
    data = result.json()
    assert data["out"] == str(out) and data["dtype"] == "bfloat16"
    assert [a["weight"] for a in data["adapters"]] == [0.5, 2.0]
    assert [a["method"] for a in data["adapters"]] == ["lora", "lora"]
    assert len(data["shards"]) > 1 and data["base"]["sharded"] is True
    assert data["merged_tensors"] == 6
    assert sorted(json.loads((out / "model.safetensors.index.json").read_text())["weight_map"].values())


def test_human_output(files, tmp_path):
    result = run_cli("export", str(files["lora"]), "--base", str(files["base"]), "--out", str(tmp_path / "o"), "-q")
    assert result.exit_code == 0, result.stderr
    assert result.stdout.startswith(f"exported {tmp_path / 'o'} (1 shard(s)")
    assert "merged lora [lora] weight 1" in result.stderr


def test_errors_and_usage(files, tmp_path):
    out = tmp_path / "o"
    refused = run_cli("export", str(files["prompt"]), "--base", str(files["base"]), "--out", str(out))
    assert refused.exit_code == 1 and "error:" in refused.stderr and "cannot be merged" in refused.stderr
    assert not out.exists()
    bad = run_cli("export", str(files["lora"]), "--base", str(files["base"]), "--out", str(out), "--weights", "x")
    assert bad.exit_code == 2 and "--weights" in bad.stderr
    missing = run_cli("export", str(files["lora"]), "--out", str(out))
    assert missing.exit_code == 2 and "--base" in missing.stderr
    assert not out.exists()


def test_ctrl_c_exits_130_and_leaves_nothing(files, tmp_path, monkeypatch):
    from adapterhub.publish.export import writer

    original = writer.ShardFile.write
    count = []

    def interrupted(self, name, tensor):
        count.append(name)
        if len(count) == 5:
            raise KeyboardInterrupt
        original(self, name, tensor)

    monkeypatch.setattr(writer.ShardFile, "write", interrupted)
    out = tmp_path / "out"
    result = run_cli("export", str(files["lora"]), "--base", str(files["base"]), "--out", str(out), "-q")
    assert result.exit_code == 130
    assert "interrupted" in result.stderr
    assert list(tmp_path.iterdir()) == []


def test_the_real_entry_point(files, tmp_path):
    out = tmp_path / "o"
    proc = subprocess.run([sys.executable, "-m", "adapterhub", "export", str(files["lora"]), "--base",
                           str(files["base"]), "--out", str(out), "--json"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["out"] == str(out)
    from transformers import LlamaForCausalLM

    LlamaForCausalLM.from_pretrained(str(out))
