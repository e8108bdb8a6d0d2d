"""Train the demo adapters that ``adapterhub demo`` ships, evaluate them, and write their model cards.

Everything goes through adapterhub's public API, the way a user trains an adapter: ``AdapterModel``,
``add_adapter``, ``add_head``, ``am(**batch, labels=y).loss``, ``save_adapter``. Reproducible: one
seed fixes the data split, the adapter and head initialisation, dropout and the batch order, and
torch runs deterministic algorithms on a fixed number of threads, so two runs write identical files.
Takes about four minutes on 2 CPU cores: short texts, the base model frozen, a few epochs.

    python examples/train_demo_adapters.py            # writes adapterhub/demo/adapters/
    python examples/train_demo_adapters.py --out DIR  # somewhere else
    python examples/train_demo_adapters.py --smoke --out DIR   # a few steps on a few examples

Data (real, human-labelled, shipped inside PyPI packages; no network needed):

* sentiment: ``vaderSentiment``'s ``vader_lexicon.txt``: ~7.5k words and phrases, each with the mean
  valence of 10 human raters. Entries rated >= +1 are "positive", <= -1 "negative" (emoticons and
  the near-neutral middle are left out).
* emotion: ``NRCLex``'s ``nrc_en.json``, the NRC Word-Emotion Association Lexicon (crowd-annotated).
  Words associated with exactly one of anger, fear, joy, sadness get that label.

Each task is split 80/20 (stratified, seeded); the 20 % is never trained on. The script measures on
that held-out split: the trained adapter, the same model before its first training step (the base
model with the untrained head; the fresh LoRA is an exact no-op, the fresh bottleneck adapter a
near-identity), and chance (the majority-class rate). It writes them to ``metrics.json`` beside the
adapters, and each adapter's ``README.md`` quotes that file.

Importing this module has no side effects (no environment changes, no torch import).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import shutil
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any, NamedTuple

from adapterhub.demo.tasks import (
    BASE_MODEL_REPO,
    EMOTION,
    SENTIMENT,
    DemoTask,
    adapters_root,
    base_model_path,
)

SEED = 1234
TEST_FRACTION = 0.2
MAX_LENGTH = 16
BATCH_SIZE = 32
THREADS = 2  # fixed: float reductions (and so the trained bits) depend on the thread count

Example = tuple[str, int]


class Recipe(NamedTuple):
    """How one demo adapter is trained."""

    epochs: int
    lr: float
    save_format: str  # "peft" or "adapters" (the format that also holds an adapter's own head)


RECIPES = {
    SENTIMENT.key: Recipe(epochs=2, lr=2e-3, save_format="peft"),
    EMOTION.key: Recipe(epochs=6, lr=3e-3, save_format="adapters"),  # the emotion data is 3x smaller
}


# --- data ----------------------------------------------------------------------------------------


def _package_file(package: str, relative: str) -> Path:
    """A data file inside an installed package, found without importing the package."""
    from importlib.util import find_spec

    spec = find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit(f"error: the package {package!r} is not installed (pip install {package})")
    return Path(list(spec.submodule_search_locations)[0]) / relative


def load_sentiment() -> list[Example]:
    """(word or phrase, 0=negative / 1=positive) from the VADER lexicon's human valence means."""
    path = _package_file("vaderSentiment", "vader_lexicon.txt")
    label = {name: i for i, name in enumerate(SENTIMENT.labels)}
    labels: dict[str, set[int]] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        token, mean = line.split("\t")[:2]
        # Words and phrases only: emoticons tokenise to noise for a wordpiece model.
        if not re.fullmatch(r"[a-z][a-z' -]*", token):
            continue
        valence = float(mean)
        if valence >= 1.0:
            labels.setdefault(token, set()).add(label["positive"])
        elif valence <= -1.0:
            labels.setdefault(token, set()).add(label["negative"])
    # A few tokens are listed twice ("lol", "ok"); keep one copy, and none if the copies disagree,
    # so no text can land in both the training and the held-out split.
    return [(token, found.pop()) for token, found in sorted(labels.items()) if len(found) == 1]


def load_emotion() -> list[Example]:
    """(word, emotion index) for NRC lexicon words with exactly one of the four emotions."""
    path = _package_file("nrclex", "data/nrc_en.json")
    lexicon: dict[str, list[str]] = json.loads(path.read_text(encoding="utf-8"))
    label = {name: i for i, name in enumerate(EMOTION.labels)}
    examples: list[Example] = []
    for word, affects in sorted(lexicon.items()):
        emotions = [a for a in affects if a in label]
        if len(emotions) == 1:
            examples.append((word, label[emotions[0]]))
    return examples


