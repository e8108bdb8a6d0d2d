"""transformers' Trainer with an AdapterModel for every PEFT type the generic PEFT plugin can train
(LoHa, LoKr, OFT, BOFT, VeRA, FourierFT, HRA, AdaLoRA, ...): the loss goes down with gradient
checkpointing on, a checkpoint holds the adapter in PEFT's format plus the head's files and Trainer's
state (no base weight), ``resume_from_checkpoint`` continues from the same step to the same state, a
checkpoint loads with ``load_adapter(..., is_trainable=True)`` to the trained outputs, and a misspelled
option is an error listing the type's options.

Each type is created with the options the PEFT-type fixtures were made with on the tiny BERT
(``tests/fixtures/peft-0.21.2-types/<type>/bert/case.json``: what PEFT itself accepted there).
"""

from __future__ import annotations

import json

import pytest
import torch
from safetensors import safe_open
from support.fixtures import FIXTURES, state_hash
from support.trainer_cases import TRAINER_STATE_FILES, base_model, dataset, training_args

from adapterhub import AdapterModel, SaveAdaptersCallback
from adapterhub.errors import UsageError
from adapterhub.plugin import get_method

TYPES = FIXTURES / "peft-0.21.2-types"
#: the plugins of their own (lora, ia3, prompt methods) are covered by test_trainer.py / test_trl.py
OWN_PLUGINS = {"LORA", "IA3", "PROMPT_TUNING", "PREFIX_TUNING", "P_TUNING"}


def _generic_types() -> list[str]:
    index = json.loads((TYPES / "index.json").read_text())
    return sorted(t for t, archs in index.items() if archs.get("bert") == "created" and t not in OWN_PLUGINS)


def _options(peft_type: str) -> dict:
    return json.loads((TYPES / peft_type.lower() / "bert" / "case.json").read_text())["config_kwargs"]


def _trainable_types() -> list:
    params = []
    for peft_type in _generic_types():
        method = get_method(peft_type.lower())
        marks = () if method.trainable else (pytest.mark.skip(reason=f"{method.name}: refused ({method.refusal()})"),)
        params.append(pytest.param(peft_type, id=peft_type.lower(), marks=marks))
    return params


def _build(peft_type: str) -> AdapterModel:
    torch.manual_seed(0)
    am = AdapterModel(base_model("bert"))
    am.add_adapter("task", peft_type.lower(), **_options(peft_type))
    am.add_head("task", 2, labels=["no", "yes"], seed=0)
    am.set_adapter("task")
    return am


def _logits(am, data) -> torch.Tensor:
    batch = {k: torch.stack([row[k] for row in data]) for k in ("input_ids", "attention_mask")}
    am.eval()
    with torch.no_grad():
        return am(**batch).logits


def _tensors(path) -> dict[str, torch.Tensor]:
    with safe_open(str(path), "pt") as f:
        return {k: f.get_tensor(k) for k in f.keys()}


@pytest.mark.parametrize("peft_type", _trainable_types())
def test_trainer_trains_checkpoints_and_resumes_every_generic_type(peft_type, tmp_path):
    from transformers import Trainer, TrainerCallback
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    data = dataset()
    am = _build(peft_type)
    method = get_method(peft_type.lower())
    trainable = {n for n, p in am.named_parameters() if p.requires_grad}
    own = {id(p) for p in method.parameters(am.model, "task")}
    assert own and {id(p) for p in am.parameters() if p.requires_grad} == own | {
        id(p) for p in am.model.adapterhub_heads.parameters()}  # the adapter and its head, nothing else
    before = {id(p): p.detach().clone() for p in method.parameters(am.model, "task")}

    options = dict(max_steps=4, save_steps=2, gradient_checkpointing=True)
    trainer = Trainer(model=am, args=training_args(tmp_path / "run", **options), train_dataset=data,
                      eval_dataset=data, callbacks=[SaveAdaptersCallback()])
    untrained = trainer.evaluate()["eval_loss"]
    trainer.train()
    assert trainer.evaluate()["eval_loss"] < untrained - 0.02  # the loss went down
    assert any(not torch.equal(p.detach(), before[id(p)]) for p in method.parameters(am.model, "task"))

    # a checkpoint: PEFT's adapter files, the head's files beside them, Trainer's state; no base weight
    checkpoint = tmp_path / "run" / "checkpoint-2"
    files = {p.name for p in checkpoint.iterdir()}
    adapter = {"adapter_config.json", "adapter_model.safetensors", "head_config.json", "model_head.safetensors"}
    assert adapter <= files and files - adapter <= TRAINER_STATE_FILES, sorted(files)
    assert json.loads((checkpoint / "adapter_config.json").read_text())["peft_type"] == peft_type
    assert set(_tensors(checkpoint / "model.safetensors")) == trainable

    # the last checkpoint's files load, trainable again, to the outputs training ended with
    loaded = AdapterModel(base_model("bert"))
    loaded.set_adapter(loaded.load_adapter(tmp_path / "run" / "checkpoint-4", name="task", is_trainable=True))
    assert loaded.adapters["task"].method == method.name
    assert torch.allclose(_logits(loaded, data), _logits(am, data), atol=1e-5, rtol=0)
    assert {n for n, p in loaded.named_parameters() if p.requires_grad} == trainable

    # resuming from checkpoint-2 runs steps 3 and 4 and ends in the state of checkpoint-4
    steps: list[int] = []

    class RecordSteps(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            steps.append(state.global_step)

    resumed = _build(peft_type)
    Trainer(model=resumed, args=training_args(tmp_path / "resumed", **options), train_dataset=data,
            callbacks=[RecordSteps()]).train(resume_from_checkpoint=str(checkpoint))
    assert steps == [3, 4]
    expected = _tensors(tmp_path / "run" / "checkpoint-4" / "model.safetensors")
    got = resumed.state_dict()
    assert got.keys() == expected.keys()
    for key in expected:
        assert torch.allclose(got[key], expected[key], atol=1e-6, rtol=0), key


@pytest.mark.parametrize("peft_type", _trainable_types())
def test_a_misspelled_option_of_a_generic_type_is_an_error(peft_type):
    options = _options(peft_type)
    typo = "target_module" if "target_modules" in options else "rr"
    am = AdapterModel(base_model("bert"))
    before = state_hash(am.model)
    with pytest.raises(UsageError) as info:
        am.add_adapter("x", peft_type.lower(), **{**options, typo: options.get("target_modules", 4)})
    message = f"{info.value} {info.value.hint}"
    assert repr(typo) in message and "valid options" in message
    if typo == "target_module":
        assert "did you mean 'target_modules'" in message
    assert not am.adapters and state_hash(am.model) == before  # nothing was injected
