"""Train the demo adapters that ``adapterhub demo`` ships, evaluate them, and write their model cards.

Reproducible: one seed fixes the data split, the head initialisation and the batch order.
Runs in about a minute on 2 CPU cores: short texts, the base model frozen, a few epochs.

    python examples/train_demo_adapters.py            # writes adapterhub/demo/adapters/
    python examples/train_demo_adapters.py --out DIR  # somewhere else

Data (real, human-labelled, shipped inside PyPI packages; no network needed):

* sentiment: ``vaderSentiment``'s ``vader_lexicon.txt``: ~7.5k words and phrases, each with the mean
  valence of 10 human raters. Entries rated >= +1 are "positive", <= -1 "negative" (emoticons and
  the near-neutral middle are left out).
* emotion: ``NRCLex``'s ``nrc_en.json``, the NRC Word-Emotion Association Lexicon (crowd-annotated).
  Words associated with exactly one of anger, fear, joy, sadness get that label.

Each task is split 80/20 (stratified, seeded); the 20 % is never trained on. The script measures on
that held-out split: the trained adapter, the base model with an untrained (freshly initialised)
head, and chance (the majority-class rate). It writes them to ``metrics.json`` beside the adapters,
and each adapter's ``README.md`` quotes that file.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

from adapterhub.demo.tasks import (  # noqa: E402
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
EPOCHS = {"sentiment": 2, "emotion": 6}  # the emotion data is 3x smaller

Example = tuple[str, int]


# --- data ----------------------------------------------------------------------------------------


def _package_file(package: str, relative: str) -> Path:
    """A data file inside an installed package, found without importing the package."""
    from importlib.util import find_spec

    spec = find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        sys.exit(f"error: the package {package!r} is not installed (pip install {package})")
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


def stratified_split(examples: list[Example], seed: int) -> tuple[list[Example], list[Example]]:
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


# --- training and evaluation ------------------------------------------------------------------------


def batches(examples: list[Example], tokenizer: Any, batch_size: int):
    import torch

    for start in range(0, len(examples), batch_size):
        chunk = examples[start : start + batch_size]
        enc = tokenizer(
            [text for text, _ in chunk],
            padding=True,
            truncation=True,
            max_length=MAX_LENGTH,
            return_tensors="pt",
        )
        yield enc, torch.tensor([label for _, label in chunk])


def accuracy(predict, examples: list[Example], tokenizer: Any) -> float:
    """``predict(encoding) -> logits``; the fraction of ``examples`` whose argmax is the label."""
    import torch

    correct = 0
    with torch.no_grad():
        for enc, labels in batches(examples, tokenizer, 128):
            correct += int((predict(enc).argmax(-1) == labels).sum())
    return correct / len(examples)


def train_loop(model: Any, params: list[Any], predict, train: list[Example], tokenizer: Any, lr: float, epochs: int) -> float:
    """Plain AdamW + linear decay over ``params`` only; returns the seconds it took."""
    import torch

    optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=0.01)
    steps = epochs * ((len(train) + BATCH_SIZE - 1) // BATCH_SIZE)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0 - step / steps)
    rng = random.Random(SEED)
    started = time.perf_counter()
    model.train()
    for epoch in range(epochs):
        order = list(train)
        rng.shuffle(order)
        total = 0.0
        for enc, labels in batches(order, tokenizer, BATCH_SIZE):
            loss = torch.nn.functional.cross_entropy(predict(enc), labels)
            loss.backward()
            optimizer.step()
            schedule.step()
            optimizer.zero_grad()
            total += float(loss.detach()) * len(labels)
        print(f"  epoch {epoch + 1}/{epochs}: train loss {total / len(train):.4f}", file=sys.stderr)
    model.eval()
    return time.perf_counter() - started


def load_classifier(num_labels: int, labels: tuple[str, ...]):
    """all-MiniLM-L6-v2 with a fresh (seeded) classification head, and its tokenizer."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()  # the "classifier newly initialised" notice is expected
    torch.manual_seed(SEED)
    path = base_model_path()
    model = AutoModelForSequenceClassification.from_pretrained(
        path,
        num_labels=num_labels,
        id2label=dict(enumerate(labels)),
        label2id={name: i for i, name in enumerate(labels)},
    )
    # Saved files should name the Hub model, not this machine's site-packages path.
    model.config.name_or_path = BASE_MODEL_REPO
    model.name_or_path = BASE_MODEL_REPO
    model.eval()
    return model, AutoTokenizer.from_pretrained(path)