LOADERS = {SENTIMENT.key: load_sentiment, EMOTION.key: load_emotion}


def stratified_split(examples: list[Example], seed: int) -> tuple[list[Example], list[Example]]:
    """(train, held-out): TEST_FRACTION of every label held out, both shuffled by ``seed``."""
    rng = random.Random(seed)
    train: list[Example] = []
    test: list[Example] = []
    by_label: dict[int, list[Example]] = {}
    for ex in sorted(examples):
        by_label.setdefault(ex[1], []).append(ex)
    for label in sorted(by_label):
        group = by_label[label]
        rng.shuffle(group)
        n_test = round(len(group) * TEST_FRACTION)
        test.extend(group[:n_test])
        train.extend(group[n_test:])
    rng.shuffle(train)
    return train, test


# --- the adapters, built with the public API ----------------------------------------------------------


def build_sentiment(model_path: Path) -> Any:
    """all-MiniLM-L6-v2 for 2-label classification + a LoRA that also trains (a copy of) its classifier."""
    import torch
    from transformers import AutoModelForSequenceClassification

    from adapterhub import AdapterModel

    torch.manual_seed(SEED)  # the model's fresh classifier, which the LoRA's modules_to_save copies
    model = AutoModelForSequenceClassification.from_pretrained(
        model_path,
        num_labels=len(SENTIMENT.labels),
        id2label=dict(enumerate(SENTIMENT.labels)),
        label2id={name: i for i, name in enumerate(SENTIMENT.labels)},
    )
    model.config.name_or_path = BASE_MODEL_REPO  # saved files name the Hub model, not this machine's path
    am = AdapterModel(model.eval())
    torch.manual_seed(SEED)
    am.add_adapter(
        SENTIMENT.key, "lora", task_type="SEQ_CLS", r=8, lora_alpha=16, lora_dropout=0.05,
        target_modules=["query", "value"], modules_to_save=["classifier"],
        base_model_name_or_path=BASE_MODEL_REPO,
    )
    am.set_adapter(SENTIMENT.key)
    return am


def build_emotion(model_path: Path) -> Any:
    """The bare all-MiniLM-L6-v2 encoder + a sequential bottleneck adapter with its own 4-label head."""
    from transformers import AutoModel

    from adapterhub import AdapterModel

    model = AutoModel.from_pretrained(model_path)
    model.config.name_or_path = BASE_MODEL_REPO
    am = AdapterModel(model.eval())
    am.add_adapter(EMOTION.key, "bottleneck", preset="seq_bn", reduction_factor=16, init_weights_seed=SEED)
    am.add_head(EMOTION.key, len(EMOTION.labels), labels=list(EMOTION.labels), seed=SEED)
    am.set_adapter(EMOTION.key)
    return am


BUILDERS = {SENTIMENT.key: build_sentiment, EMOTION.key: build_emotion}


# --- training and evaluation ------------------------------------------------------------------------


def batches(examples: list[Example], tokenizer: Any, batch_size: int):
    import torch

    for start in range(0, len(examples), batch_size):
        chunk = examples[start : start + batch_size]
        enc = tokenizer(
            [text for text, _ in chunk], padding=True, truncation=True, max_length=MAX_LENGTH, return_tensors="pt"
        )
        yield enc, torch.tensor([label for _, label in chunk])


def accuracy(am: Any, examples: list[Example], tokenizer: Any) -> float:
    """The fraction of ``examples`` whose argmax logit is the label (eval mode, no grad)."""
    import torch

    am.model.eval()
    correct = 0
    with torch.no_grad():
        for enc, labels in batches(examples, tokenizer, 128):
            correct += int((am(**enc).logits.argmax(-1) == labels).sum())
    return correct / len(examples)


