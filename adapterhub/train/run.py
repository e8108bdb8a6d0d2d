"""``adapterhub train`` as a library call: data in, a publishable adapter folder out, through
transformers' ``Trainer`` and :class:`~adapterhub.AdapterModel`.

Sequence classification puts the adapter and a fresh classification head (which carries the label
map, ``head_config.json``) on the bare base model; causal LM uses the base's own LM head, with the
prompt's tokens left out of the loss when rows are prompt + completion. The folder holds the
adapter's files in its method's own format and a model card (:mod:`.card`); it is written next to
``out`` and moved into place at the end, so a failed run leaves no half-written adapter.
"""

from __future__ import annotations

import math
import os
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import UsageError
from .card import render
from .data import DataSet, check_columns, label_ids, label_names
from .recipe import Recipe, check_method, method_options

#: the adapter's name inside the model
ADAPTER_NAME = "adapter"


@dataclass
class TrainRequest:
    base: str  # a local model folder or a Hub repo id
    task: str  # "sequence-classification" or "causal-lm"
    out: Path
    recipe: Recipe
    train: DataSet
    eval: DataSet | None = None
    progress: bool = True  # Trainer's progress bars and loss lines (stderr / stdout)
    overwrite: bool = False
    gradient_checkpointing: bool = False
    command: str | None = None  # the command line, for the card's "Reproduce" section


@dataclass
class TrainResult:
    out: Path
    method: str
    task: str
    base: str
    base_repo_id: str | None
    options: dict[str, Any]
    labels: list[str] | None
    train_data: DataSet
    eval_data: DataSet | None
    trainable_parameters: int  # the adapter's and its head's
    total_parameters: int
    adapter_parameters: int  # the adapter's own (without the head)
    metrics: dict[str, float]
    peak_rss_mb: float
    train_seconds: float  # wall clock
    seconds_per_epoch: float
    cpu_seconds_per_epoch: float  # CPU time of this process (all its threads)
    median_step_seconds: float  # the median optimizer step: steady when other work comes and goes
    steps: int
    epochs: float
    learning_rate: float
    batch_size: int
    max_length: int
    seed: int
    adapter_bytes: int
    files: list[str] = field(default_factory=list)
    base_revision: str | None = None  # the commit of a base fetched from a Hub

    def as_json(self) -> dict[str, Any]:
        share = 100 * self.trainable_parameters / self.total_parameters if self.total_parameters else 0.0
        return {
            "out": str(self.out), "method": self.method, "task": self.task, "base": self.base,
            "base_model": self.base_repo_id, "base_revision": self.base_revision, "options": self.options,
            "labels": self.labels,
            "train_rows": len(self.train_data.rows), "eval_rows": len(self.eval_data.rows) if self.eval_data else 0,
            "trainable_parameters": self.trainable_parameters, "total_parameters": self.total_parameters,
            "trainable_percent": round(share, 4), "adapter_parameters": self.adapter_parameters,
            "metrics": self.metrics, "peak_rss_mb": round(self.peak_rss_mb, 1),
            "train_seconds": round(self.train_seconds, 2), "seconds_per_epoch": round(self.seconds_per_epoch, 2),
            "cpu_seconds_per_epoch": round(self.cpu_seconds_per_epoch, 2),
            "median_step_seconds": round(self.median_step_seconds, 4),
            "steps": self.steps, "epochs": self.epochs, "learning_rate": self.learning_rate,
            "batch_size": self.batch_size, "seed": self.seed, "adapter_bytes": self.adapter_bytes, "files": self.files,
        }


def _has_accelerator() -> bool:
    import torch

    return bool(torch.cuda.is_available())


def peak_rss_mb() -> float:
    """The process's peak resident memory so far, in MB (Linux reports KB, macOS bytes; 0 where the
    platform has no ``resource`` module)."""
    try:
        import resource
    except ImportError:  # Windows
        return 0.0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024


def _check_out(out: Path, overwrite: bool) -> None:
    if out.exists() and (not out.is_dir() or any(out.iterdir())) and not overwrite:
        raise UsageError(f"{out}: exists and is not empty", hint="choose another --out, or pass --overwrite")


@dataclass(frozen=True)
class BaseRef:
    """The base model a run trains on: the folder it loads from, and the Hub repo and commit it is."""

    path: str
    repo_id: str | None
    commit: str | None = None


