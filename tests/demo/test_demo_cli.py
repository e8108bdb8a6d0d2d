"""The ``adapterhub demo`` command's surface and the training script's data preparation."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

from adapterhub.demo.tasks import DEMO_TASKS, base_model_path

ROOT = Path(__file__).resolve().parents[2]


def test_demo_help_is_listed_and_imports_no_torch():
    code = (
        "import sys; from adapterhub.cli import cli; from click.testing import CliRunner;"
        "r = CliRunner().invoke(cli, ['demo', '--help']); print(r.output);"
        "assert r.exit_code == 0;"
        "bad = [m for m in ('torch', 'transformers', 'peft') if m in sys.modules]; assert not bad, bad"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    for option in ("--text", "--keep", "--json"):
        assert option in proc.stdout


def test_base_model_is_found_through_the_package():
    path = base_model_path()
    assert (path / "config.json").is_file() and (path / "model.safetensors").is_file()


def _training_script():
    spec = importlib.util.spec_from_file_location("train_demo_adapters", ROOT / "examples" / "train_demo_adapters.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("task", DEMO_TASKS, ids=lambda t: t.key)
def test_training_data_split_is_reproducible_and_disjoint(task):
    pytest.importorskip("vaderSentiment" if task.key == "sentiment" else "nrclex")
    import json

    script = _training_script()
    examples = {"sentiment": script.load_sentiment, "emotion": script.load_emotion}[task.key]()
    assert {label for _, label in examples} == set(range(len(task.labels)))
    train, test = script.stratified_split(examples, script.SEED)
    again = script.stratified_split(examples, script.SEED)
    assert (train, test) == again
    assert not {t for t, _ in train} & {t for t, _ in test}  # held-out really is held out
    metrics = json.loads((ROOT / "adapterhub" / "demo" / "adapters" / "metrics.json").read_text())["tasks"][task.key]
    assert (len(train), len(test)) == (metrics["n_train"], metrics["n_test"])
