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


def test_narration_goes_to_stdout_and_to_stderr_under_json(monkeypatch):
    """Without --json the narration is the command's output (stdout); with --json stdout is the report."""
    import json

    import adapterhub.demo.run as demo_run
    from adapterhub.testing import run_cli

    def fake_run_demo(texts, keep, say):  # the CLI's part only: where say() writes
        say("narration line")
        return {"seconds": 1.0}

    monkeypatch.setattr(demo_run, "run_demo", fake_run_demo)
    plain = run_cli("demo")
    assert plain.exit_code == 0 and plain.stdout == "narration line\n" and plain.stderr == ""
    as_json = run_cli("demo", "--json")
    assert json.loads(as_json.stdout) == {"seconds": 1.0} and as_json.stderr == "narration line\n"


def test_quoted_commands_wrap_between_options_and_stay_one_shell_command():
    import shlex

    from adapterhub.demo.publish import shown_command

    args = ["push", "/a/long/path/" + "x" * 60, "--repo", "org/name", "--version", "1.0.0", "--token", "secret",
            "--description", "two words", "--entry-out", "/tmp/" + "y" * 50 + ".json"]
    text = shown_command(args, {"SOURCE_DATE_EPOCH": "1"}, width=100)
    lines = text.splitlines()
    assert len(lines) > 1 and all(line.endswith(" \\") for line in lines[:-1])
    assert all(len(line) <= 100 for line in lines[1:])
    assert all(line.startswith("      --") for line in lines[1:])  # an option and its value stay together
    # the shell reads the continuations back as the one command (token masked)
    words = shlex.split(text.replace("\\\n", " "))
    assert words == ["SOURCE_DATE_EPOCH=1", "adapterhub", *[("***" if w == "secret" else w) for w in args]]
    assert shown_command(args, {"SOURCE_DATE_EPOCH": "1"}) == " ".join(shlex.quote(w) for w in words)
