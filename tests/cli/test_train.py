"""`adapterhub train` on a tiny BERT with its own word-level tokenizer (fast): CSV data with string
labels, method options from --config and the command line, --json, the adapter folder and its model
card, Trainer's progress without --json, a PEFT type from the generic plugin, and usage errors."""

from __future__ import annotations

import json
import re

import pytest
from support.fixtures import BASE

from adapterhub.testing import run_cli

WORDS = [f"w{i}" for i in range(40)]


@pytest.fixture(scope="module")
def tiny_base(tmp_path_factory):
    """tests/fixtures/base/tiny-bert plus a tokenizer over the words w0..w39."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import BertModel, PreTrainedTokenizerFast

    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", *WORDS]
    core = Tokenizer(models.WordLevel({w: i for i, w in enumerate(vocab)}, unk_token="[UNK]"))
    core.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=core, pad_token="[PAD]", unk_token="[UNK]",
                                        cls_token="[CLS]", sep_token="[SEP]")
    base = tmp_path_factory.mktemp("base") / "tiny-bert"
    BertModel.from_pretrained(str(BASE / "tiny-bert")).save_pretrained(base)
    tokenizer.save_pretrained(base)
    return base


def _csv(path, rows):
    import csv

    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=["text", "label"])
        writer.writeheader()
        writer.writerows(rows)
    return path


def _rows(start: int, n: int) -> list[dict]:
    """'high' when the first word's number is 20 or more: learnable from one token."""
    return [{"text": f"{WORDS[(start + 7 * i) % 40]} {WORDS[(start + 3 * i) % 40]}",
             "label": "high" if (start + 7 * i) % 40 >= 20 else "low"} for i in range(n)]


def test_csv_string_labels_config_and_cli_options_json_and_the_card(tiny_base, tmp_path):
    train = _csv(tmp_path / "train.csv", _rows(0, 64))
    held_out = _csv(tmp_path / "held.csv", _rows(3, 24))
    config = tmp_path / "lora.json"
    config.write_text(json.dumps({"r": 2, "lora_alpha": 8, "lora_dropout": 0.0}), encoding="utf-8")
    out = tmp_path / "adapter"
    result = run_cli("train", "--base", str(tiny_base), "--method", "lora", "--task", "sequence-classification",
                     "--data", str(train), "--eval", str(held_out), "--out", str(out), "--config", str(config),
                     "--r", "4", "--target-modules", "query,value", "--epochs", "4", "--batch-size", "8",
                     "--lr", "0.01", "--seed", "3", "--max-length", "8", "--json")
    assert result.exit_code == 0, result.stderr
    report = result.json()
    # the command line wins over --config; the rest of --config and the method's defaults stay
    assert report["options"] == {"r": 4, "lora_alpha": 8, "lora_dropout": 0.0, "target_modules": ["query", "value"]}
    assert report["labels"] == ["high", "low"] and report["train_rows"] == 64 and report["eval_rows"] == 24
    assert report["steps"] == 32 and report["epochs"] == 4.0 and report["learning_rate"] == 0.01
    assert report["batch_size"] == 8 and report["seed"] == 3
    assert set(report["metrics"]) == {"eval_loss", "eval_accuracy"} and report["metrics"]["eval_accuracy"] >= 0.75
    assert report["trainable_parameters"] < report["total_parameters"]
    assert report["trainable_percent"] == pytest.approx(
        100 * report["trainable_parameters"] / report["total_parameters"], abs=1e-4)
    assert report["adapter_parameters"] == 2 * 2 * 4 * (64 + 64)  # r=4 on query and value of 2 layers
    assert report["peak_rss_mb"] > 50 and report["adapter_bytes"] > 0

    # the folder: the adapter in its own format, the head (with the label map) and the card
    files = {p.name for p in out.iterdir()}
    assert files == set(report["files"]) and {"README.md", "head_config.json", "model_head.safetensors"} <= files
    assert json.loads((out / "head_config.json").read_text())["config"]["label2id"] == {"high": 0, "low": 1}
    card = (out / "README.md").read_text(encoding="utf-8")
    assert re.search(r"\| train \| `train.csv` \| 64 \| `[0-9a-f]{64}` \|", card)
    assert re.search(r"\| eval \| `held.csv` \| 24 \| `[0-9a-f]{64}` \|", card)
    assert f"| eval_accuracy | {report['metrics']['eval_accuracy']:.4g} |" in card
    assert f"({report['trainable_percent']:.3f}%)" in card and f"| {report['peak_rss_mb']:.0f} MB |" in card
    assert "0 = high, 1 = low" in card and "--target-modules" in card and "adapterhub train --base" in card

    # it loads as any adapter and answers with the label map it was trained with
    from transformers import AutoModel

    from adapterhub import AdapterModel

    am = AdapterModel(AutoModel.from_pretrained(str(tiny_base)))
    am.set_adapter(am.load_adapter(out, name="mine"))
    assert am.adapters["mine"].head["label2id"] == {"high": 0, "low": 1}


