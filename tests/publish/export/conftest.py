"""Base checkpoints on disk for the export tests (tiny GPT-2 with Conv1D and tied embeddings, tiny
Llama, tiny BERT classifier; sharded and not) and the PEFT reference: ``merge_and_unload()`` run live
on the same base folder and the same adapter folders."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest


def save_base(model, folder: Path, *, shard: str | None = None, dtype=None) -> Path:
    model = copy.deepcopy(model)
    if dtype is not None:
        model = model.to(dtype)
    model.save_pretrained(folder, max_shard_size=shard or "50GB")
    return folder


def load(cls, folder: Path, dtype=None):
    import torch

    return cls.from_pretrained(str(folder), dtype=dtype or torch.float32).eval()


def peft_merged(cls, base: Path, adapters: list[tuple[Path, float]], *, dtype=None):
    """PEFT's ``merge_and_unload`` of ``adapters`` (LoRA: scaled with PEFT's own ``set_scale``)."""
    from peft import PeftModel
    from peft.tuners.lora import LoraLayer

    names = [f"a{i}" for i in range(len(adapters))]
    model = PeftModel.from_pretrained(load(cls, base, dtype), str(adapters[0][0]), adapter_name=names[0])
    for name, (path, _) in zip(names[1:], adapters[1:]):
        model.load_adapter(str(path), adapter_name=name)
    for module in model.modules():
        if isinstance(module, LoraLayer):
            for name, (_, weight) in zip(names, adapters):
                if weight != 1.0:
                    module.set_scale(name, weight)
    return model.merge_and_unload(adapter_names=names).eval()


def assert_same_weights(ours, reference, atol: float = 1e-5) -> None:
    ours_sd, ref_sd = ours.state_dict(), reference.state_dict()
    assert ours_sd.keys() == ref_sd.keys()
    worst = {k: (ours_sd[k].float() - ref_sd[k].float()).abs().max().item() for k in ref_sd}
    bad = {k: v for k, v in worst.items() if v > atol}
    assert not bad, f"differ from PEFT's merge by more than {atol}: {bad}"


@pytest.fixture(scope="session")
def bases(tmp_path_factory):
    """name -> base folder."""
    from adapterhub.testing import tiny_bert, tiny_gpt2, tiny_llama

    root = tmp_path_factory.mktemp("export-bases")
    gpt2, llama = tiny_gpt2(seed=3), tiny_llama(seed=4)
    return {
        "gpt2": save_base(gpt2, root / "gpt2"),
        "gpt2-sharded": save_base(gpt2, root / "gpt2-sharded", shard="60KB"),
        "llama": save_base(llama, root / "llama"),
        "llama-sharded": save_base(llama, root / "llama-sharded", shard="60KB"),
        "bert-cls": save_base(tiny_bert(seed=5, num_labels=3), root / "bert-cls"),
    }


@pytest.fixture(scope="session")
def models():
    from adapterhub.testing import tiny_bert, tiny_gpt2, tiny_llama

    return {"gpt2": tiny_gpt2(seed=3), "llama": tiny_llama(seed=4), "bert-cls": tiny_bert(seed=5, num_labels=3)}


def make_adapter(model, config, path: Path, *, seed: int = 0) -> Path:
    """A PEFT adapter saved by PEFT itself, every tensor random (DoRA magnitudes too), on a copy of ``model``."""
    import torch
    from peft import get_peft_model

    from adapterhub.testing import randomize_adapter

    peft_model = get_peft_model(copy.deepcopy(model), config)
    randomize_adapter(peft_model, seed=seed)
    generator = torch.Generator().manual_seed(seed + 1000)
    with torch.no_grad():
        for name, param in peft_model.named_parameters():
            if "lora_magnitude_vector" in name:
                param.mul_(1 + 0.1 * torch.randn(param.shape, generator=generator))
    peft_model.save_pretrained(str(path), save_embedding_layers=False)
    return path
