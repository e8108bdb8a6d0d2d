"""The shipped demo adapters: their cards quote the training script's metrics, and they beat the baselines."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from adapterhub.demo.tasks import DEMO_TASKS, adapter_dir, metrics_path
from adapterhub.layout import adapter_files
from adapterhub.plugin import detect_method, read_adapter_config

ROOT = Path(__file__).resolve().parents[2]


def _metrics() -> dict:
    return json.loads(metrics_path().read_text(encoding="utf-8"))["tasks"]


def _card_accuracies(card: str) -> dict[str, float]:
    """The rows of the card's "Held-out accuracy" table, as fractions."""
    section = card.split("## Held-out accuracy", 1)[1].split("\n## ", 1)[0]
    rows = re.findall(r"^\| ([^|]+?) \| ([0-9.]+)% \|$", section, flags=re.MULTILINE)
    return {label: float(value) / 100 for label, value in rows}


@pytest.mark.parametrize("task", DEMO_TASKS, ids=lambda t: t.key)
def test_card_quotes_the_metrics_the_training_script_wrote(task):
    metrics = _metrics()[task.key]
    card = (adapter_dir(task) / "README.md").read_text(encoding="utf-8")
    table = _card_accuracies(card)
    assert table == {
        "this adapter": pytest.approx(round(metrics["accuracy"] * 100, 1) / 100),
        "base model + untrained head": pytest.approx(round(metrics["base_untrained_head_accuracy"] * 100, 1) / 100),
        "chance (majority class)": pytest.approx(round(metrics["chance_accuracy"] * 100, 1) / 100),
    }
    # The card names where the labelled data came from and how big the held-out split was.
    assert task.data_source.split(",")[0] in card
    assert f"{metrics['n_test']} held-out" in card
    assert metrics["labels"] == list(task.labels)


@pytest.mark.parametrize("task", DEMO_TASKS, ids=lambda t: t.key)
def test_adapter_clearly_beats_chance_and_the_untrained_head(task):
    metrics = _metrics()[task.key]
    assert metrics["accuracy"] >= metrics["chance_accuracy"] + 0.15
    assert metrics["accuracy"] >= metrics["base_untrained_head_accuracy"] + 0.15
    assert metrics["n_test"] >= 300  # a held-out split big enough for the figure to mean something


@pytest.mark.parametrize("task", DEMO_TASKS, ids=lambda t: t.key)
def test_shipped_files_are_small_safetensors_of_the_right_method(task):
    path = adapter_dir(task)
    files = set(adapter_files(path))
    assert not any(f.endswith((".bin", ".pt", ".pth", ".pkl")) for f in files)
    assert any(f.endswith(".safetensors") for f in files)
    assert sum((path / f).stat().st_size for f in files) < 2_000_000
    assert detect_method(path).name == task.method
    config = read_adapter_config(path)
    if task.method == "lora":  # the sequence-classification head travels with the LoRA
        assert "classifier" in config["modules_to_save"]
    else:
        assert "head_config.json" in files


@pytest.mark.parametrize("task", DEMO_TASKS, ids=lambda t: t.key)
def test_bundled_index_lists_the_shipped_adapter_files(task):
    from adapterhub.client import sha256_file
    from adapterhub.client.authoring import validate_index_dir

    entries, problems = validate_index_dir(ROOT / "registry_index")
    assert problems == []
    entry = entries[task.name]
    assert entry["method"] == task.method
    release = entry["versions"]["1.0.0"]
    assert release["source"]["repo_id"] == task.repo_id
    listed = {f["path"]: f["sha256"] for f in release["files"]}
    shipped = set(adapter_files(adapter_dir(task)))
    # README.md is re-rendered by `adapterhub push` (front matter from the manifest) and
    # adapterhub.json is written by it; every other published file is a shipped file, unchanged.
    assert set(listed) == shipped | {"adapterhub.json"}
    for path in shipped - {"README.md"}:
        assert listed[path] == sha256_file(adapter_dir(task) / path), path


@pytest.mark.parametrize("task", DEMO_TASKS, ids=lambda t: t.key)
def test_bundled_entry_is_a_plain_reproducible_release(task):
    import datetime as dt

    from adapterhub.demo.tasks import DEMO_RELEASE_EPOCH

    entry = json.loads((ROOT / "registry_index" / f"{task.name}.json").read_text(encoding="utf-8"))
    assert not [k for k in entry if k.startswith("x-")]  # no caveat: it installs like any entry
    release = entry["versions"]["1.0.0"]
    # Published at the fixed SOURCE_DATE_EPOCH the demo pushes with, not at some run's clock time.
    expected = dt.datetime.fromtimestamp(DEMO_RELEASE_EPOCH, dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    assert release["published"] == expected
    assert len(release["source"]["revision"]) == 40
    # The compiled index the client reads by default holds exactly the per-entry file.
    compiled = json.loads((ROOT / "registry_index" / "index.json").read_text(encoding="utf-8"))
    assert compiled["entries"][task.name] == entry
