"""transformers' Trainer with an AdapterModel, for every trainable method: only the adapter and its head
train, the loss goes down, checkpoints hold the adapter (its own format) and no base weight, resuming
continues exactly, the best checkpoint comes back, gradient checkpointing gives the same gradients,
and a loaded adapter trains on."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors import safe_open
from support.trainer_cases import (
    METHOD_CASES,
    RECORDED_METHOD,
    TRAINER_STATE_FILES,
    base_model,
    build,
    dataset,
    training_args,
)

from adapterhub import AdapterModel, SaveAdaptersCallback
from adapterhub.layout import adapter_files
from adapterhub.plugin import detect_method, get_method

CASES = sorted(METHOD_CASES)
#: names every adapter's (and head's) parameters carry; nothing else may train
ADAPTER_MARKERS = ("lora_", "ia3_l", ".adapters.", "adapterhub_", "shared_parameters", "modules_to_save")


def _trainer(am, args, data, **kwargs):
    from transformers import Trainer

    return Trainer(model=am, args=args, train_dataset=data, **kwargs)


def _trainable(am) -> dict[str, torch.Tensor]:
    return {n: p for n, p in am.named_parameters() if p.requires_grad}


def _logits(am, data) -> torch.Tensor:
    batch = {k: torch.stack([row[k] for row in data]) for k in ("input_ids", "attention_mask")}
    am.eval()
    with torch.no_grad():
        return am(**batch).logits


def _tensor_names(path) -> set[str]:
    with safe_open(str(path), "pt") as f:
        return set(f.keys())


@pytest.mark.parametrize("case", CASES)
def test_trainer_trains_checkpoints_resumes_and_brings_back_the_best(case, tmp_path):
    from transformers import TrainerCallback
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    data = dataset()
    am = build(case)
    trainable = _trainable(am)
    assert trainable and all(any(m in n for m in ADAPTER_MARKERS) or (case == "bitfit" and n.endswith(".bias"))
                             for n in trainable), sorted(trainable)
    frozen_before = {n: p.detach().clone() for n, p in am.named_parameters() if not p.requires_grad}
    adapter_before = {id(p): p.detach().clone() for p in get_method(RECORDED_METHOD[case]).parameters(am.model, "task")}
    # greater_is_better=True picks the checkpoint with the *higher* loss, so the model Trainer reloads at the
    # end is not simply the one it finished with
    options = dict(max_steps=4, save_steps=2, eval_strategy="steps", eval_steps=2, load_best_model_at_end=True,
                   metric_for_best_model="eval_loss", greater_is_better=True, gradient_checkpointing=True)
    trainer = _trainer(am, training_args(tmp_path / "run", **options), data, eval_dataset=data,
                       callbacks=[SaveAdaptersCallback()])
    untrained = trainer.evaluate()["eval_loss"]
    trainer.train()

    evals = {h["step"]: h["eval_loss"] for h in trainer.state.log_history if "eval_loss" in h}
    assert set(evals) == {2, 4}
    assert min(evals.values()) < untrained - 0.02, (untrained, evals)  # the loss went down
    # the base model did not move; the adapter itself did (not only its head)
    params = dict(am.named_parameters())
    assert all(torch.equal(params[n], v) for n, v in frozen_before.items())
    assert any(not torch.equal(p.detach(), adapter_before[id(p)])
               for p in get_method(RECORDED_METHOD[case]).parameters(am.model, "task"))

    # the reloaded best checkpoint gives the evaluation it was picked for
    best_step = max(evals, key=evals.get)
    assert trainer.state.best_model_checkpoint.endswith(f"checkpoint-{best_step}")
    assert trainer.evaluate()["eval_loss"] == pytest.approx(evals[best_step], abs=1e-6)

    # a checkpoint: the adapter in its method's own format plus Trainer's state, and no base weight
    checkpoint = tmp_path / "run" / "checkpoint-2"
    files = {p.name for p in checkpoint.iterdir()}
    native = set(adapter_files(checkpoint)) - TRAINER_STATE_FILES
    assert files == native | (files & TRAINER_STATE_FILES)
    assert {"adapter_config.json", "head_config.json", "model_head.safetensors"} <= native
    assert "model.safetensors" in files and "trainer_state.json" in files
    assert _tensor_names(checkpoint / "model.safetensors") == set(trainable)  # adapter and head tensors only
    assert detect_method(checkpoint, base_model(case)).name == RECORDED_METHOD[case]
    assert json.loads((checkpoint / "head_config.json").read_text())["config"]["label2id"] == {"no": 0, "yes": 1}

    # the best checkpoint's own files load with load_adapter and give the same outputs
    fresh = AdapterModel(base_model(case))
    fresh.set_adapter(fresh.load_adapter(trainer.state.best_model_checkpoint, name="task"))
    assert fresh.adapters["task"].method == RECORDED_METHOD[case]
    assert torch.allclose(_logits(fresh, data), _logits(am, data), atol=1e-5, rtol=0)

    # resuming from checkpoint-2 runs steps 3 and 4 only, and ends where the uninterrupted run was at
    # step 4: optimizer, scheduler, data order and RNG come back with the adapter
    steps: list[int] = []

    class RecordSteps(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            steps.append(state.global_step)

    resumed = build(case)
    options.update(eval_strategy="no", load_best_model_at_end=False)
    _trainer(resumed, training_args(tmp_path / "resumed", **options), data, callbacks=[RecordSteps()]).train(
        resume_from_checkpoint=str(tmp_path / "run" / "checkpoint-2"))
    assert steps == [3, 4]
    with safe_open(str(tmp_path / "run" / "checkpoint-4" / "model.safetensors"), "pt") as f:
        expected = {k: f.get_tensor(k) for k in f.keys()}
    got = resumed.state_dict()
    assert got.keys() == expected.keys()
    for key in expected:
        assert torch.allclose(got[key], expected[key], atol=1e-6, rtol=0), key


@pytest.mark.parametrize("case", CASES)
def test_gradient_checkpointing_gives_the_same_gradients(case):
    data = dataset()
    batch = {k: (torch.stack([r[k] for r in data[:8]]) if k != "labels" else torch.tensor([r[k] for r in data[:8]]))
             for k in ("input_ids", "attention_mask", "labels")}

    def gradients(am):
        am.train()
        am.zero_grad()
        torch.manual_seed(1)  # the same dropout masks in both runs
        am(**batch).loss.backward()
        # a parameter outside the loss's graph (BitFit's pooler bias: heads read the encoder) gets no gradient
        return {n: torch.zeros_like(p) if p.grad is None else p.grad.clone()
                for n, p in am.named_parameters() if p.requires_grad}

    am = build(case)
    plain = gradients(am)
    am.gradient_checkpointing_enable()
    assert any(getattr(m, "gradient_checkpointing", False) for m in am.model.modules())
    checkpointed = gradients(am)
    assert plain.keys() == checkpointed.keys()
    for name, grad in plain.items():
        assert torch.allclose(checkpointed[name], grad, atol=1e-6, rtol=1e-4), name
    adapter = {n for n in plain if "adapterhub_heads" not in n}
    assert any(plain[n].abs().sum() > 0 for n in adapter)  # the adapter itself gets gradients, not only the head


@pytest.mark.parametrize("case", CASES)
def test_continue_training_a_loaded_adapter(case, tmp_path):
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    data = dataset()
    am = build(case)
    am.save_pretrained(tmp_path / "saved")  # the fresh adapter and head, in the method's own format

    frozen = AdapterModel(base_model(case))
    frozen.load_adapter(tmp_path / "saved", name="task")
    # loading alone trains nothing of the adapter
    assert not any(p.requires_grad for n, p in frozen.named_parameters() if any(m in n for m in ADAPTER_MARKERS))

    loaded = AdapterModel(base_model(case))
    loaded.set_adapter(loaded.load_adapter(tmp_path / "saved", name="task", is_trainable=True))
    trainable = _trainable(loaded)
    assert any("adapterhub_heads" in n for n in trainable)  # the head trains too
    assert any("adapterhub_heads" not in n for n in trainable)
    assert all(any(m in n for m in ADAPTER_MARKERS) or (case == "bitfit" and n.endswith(".bias")) for n in trainable)
    trainer = _trainer(loaded, training_args(tmp_path / "run", max_steps=4, save_strategy="no"), data, eval_dataset=data)
    at_load = trainer.evaluate()["eval_loss"]
    trainer.train()
    assert trainer.evaluate()["eval_loss"] < at_load - 0.02
    # what it learnt is saved: a fresh model loading the saved result reproduces it
    loaded.save_pretrained(tmp_path / "continued")
    again = AdapterModel(base_model(case))
    again.set_adapter(again.load_adapter(tmp_path / "continued", name="task"))
    assert torch.allclose(_logits(again, data), _logits(loaded, data), atol=1e-5, rtol=0)
    loaded.set_trainable("task", False)
    assert loaded.get_nb_trainable_parameters()[0] == 0  # is_trainable froze the base; now the adapter too


def test_without_the_callback_a_checkpoint_holds_no_base_weight(tmp_path):
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    am = build("lora")
    _trainer(am, training_args(tmp_path / "run", max_steps=4), dataset()).train()
    checkpoint = tmp_path / "run" / "checkpoint-4"
    assert {p.name for p in checkpoint.iterdir()} <= TRAINER_STATE_FILES
    names = _tensor_names(checkpoint / "model.safetensors")
    assert names == set(am.state_dict()) and all(any(m in n for m in ADAPTER_MARKERS) for n in names)
    size = (checkpoint / "model.safetensors").stat().st_size
    assert size < sum(p.numel() * 4 for p in am.model.parameters()) / 5


def test_only_active_trainable_adapters_get_gradients():
    am = build("lora", name="first")
    am.add_adapter("second", "bottleneck", reduction_factor=4)
    assert am.trainable_adapters == ["first", "second"]
    second = {id(p) for p in get_method("bottleneck").parameters(am.model, "second")}
    first = {id(p) for p in get_method("lora").parameters(am.model, "first")}
    needs_grad = {id(p) for p in am.parameters() if p.requires_grad}
    assert first <= needs_grad and not second & needs_grad
    am.set_adapter("second")
    needs_grad = {id(p) for p in am.parameters() if p.requires_grad}
    assert second <= needs_grad and not first & needs_grad