def train_loop(am: Any, train: list[Example], tokenizer: Any, recipe: Recipe, max_steps: int | None = None) -> dict[str, Any]:
    """AdamW + linear decay over the parameters that need grad (the adapter's and its head's)."""
    import torch

    params = [p for p in am.model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=recipe.lr, weight_decay=0.01)
    steps = recipe.epochs * ((len(train) + BATCH_SIZE - 1) // BATCH_SIZE)
    if max_steps is not None:
        steps = min(steps, max_steps)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: max(0.0, 1.0 - step / steps))
    rng = random.Random(SEED)
    torch.manual_seed(SEED)  # dropout
    started = time.perf_counter()
    am.model.train()
    done = 0
    for epoch in range(recipe.epochs):
        order = list(train)
        rng.shuffle(order)
        total = 0.0
        seen = 0
        for enc, labels in batches(order, tokenizer, BATCH_SIZE):
            if done == steps:
                break
            loss = am(**enc, labels=labels).loss
            loss.backward()
            optimizer.step()
            schedule.step()
            optimizer.zero_grad()
            total += float(loss.detach()) * len(labels)
            seen += len(labels)
            done += 1
        if seen:
            print(f"  epoch {epoch + 1}/{recipe.epochs}: train loss {total / seen:.4f}", file=sys.stderr)
    am.model.eval()
    return {"steps": done, "train_seconds": round(time.perf_counter() - started, 1),
            "trainable_parameters": sum(p.numel() for p in params)}


def train_task(task: DemoTask, train: list[Example], test: list[Example], out: Path,
               max_steps: int | None = None) -> dict[str, Any]:
    """Build, evaluate untrained, train, evaluate and save one demo adapter into ``out``."""
    from transformers import AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()  # the "classifier newly initialised" notice is expected
    path = base_model_path()
    tokenizer = AutoTokenizer.from_pretrained(path)
    am = BUILDERS[task.key](path)
    untrained = accuracy(am, test, tokenizer)
    result = train_loop(am, train, tokenizer, RECIPES[task.key], max_steps)
    result["accuracy"] = accuracy(am, test, tokenizer)
    result["base_untrained_head_accuracy"] = untrained
    # Saved next to the target, then swapped in: a failed run leaves the old adapter whole.
    staging = out.with_name(out.name + ".tmp")
    shutil.rmtree(staging, ignore_errors=True)
    am.save_adapter(staging, task.key, format=RECIPES[task.key].save_format)
    (staging / "README.md").unlink(missing_ok=True)  # a generic card, if any; ours is written below
    result["staging"] = staging
    return result


# --- model cards ------------------------------------------------------------------------------------


def _pct(x: float) -> str:
    return f"{100 * x:.1f}%"


def write_card(task: DemoTask, metrics: dict[str, Any], out: Path) -> None:
    library = "peft" if task.method == "lora" else "adapter-transformers"
    labels = ", ".join(f"{i} = {name}" for i, name in enumerate(task.labels))
    untrained_note = (
        "a fresh LoRA changes nothing, so this is exactly the base model with the untrained head"
        if task.method == "lora"
        else "the fresh bottleneck adapter is a near-identity (weights drawn with std 0.02)"
    )
    lines = [
        "---",
        f"library_name: {library}",
        f"base_model: {BASE_MODEL_REPO}",
        f"license: {task.license}",
        "tags:",
        *[f"- {tag}" for tag in (*task.tags, task.method, "adapterhub")],
        "---",
        "",
        f"# {task.name} ({task.method} adapter for all-MiniLM-L6-v2)",
        "",
        task.description,
        "",
        f"Labels (head output order): {labels}.",
        "",
        "## Data",
        "",
        f"Source: {task.data_source}.",
        f"Split 80/20, stratified, seed {metrics['seed']}: {metrics['n_train']} training and "
        f"{metrics['n_test']} held-out examples (single words and short phrases).",
        *([task.data_terms] if task.data_terms else []),
        "",
        "## Held-out accuracy",
        "",
        "| model | accuracy |",
        "|---|---|",
        f"| this adapter | {_pct(metrics['accuracy'])} |",
        f"| base model + untrained head | {_pct(metrics['base_untrained_head_accuracy'])} |",
        f"| chance (majority class) | {_pct(metrics['chance_accuracy'])} |",
        "",
        "Measured by `examples/train_demo_adapters.py`, which wrote these numbers to `metrics.json`.",
        f"The untrained-head row is the same model before its first training step: {untrained_note}.",
        "The adapter was trained on words and phrases, so expect it to follow the emotional words of a",
        "sentence rather than its irony or negation: it is a demo, not a production model.",
        "",
        "## Use",
        "",
        "```",
        f"adapterhub install {task.name}",
        "```",
        "",
    ]
    (out / "README.md").write_text("\n".join(lines), encoding="utf-8")