def _base_model(base: str) -> BaseRef:
    """A local model folder as it is; a Hub repo id (``org/name[@revision]``) fetched through the
    client, pinned to a commit and verified, into huggingface_hub's cache (as ``adapterhub export``
    fetches its base: the checkpoint's safetensors, configs and tokenizer files)."""
    from ..publish.validate import is_repo_id, resolve_base_model

    info, _ = resolve_base_model({}, base)
    if info.local_path is not None:
        return BaseRef(str(info.local_path), info.repo_id)
    if Path(base).expanduser().exists():
        raise UsageError(f"{base}: not a model folder (no config.json)")
    repo_id, _, revision = base.removeprefix("hf://").partition("@")
    if not is_repo_id(repo_id):
        raise UsageError(f"--base {base!r}: neither a local model folder nor a Hub repo id (namespace/name)")
    from ..client.checkpoint import fetch_checkpoint
    from ..publish.export.base import wanted_file
    from ..settings import get_settings

    snapshot = fetch_checkpoint(get_settings(), repo_id, revision or None, wanted_file)
    return BaseRef(str(snapshot.path), repo_id, snapshot.commit)


def build_model(request: TrainRequest, labels: list[str] | None) -> tuple[Any, Any, BaseRef, dict[str, Any]]:
    """(AdapterModel with the fresh adapter active, tokenizer, the base, the adapter's options)."""
    import transformers

    from ..runtime.model import AdapterModel
    from ..toolkit.quantize import quantize_4bit

    recipe = request.recipe
    ref = _base_model(request.base)
    path, repo_id = ref.path, ref.repo_id
    tokenizer = transformers.AutoTokenizer.from_pretrained(path)
    transformers.set_seed(recipe.seed)
    if request.task == "causal-lm":
        model = transformers.AutoModelForCausalLM.from_pretrained(path)
        if tokenizer.pad_token is None:
            tokenizer.pad_token = tokenizer.eos_token
    else:
        model = transformers.AutoModel.from_pretrained(path)
    # the saved adapter names the Hub model, not this machine's path
    model.config.name_or_path = model.name_or_path = repo_id or request.base
    if recipe.method == "qlora":
        model = quantize_4bit(model, "nf4")
    am = AdapterModel(model)
    options = method_options(recipe.method, recipe.options, getattr(model.config, "model_type", None))
    am.add_adapter(ADAPTER_NAME, "lora" if recipe.method == "qlora" else recipe.method, **options)
    if labels is not None:
        am.add_head(ADAPTER_NAME, len(labels), labels=labels, seed=recipe.seed)
    am.set_adapter(ADAPTER_NAME)
    return am, tokenizer, ref, options


def _features(data: DataSet, task: str, tokenizer: Any, max_length: int, labels: list[str] | None) -> list[dict]:
    if task == "sequence-classification":
        encoded = tokenizer([row["text"] for row in data.rows], truncation=True, max_length=max_length)
        ids = label_ids(data, labels or [])
        return [{**{k: v[i] for k, v in encoded.items()}, "labels": ids[i]} for i in range(len(data.rows))]
    rows = []
    eos = [tokenizer.eos_token_id] if tokenizer.eos_token_id is not None else []
    for row in data.rows:
        if "text" in row:
            prompt, completion = [], tokenizer(row["text"], add_special_tokens=True)["input_ids"] + eos
        else:
            prompt = tokenizer(row["prompt"], add_special_tokens=True)["input_ids"]
            completion = tokenizer(row["completion"], add_special_tokens=False)["input_ids"] + eos
        input_ids = (prompt + completion)[:max_length]
        labels_ = ([-100] * len(prompt) + completion)[:max_length]
        rows.append({"input_ids": input_ids, "attention_mask": [1] * len(input_ids), "labels": labels_})
    return rows


#: model outputs the evaluation does not gather (only the logits feed the accuracy)
_NOT_LOGITS = ["last_hidden_state", "pooler_output", "hidden_states", "attentions", "cross_attentions",
               "past_key_values", "cache"]


def step_timer() -> Any:
    """A TrainerCallback that times every optimizer step (``.median()``: the median step, in seconds)."""
    import statistics

    from transformers import TrainerCallback

    class StepTimer(TrainerCallback):
        def __init__(self) -> None:
            self.durations: list[float] = []
            self._started = 0.0

        def on_step_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            self._started = time.perf_counter()

        def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            self.durations.append(time.perf_counter() - self._started)

        def median(self) -> float:
            return statistics.median(self.durations) if self.durations else 0.0

    return StepTimer()


def _accuracy(prediction: Any) -> dict[str, float]:
    import numpy as np

    logits = prediction.predictions[0] if isinstance(prediction.predictions, tuple) else prediction.predictions
    return {"accuracy": float((np.argmax(logits, axis=-1) == prediction.label_ids).mean())}