def baseline(task: DemoTask, test: list[Example]) -> float:
    """Held-out accuracy of the base model with an untrained (freshly initialised) head."""
    model, tokenizer = load_classifier(len(task.labels), task.labels)
    return accuracy(lambda enc: model(**enc).logits, test, tokenizer)


def train_sentiment_lora(train: list[Example], test: list[Example], out: Path) -> dict[str, Any]:
    """LoRA r=8 on query/value + the classifier as ``modules_to_save``, with PEFT, saved in PEFT format."""
    import torch
    from peft import LoraConfig, get_peft_model

    model, tokenizer = load_classifier(len(SENTIMENT.labels), SENTIMENT.labels)
    config = LoraConfig(
        task_type="SEQ_CLS",
        r=8,
        lora_alpha=16,
        lora_dropout=0.05,
        target_modules=["query", "value"],
        modules_to_save=["classifier"],
    )
    torch.manual_seed(SEED)
    peft_model = get_peft_model(model, config)
    params = [p for p in peft_model.parameters() if p.requires_grad]
    seconds = train_loop(peft_model, params, lambda enc: peft_model(**enc).logits, train, tokenizer, lr=2e-3, epochs=EPOCHS[SENTIMENT.key])
    acc = accuracy(lambda enc: peft_model(**enc).logits, test, tokenizer)
    out.mkdir(parents=True, exist_ok=True)
    peft_model.save_pretrained(out)
    (out / "README.md").unlink(missing_ok=True)  # PEFT's generic card; ours is written below
    return {"accuracy": acc, "train_seconds": round(seconds, 1), "trainable_parameters": sum(p.numel() for p in params)}


def train_emotion_bottleneck(train: list[Example], test: list[Example], out: Path) -> dict[str, Any]:
    """A sequential bottleneck adapter + an AdapterHub classification head, trained through the
    ``bottleneck`` method plugin and saved in AdapterHub (``adapters``) format."""
    import torch
    from transformers import AutoModel, AutoTokenizer

    from adapterhub.methods import AdapterFiles, get_method
    from adapterhub.default_plugins.bottleneck.layers import ClassificationHead

    path = base_model_path()
    tokenizer = AutoTokenizer.from_pretrained(path)
    model = AutoModel.from_pretrained(path)
    model.config.name_or_path = BASE_MODEL_REPO
    for p in model.parameters():
        p.requires_grad_(False)
    method = get_method("bottleneck")
    name = EMOTION.key
    torch.manual_seed(SEED)
    adapter = method.create(model, name, {"preset": "seq_bn", "reduction_factor": 16, "init_weights_seed": SEED})
    # A fresh AdapterHub-style head (2 layers, tanh, on the first token), loaded together with the
    # adapter so the plugin owns it: it is then trained, exported and saved with the adapter.
    head_config = {
        "head_type": "classification", "num_labels": len(EMOTION.labels), "layers": 2,
        "activation_function": "tanh", "use_pooler": False, "bias": True, "dropout_prob": None,
        "label2id": {label: i for i, label in enumerate(EMOTION.labels)},
    }
    torch.manual_seed(SEED)
    head = ClassificationHead(model.config.hidden_size, head_config)
    method.remove(model, name)
    adapter.extras["head"] = {"config": head_config, "name": name, "hidden_size": model.config.hidden_size,
                              "state_dict": head.layers.state_dict()}
    method.apply(model, name, AdapterFiles("bottleneck", adapter.config, adapter.state_dict, "adapters", extras=adapter.extras))
    method.set_active(model, [name])
    params = method.parameters(model, name)
    for p in params:
        p.requires_grad_(True)

    def predict(enc: Any) -> Any:
        return model(**enc)["logits"]

    seconds = train_loop(model, params, predict, train, tokenizer, lr=3e-3, epochs=EPOCHS[EMOTION.key])
    acc = accuracy(predict, test, tokenizer)
    exported = method.export(model, name)
    exported.extras["adapters_meta"]["model_name"] = BASE_MODEL_REPO
    exported.extras["adapters_meta"]["model_class"] = "BertAdapterModel"
    if out.exists():
        for old in out.iterdir():
            old.unlink()
    method.save(exported, out, format="adapters")
    return {"accuracy": acc, "train_seconds": round(seconds, 1), "trainable_parameters": sum(p.numel() for p in params)}