# --- main --------------------------------------------------------------------------------------------


TASKS = {SENTIMENT.key: SENTIMENT, EMOTION.key: EMOTION}
SMOKE_EXAMPLES = 48  # per split, with --smoke
SMOKE_STEPS = 2


def _setup_runtime() -> None:
    """Offline, quiet and deterministic; done in main() so importing this module changes nothing."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
    import torch

    torch.set_num_threads(THREADS)
    torch.use_deterministic_algorithms(True)


def run(task: DemoTask, out_root: Path, *, smoke: bool = False) -> dict[str, Any]:
    """Train, evaluate and write one demo adapter + its card under ``out_root``; returns its metrics."""
    examples = LOADERS[task.key]()
    train, test = stratified_split(examples, SEED)
    if smoke:
        # every k-th held-out example: the split is grouped by label, so this keeps all labels
        train, test = train[:SMOKE_EXAMPLES], test[:: max(1, len(test) // SMOKE_EXAMPLES)][:SMOKE_EXAMPLES]
    counts = Counter(label for _, label in test)
    print(f"{task.name}: {len(train)} train / {len(test)} held-out ({task.method})", file=sys.stderr)
    out = out_root / task.directory
    result = train_task(task, train, test, out, max_steps=SMOKE_STEPS if smoke else None)
    metrics = {
        "name": task.name,
        "method": task.method,
        "labels": list(task.labels),
        "data_source": task.data_source,
        "seed": SEED,
        "n_train": len(train),
        "n_test": len(test),
        "accuracy": round(result["accuracy"], 4),
        "base_untrained_head_accuracy": round(result["base_untrained_head_accuracy"], 4),
        "chance_accuracy": round(max(counts.values()) / len(test), 4),
        "epochs": RECIPES[task.key].epochs,
        "steps": result["steps"],
        "trainable_parameters": result["trainable_parameters"],
    }
    # The time is printed, not recorded: two runs must write identical files.
    print(f"  trained in {result['train_seconds']} s; held-out accuracy {metrics['accuracy']:.4f} (untrained head "
          f"{metrics['base_untrained_head_accuracy']:.4f}, chance {metrics['chance_accuracy']:.4f})",
          file=sys.stderr)
    staging = result["staging"]
    write_card(task, metrics, staging)
    shutil.rmtree(out, ignore_errors=True)
    os.replace(staging, out)
    return metrics


def write_metrics(metrics_file: Path, tasks: dict[str, Any]) -> None:
    document = {"base_model": BASE_MODEL_REPO, "script": "examples/train_demo_adapters.py", "tasks": tasks}
    metrics_file.parent.mkdir(parents=True, exist_ok=True)
    tmp = metrics_file.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(document, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    os.replace(tmp, metrics_file)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=None, help="where to write the adapters (default: the shipped ones)")
    parser.add_argument("--task", action="append", choices=sorted(TASKS), help="only these tasks")
    parser.add_argument("--cards-only", action="store_true", help="rewrite the model cards from metrics.json")
    parser.add_argument("--smoke", action="store_true",
                        help=f"check the pipeline: {SMOKE_STEPS} steps on {SMOKE_EXAMPLES} examples (needs --out)")
    args = parser.parse_args(argv)
    if args.smoke and args.out is None:
        parser.error("--smoke needs --out: it must not overwrite the shipped adapters")
    out_root = args.out or adapters_root()
    keys = args.task or list(TASKS)
    metrics_file = out_root / "metrics.json"
    if args.cards_only:
        recorded = json.loads(metrics_file.read_text(encoding="utf-8"))["tasks"]
        for key in keys:
            write_card(TASKS[key], recorded[key], out_root / TASKS[key].directory)
        return 0

    _setup_runtime()
    all_metrics: dict[str, Any] = {}
    if metrics_file.is_file():
        all_metrics = json.loads(metrics_file.read_text(encoding="utf-8")).get("tasks", {})
    for key in keys:
        all_metrics[key] = run(TASKS[key], out_root, smoke=args.smoke)
    write_metrics(metrics_file, all_metrics)
    print(f"wrote {metrics_file}", file=sys.stderr)
    if not args.smoke:
        # The bundled registry index pins each release's commit and file hashes: refresh it.
        print("now run: python examples/register_demo_adapters.py", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
