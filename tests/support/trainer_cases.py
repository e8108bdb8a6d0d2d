"""Every trainable method as the Trainer tests build it: a tiny BERT with one fresh adapter and a
classification head, a small labelled data set, and transformers' TrainingArguments for a few steps."""

from __future__ import annotations

from typing import Any

from support.fixtures import BASE

#: case -> (method, add_adapter options); the bottleneck presets and Compacter are cases of their own
METHOD_CASES: dict[str, tuple[str, dict[str, Any]]] = {
    "lora": ("lora", {"r": 4, "lora_alpha": 8, "target_modules": ["query", "value"]}),
    "qlora": ("lora", {"r": 4, "lora_alpha": 8, "target_modules": ["query", "value"]}),
    "ia3": ("ia3", {"target_modules": ["key", "value", "output.dense"], "feedforward_modules": ["output.dense"]}),
    "prompt_tuning": ("prompt_tuning", {"num_virtual_tokens": 4}),
    "prefix_tuning": ("prefix_tuning", {"num_virtual_tokens": 4}),
    "p_tuning": ("p_tuning", {"num_virtual_tokens": 4, "encoder_hidden_size": 16}),
    "pfeiffer": ("bottleneck", {"preset": "seq_bn", "reduction_factor": 4}),
    "houlsby": ("bottleneck", {"preset": "double_seq_bn", "reduction_factor": 4}),
    "compacter": ("bottleneck", {"preset": "compacter", "reduction_factor": 4, "phm_dim": 2}),
    "bitfit": ("bitfit", {}),
}

#: the method name the runtime records (QLoRA: LoRA created on a 4-bit base)
RECORDED_METHOD = {case: ("qlora" if case == "qlora" else method) for case, (method, _) in METHOD_CASES.items()}

#: what transformers' Trainer writes into a checkpoint besides the model's files
TRAINER_STATE_FILES = {"trainer_state.json", "optimizer.pt", "scheduler.pt", "rng_state.pth", "training_args.bin",
                       "scaler.pt", "model.safetensors"}


def base_model(case: str) -> Any:
    from transformers import BertModel

    model = BertModel.from_pretrained(str(BASE / "tiny-bert"))
    if case == "qlora":
        from adapterhub import quantize_4bit

        model = quantize_4bit(model, "nf4")
    return model


def build(case: str, name: str = "task") -> Any:
    """AdapterModel(tiny BERT) + a fresh ``case`` adapter with a 2-label head, active; seeded."""
    import torch

    from adapterhub import AdapterModel

    torch.manual_seed(0)
    am = AdapterModel(base_model(case))
    method, options = METHOD_CASES[case]
    am.add_adapter(name, method, **options)
    am.add_head(name, 2, labels=["no", "yes"], seed=0)
    am.set_adapter(name)
    return am


def dataset(n: int = 16, length: int = 8, seed: int = 0) -> list[dict[str, Any]]:
    """Rows of random token ids; the label is whether the second token is in the upper half of the vocabulary."""
    import torch

    generator = torch.Generator().manual_seed(seed)
    rows = []
    for _ in range(n):
        ids = torch.randint(5, 120, (length,), generator=generator)
        rows.append({"input_ids": ids, "attention_mask": torch.ones(length, dtype=torch.long),
                     "labels": int(ids[1] >= 62)})
    return rows


def training_args(output_dir: Any, **overrides: Any) -> Any:
    from transformers import TrainingArguments

    options = dict(
        output_dir=str(output_dir), per_device_train_batch_size=8, per_device_eval_batch_size=16, max_steps=8,
        learning_rate=5e-3, lr_scheduler_type="constant", warmup_steps=0, weight_decay=0.0, logging_steps=1,
        save_strategy="steps", save_steps=4, eval_strategy="no", report_to=[], use_cpu=True, disable_tqdm=True,
        seed=0, data_seed=0, dataloader_num_workers=0,
    )
    options.update(overrides)
    return TrainingArguments(**options)
