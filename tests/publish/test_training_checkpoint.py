"""A Trainer checkpoint folder (adapter files plus optimizer, scheduler, random state and training
arguments): push names the training state and the exact --exclude flags that leave it out, convert
leaves it alone, and no message ever relays torch's advice to unpickle with weights_only=False."""

from __future__ import annotations

import json
import random
import shlex
from dataclasses import dataclass

import numpy as np
import pytest
import torch
from support.fixtures import BASE

from adapterhub.errors import AdapterFormatError
from adapterhub.testing import run_cli

TRAINING_FILES = ["optimizer.pt", "rng_state.pth", "scheduler.pt", "trainer_state.json", "training_args.bin"]
UNSAFE_ADVICE = ("weights_only=False", "weights_only` set to `False", "add_safe_globals", "safe_globals")


@dataclass
class FakeTrainingArguments:  # what transformers pickles into training_args.bin: a Python object
    output_dir: str = "out"
    learning_rate: float = 1e-4


@pytest.fixture
def checkpoint(tmp_path):
    """What transformers' Trainer writes at a checkpoint of a PEFT model, with a real optimizer."""
    from transformers import BertModel

    from adapterhub import AdapterModel

    am = AdapterModel(BertModel.from_pretrained(str(BASE / "tiny-bert")))
    am.add_adapter("a", "lora", r=2, target_modules=["query"])
    folder = tmp_path / "checkpoint-500"
    am.save_adapter(folder, "a")
    config = json.loads((folder / "adapter_config.json").read_text())
    config["base_model_name_or_path"] = "org/tiny-bert"
    (folder / "adapter_config.json").write_text(json.dumps(config))
    params = [p for p in am.model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=1e-3)
    am(input_ids=torch.tensor([[1, 2, 3]])).last_hidden_state.sum().backward()
    optimizer.step()
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
    torch.save(optimizer.state_dict(), folder / "optimizer.pt")
    torch.save(scheduler.state_dict(), folder / "scheduler.pt")
    torch.save({"python": random.getstate(), "numpy": np.random.get_state(), "cpu": torch.get_rng_state()},
               folder / "rng_state.pth")
    torch.save(FakeTrainingArguments(), folder / "training_args.bin")
    (folder / "trainer_state.json").write_text('{"global_step": 500}')
    return folder


def _no_unsafe_advice(text: str) -> None:
    for advice in UNSAFE_ADVICE:
        assert advice not in text, advice


def test_push_names_the_training_state_and_the_flags_that_leave_it_out(checkpoint):
    args = ["push", str(checkpoint), "--repo", "alice/ckpt", "--version", "1.0.0", "--task", "feature-extraction",
            "--base-model", "org/tiny-bert", "--no-check", "--dry-run"]
    refused = run_cli(*args)
    assert refused.exit_code == 1
    assert "training state of a checkpoint folder" in refused.stderr
    for name in TRAINING_FILES:
        assert f"--exclude {name}" in refused.stderr
    assert "pickled weights cannot be published" not in refused.stderr  # not sent to `convert`
    _no_unsafe_advice(refused.stderr)

    line = next(ln for ln in refused.stderr.splitlines() if "--exclude" in ln)
    flags = shlex.split(line[line.index("--exclude"):].split(", or publish")[0])
    accepted = run_cli(*args, *flags, "--json")
    assert accepted.exit_code == 0, accepted.stderr
    published = {f["path"] for f in accepted.json()["files"]}
    assert published == {"adapter_config.json", "adapter_model.safetensors", "README.md", "adapterhub.json"}
    assert set(TRAINING_FILES) <= set(accepted.json()["skipped"])


def test_exclude_takes_globs_and_paths(checkpoint):
    result = run_cli("push", str(checkpoint), "--repo", "alice/ckpt", "--version", "1.0.0", "--task", "t",
                     "--base-model", "org/tiny-bert", "--no-check", "--dry-run", "--json",
                     "--exclude", "*.pt", "--exclude", "*.pth", "--exclude", "training_*", "--exclude", "trainer_state.json")
    assert result.exit_code == 0, result.stderr
    assert {f["path"] for f in result.json()["files"]} >= {"adapter_model.safetensors"}
    assert not {f["path"] for f in result.json()["files"]} & set(TRAINING_FILES)


def test_convert_leaves_training_state_alone_and_never_relays_unpickling_advice(checkpoint, tmp_path):
    result = run_cli("convert", str(checkpoint), "--to-safetensors")
    assert result.exit_code == 1
    assert "training state" in result.stderr and "--exclude training_args.bin" in result.stderr
    _no_unsafe_advice(result.stderr)
    assert (checkpoint / "training_args.bin").is_file()  # untouched

    # a weights file that holds Python objects: refused, in adapterhub's words only
    (tmp_path / "bad").mkdir()
    torch.save({"w": torch.zeros(2), "args": FakeTrainingArguments()}, tmp_path / "bad" / "adapter_model.bin")
    result = run_cli("convert", str(tmp_path / "bad"), "--to-safetensors")
    assert result.exit_code == 1 and "holds Python objects" in result.stderr
    _no_unsafe_advice(result.stderr)


def test_loading_a_pickle_of_objects_with_allow_pickle_gives_no_unsafe_advice(tmp_path):
    from adapterhub.toolkit.weights import load_tensors

    torch.save(FakeTrainingArguments(), tmp_path / "adapter_model.bin")
    with pytest.raises(AdapterFormatError) as err:
        load_tensors(tmp_path / "adapter_model.bin", allow_pickle=True)
    assert "holds Python objects" in str(err.value)
    _no_unsafe_advice(str(err.value))