def train_adapter(request: TrainRequest) -> TrainResult:
    """Train one adapter on ``request.train`` and write it (with its card) to ``request.out``."""
    import transformers

    recipe = request.recipe
    check_method(recipe.method)
    _check_out(request.out, request.overwrite)
    for data in (request.train, request.eval):
        if data is not None:
            check_columns(data, request.task)
    labels = label_names(request.train) if request.task == "sequence-classification" else None
    am, tokenizer, base, options = build_model(request, labels)
    train = _features(request.train, request.task, tokenizer, recipe.max_length, labels)
    evaluation = _features(request.eval, request.task, tokenizer, recipe.max_length, labels) if request.eval else None
    trainable, total = am.get_nb_trainable_parameters()
    from ..plugin.registry import get_method

    adapter = sum(p.numel() for p in get_method(am.adapters[ADAPTER_NAME].method).parameters(am.model, ADAPTER_NAME))

    if request.task == "causal-lm":
        collator = transformers.DataCollatorForSeq2Seq(tokenizer, padding=True, label_pad_token_id=-100)
    else:
        collator = transformers.DataCollatorWithPadding(tokenizer)
    with tempfile.TemporaryDirectory(prefix="adapterhub-train-") as scratch:
        args = transformers.TrainingArguments(
            output_dir=scratch, num_train_epochs=recipe.epochs, max_steps=recipe.max_steps,
            per_device_train_batch_size=recipe.batch_size, per_device_eval_batch_size=max(recipe.batch_size, 32),
            learning_rate=recipe.resolved_learning_rate(), seed=recipe.seed, data_seed=recipe.seed,
            save_strategy="no", eval_strategy="no", report_to=[], disable_tqdm=not request.progress,
            logging_strategy="steps" if request.progress else "no", logging_steps=10,
            remove_unused_columns=False, dataloader_num_workers=0, dataloader_pin_memory=_has_accelerator(),
            **({"gradient_checkpointing": True} if request.gradient_checkpointing else {}),
        )
        trainer = transformers.Trainer(
            model=am, args=args, train_dataset=train, eval_dataset=evaluation, data_collator=collator,
            compute_metrics=_accuracy if labels is not None else None)
        timer = step_timer()
        trainer.add_callback(timer)
        if not request.progress:
            from transformers.trainer_callback import PrinterCallback

            trainer.remove_callback(PrinterCallback)  # it prints every log line to stdout
        started, cpu_started = time.perf_counter(), time.process_time()
        trainer.train()
        seconds, cpu = time.perf_counter() - started, time.process_time() - cpu_started
        metrics: dict[str, float] = {}
        if evaluation is not None:
            raw = trainer.evaluate(ignore_keys=_NOT_LOGITS)
            metrics = {k: float(v) for k, v in raw.items()
                       if k in ("eval_loss", "eval_accuracy") and isinstance(v, (int, float))}
            if request.task == "causal-lm" and "eval_loss" in metrics:
                metrics["eval_perplexity"] = float(math.exp(min(metrics["eval_loss"], 50.0)))
        steps, epochs = trainer.state.global_step, float(trainer.state.epoch or recipe.epochs)
    peak = round(peak_rss_mb(), 1)  # one value for the report and the card (no double rounding)
    counts = (trainable, total, adapter)
    times = (seconds, cpu, timer.median())
    return _write(request, am, base, options, labels, counts, metrics, peak, times, steps, epochs)


def _write(request: TrainRequest, am: Any, base: BaseRef, options: dict[str, Any], labels: list[str] | None,
           counts: tuple[int, int, int], metrics: dict[str, float], peak: float, times: tuple[float, float, float],
           steps: int, epochs: float) -> TrainResult:
    out = request.out
    staging = out.parent / f".{out.name}.tmp-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    try:
        written = am.save_adapter(staging, ADAPTER_NAME)
        (staging / "README.md").unlink(missing_ok=True)
        recipe = request.recipe
        result = TrainResult(
            out=out, method=recipe.method, task=request.task, base=request.base, base_repo_id=base.repo_id,
            base_revision=base.commit,
            options=_jsonable(options), labels=labels, train_data=request.train, eval_data=request.eval,
            trainable_parameters=counts[0], total_parameters=counts[1], adapter_parameters=counts[2], metrics=metrics,
            peak_rss_mb=peak, train_seconds=times[0], seconds_per_epoch=times[0] / (epochs or 1),
            cpu_seconds_per_epoch=times[1] / (epochs or 1), median_step_seconds=times[2], steps=steps,
            epochs=epochs, learning_rate=recipe.resolved_learning_rate(), batch_size=recipe.batch_size,
            max_length=recipe.max_length, seed=recipe.seed,
            adapter_bytes=sum(p.stat().st_size for p in written if p.is_file()),
        )
        fmt = "adapters" if (staging / "adapter.safetensors").is_file() else "peft"
        (staging / "README.md").write_text(render(result, format=fmt, command=request.command), encoding="utf-8")
        result.files = sorted(p.name for p in staging.iterdir())
        if out.exists():
            shutil.rmtree(out) if out.is_dir() else out.unlink()
        os.replace(staging, out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return result


def _jsonable(options: dict[str, Any]) -> dict[str, Any]:
    return {k: (sorted(v) if isinstance(v, set) else v) for k, v in options.items()}