def test_without_json_it_shows_progress_and_a_summary(tiny_base, tmp_path):
    train = tmp_path / "train.jsonl"
    train.write_text("".join(json.dumps(r) + "\n" for r in _rows(0, 16)), encoding="utf-8")
    result = run_cli("train", "--base", str(tiny_base), "--method", "bitfit", "--task", "sequence-classification",
                     "--data", str(train), "--out", str(tmp_path / "o"), "--max-steps", "2", "--batch-size", "8")
    assert result.exit_code == 0, result.stderr
    assert "training bitfit on 16 rows of train.jsonl" in result.stderr
    assert re.search(r"2/2 \[", result.stderr)  # Trainer's progress bar
    assert re.search(r"trained [\d,]+ of [\d,]+ parameters \([\d.]+%\)", result.stderr)
    assert "peak memory" in result.stderr and "adapterhub push" in result.stderr
    card = (tmp_path / "o" / "README.md").read_text(encoding="utf-8")
    assert "No evaluation data was given" in card


def test_a_peft_type_of_the_generic_plugin_trains(tiny_base, tmp_path):
    train = tmp_path / "train.jsonl"
    train.write_text("".join(json.dumps(r) + "\n" for r in _rows(0, 16)), encoding="utf-8")
    result = run_cli("train", "--base", str(tiny_base), "--method", "loha", "--task", "sequence-classification",
                     "--data", str(train), "--out", str(tmp_path / "o"), "--r", "2", "--max-steps", "2",
                     "--batch-size", "8", "--json")
    assert result.exit_code == 0, result.stderr
    report = result.json()
    assert report["method"] == "loha" and report["options"] == {"r": 2} and report["learning_rate"] == 2e-3
    saved = json.loads((tmp_path / "o" / "adapter_config.json").read_text())
    assert saved["peft_type"] == "LOHA" and saved["r"] == 2 and sorted(saved["target_modules"]) == ["query", "value"]
    assert (tmp_path / "o" / "head_config.json").is_file()  # the head beside PEFT's files


def test_usage_errors_leave_nothing_behind(tiny_base, tmp_path):
    train = tmp_path / "train.jsonl"
    train.write_text("".join(json.dumps(r) + "\n" for r in _rows(0, 8)), encoding="utf-8")
    common = ["--base", str(tiny_base), "--task", "sequence-classification", "--data", str(train),
              "--out", str(tmp_path / "o"), "--max-steps", "1"]
    typo = run_cli("train", "--method", "ia3", *common, "--feedforward-module", "output.dense")
    assert typo.exit_code == 2 and "did you mean 'feedforward_modules'" in typo.stderr
    assert "valid options for ia3" in typo.stderr
    bad_config = tmp_path / "c.json"
    bad_config.write_text("[1, 2]", encoding="utf-8")
    listed = run_cli("train", "--method", "lora", *common, "--config", str(bad_config))
    assert listed.exit_code == 2 and "expected a JSON object of method options" in listed.stderr
    stray = run_cli("train", "--method", "lora", *common, "extra")
    assert stray.exit_code == 2 and "unexpected argument 'extra'" in stray.stderr
    assert not (tmp_path / "o").exists()
    (tmp_path / "o").mkdir()
    (tmp_path / "o" / "x").write_text("keep", encoding="utf-8")
    taken = run_cli("train", "--method", "lora", *common)
    assert taken.exit_code == 2 and "exists and is not empty" in taken.stderr and "--overwrite" in taken.stderr
    assert (tmp_path / "o" / "x").read_text() == "keep"


def test_a_base_from_the_hub_is_fetched_pinned_and_recorded(tiny_base, tmp_path, monkeypatch):
    """--base org/name: the base comes through the client from a Hub (adapterhub's own server, the real
    huggingface_hub client), pinned to a commit that the report and the card record."""
    from huggingface_hub import HfApi

    from adapterhub.server.testing import running_hub

    train = tmp_path / "train.jsonl"
    train.write_text("".join(json.dumps(r) + "\n" for r in _rows(0, 16)), encoding="utf-8")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf-cache"))
    with running_hub(tmp_path / "hub", {"alice": "tok-alice-train"}) as hub:
        api = HfApi(endpoint=hub.url, token="tok-alice-train")
        api.create_repo("alice/tiny-bert")
        commit = api.upload_folder(repo_id="alice/tiny-bert", folder_path=str(tiny_base)).oid
        monkeypatch.setenv("HF_ENDPOINT", hub.url)
        result = run_cli("train", "--base", "alice/tiny-bert", "--method", "lora", "--task", "sequence-classification",
                         "--data", str(train), "--out", str(tmp_path / "o"), "--max-steps", "2", "--batch-size", "8",
                         "--json")
    assert result.exit_code == 0, result.stderr
    report = result.json()
    assert report["base_model"] == "alice/tiny-bert" and report["base_revision"] == commit
    card = (tmp_path / "o" / "README.md").read_text(encoding="utf-8")
    assert "base_model: alice/tiny-bert" in card and f"| base model | `alice/tiny-bert` @ `{commit}` |" in card
    saved = json.loads((tmp_path / "o" / "adapter_config.json").read_text())
    assert saved.get("base_model_name_or_path", saved.get("model_name")) == "alice/tiny-bert"  # not a cache path
