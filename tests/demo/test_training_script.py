"""examples/train_demo_adapters.py keeps working: it imports cleanly, loads its data, and a tiny
training run through the public API writes adapters that load back, with cards that quote its metrics."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

from adapterhub.demo.tasks import DEMO_TASKS, EMOTION, SENTIMENT

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "examples" / "train_demo_adapters.py"

pytest.importorskip("vaderSentiment", reason="the sentiment training data ships in vaderSentiment")
pytest.importorskip("nrclex", reason="the emotion training data ships in NRCLex")


def _load_script():
    spec = importlib.util.spec_from_file_location("train_demo_adapters", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def script():
    return _load_script()


def test_importing_the_script_has_no_side_effects():
    # A fresh interpreter: this test process has long imported torch.
    code = (
        "import importlib.util, json, os, sys\n"
        "before = dict(os.environ)\n"
        f"spec = importlib.util.spec_from_file_location('t', {str(SCRIPT)!r})\n"
        "m = importlib.util.module_from_spec(spec); spec.loader.exec_module(m)\n"
        "print(json.dumps({'env_changed': dict(os.environ) != before,\n"
        "                  'heavy': sorted(n for n in ('torch', 'transformers', 'peft') if n in sys.modules),\n"
        "                  'has_main': callable(m.main)}))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.strip().splitlines()[-1]) == {"env_changed": False, "heavy": [], "has_main": True}


@pytest.fixture
def restore_torch_state():
    """main() makes torch deterministic and fixes its threads for the run: undo it for other tests."""
    import torch

    threads, deterministic = torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()
    yield
    torch.set_num_threads(threads)
    torch.use_deterministic_algorithms(deterministic)


def test_smoke_training_run_writes_loadable_adapters_and_honest_cards(script, tmp_path, restore_torch_state):
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from adapterhub import AdapterModel
    from adapterhub.demo.tasks import base_model_path
    from adapterhub.plugin import detect_method

    assert script.main(["--smoke", "--out", str(tmp_path)]) == 0
    metrics = json.loads((tmp_path / "metrics.json").read_text(encoding="utf-8"))["tasks"]
    assert set(metrics) == {t.key for t in DEMO_TASKS}
    for task in DEMO_TASKS:
        m = metrics[task.key]
        assert m["n_test"] == script.SMOKE_EXAMPLES and m["steps"] == script.SMOKE_STEPS
        assert m["trainable_parameters"] > 0
        card = (tmp_path / task.directory / "README.md").read_text(encoding="utf-8")
        assert f"| this adapter | {100 * m['accuracy']:.1f}% |" in card
        assert f"| base model + untrained head | {100 * m['base_untrained_head_accuracy']:.1f}% |" in card
        assert detect_method(tmp_path / task.directory).name == task.method
    assert not list(tmp_path.glob("*.tmp"))  # staging folders were swapped in

    # The saved adapters load back through the public API and answer with their labels.
    path = base_model_path()
    tokenizer = AutoTokenizer.from_pretrained(path)
    batch = tokenizer(["happy", "grief"], return_tensors="pt", padding=True)
    am = AdapterModel(AutoModelForSequenceClassification.from_pretrained(path, num_labels=2).eval())
    am.load_adapter(tmp_path / SENTIMENT.directory, name="sentiment")
    am.load_adapter(tmp_path / EMOTION.directory, name="emotion")
    assert list(am.adapters["emotion"].head["label2id"]) == list(EMOTION.labels)
    with torch.no_grad():
        am.set_adapter("sentiment")
        assert am(**batch).logits.shape == (2, 2)
        am.set_adapter("emotion")
        assert am(**batch).logits.shape == (2, 4)
    # The LoRA carries its trained classifier and records the Hub base model, not this machine's path.
    config = json.loads((tmp_path / SENTIMENT.directory / "adapter_config.json").read_text(encoding="utf-8"))
    assert config["base_model_name_or_path"] == "sentence-transformers/all-MiniLM-L6-v2"
    assert "classifier" in config["modules_to_save"]


def test_smoke_refuses_to_overwrite_the_shipped_adapters(script):
    with pytest.raises(SystemExit) as exc:
        script.main(["--smoke"])
    assert exc.value.code == 2