# --- model cards ------------------------------------------------------------------------------------


def _pct(x: float) -> str:
    return f"{100 * x:.1f}%"


def write_card(task: DemoTask, metrics: dict[str, Any], out: Path) -> None:
    library = "peft" if task.method == "lora" else "adapter-transformers"
    labels = ", ".join(f"{i} = {name}" for i, name in enumerate(task.labels))
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


TRAINERS = {SENTIMENT.key: (SENTIMENT, load_sentiment, train_sentiment_lora), EMOTION.key: (EMOTION, load_emotion, train_emotion_bottleneck)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=adapters_root(), help="where to write the adapters")
    parser.add_argument("--task", action="append", choices=sorted(TRAINERS), help="only these tasks")
    parser.add_argument("--cards-only", action="store_true", help="rewrite the model cards from metrics.json")
    args = parser.parse_args(argv)
    if args.cards_only:
        recorded = json.loads((args.out / "metrics.json").read_text(encoding="utf-8"))["tasks"]
        for key in args.task or list(TRAINERS):
            write_card(TRAINERS[key][0], recorded[key], args.out / TRAINERS[key][0].directory)
        return 0

    import torch

    torch.set_num_threads(min(2, torch.get_num_threads()))
    metrics_file = args.out / "metrics.json"
    all_metrics: dict[str, Any] = {}
    if metrics_file.is_file():
        all_metrics = json.loads(metrics_file.read_text(encoding="utf-8")).get("tasks", {})
    for key in args.task or list(TRAINERS):
        task, load, trainer = TRAINERS[key]
        examples = load()
        train, test = stratified_split(examples, SEED)
        counts = Counter(label for _, label in test)
        print(f"{task.name}: {len(train)} train / {len(test)} held-out ({task.method})", file=sys.stderr)
        out = args.out / task.directory
        result = trainer(train, test, out)
        metrics = {
            "name": task.name,
            "method": task.method,
            "labels": list(task.labels),
            "data_source": task.data_source,
            "seed": SEED,
            "n_train": len(train),
            "n_test": len(test),
            "accuracy": round(result["accuracy"], 4),
            "base_untrained_head_accuracy": round(baseline(task, test), 4),
            "chance_accuracy": round(max(counts.values()) / len(test), 4),
            "train_seconds": result["train_seconds"],
            "trainable_parameters": result["trainable_parameters"],
        }
        print(f"  held-out accuracy {metrics['accuracy']:.4f} (untrained head "
              f"{metrics['base_untrained_head_accuracy']:.4f}, chance {metrics['chance_accuracy']:.4f})",
              file=sys.stderr)
        write_card(task, metrics, out)
        all_metrics[key] = metrics
    document = {"base_model": BASE_MODEL_REPO, "script": "examples/train_demo_adapters.py", "tasks": all_metrics}
    metrics_file.parent.mkdir(parents=True, exist_ok=True)
    tmp = metrics_file.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(document, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    os.replace(tmp, metrics_file)
    print(f"wrote {metrics_file}", file=sys.stderr)
    # The bundled registry index pins each release's commit and file hashes: refresh it.
    print("now run: python examples/register_demo_adapters.py", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
