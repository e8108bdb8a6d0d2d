"""``adapterhub demo`` end to end, as a user runs it: a subprocess, the real MiniLM, a real local Hub."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from demo_helpers import bundled_entry

from adapterhub.demo.tasks import DEMO_TASKS, SENTIMENT

pytestmark = pytest.mark.slow

MY_TEXT = "Honestly the best concert I have ever been to, pure joy."


@pytest.fixture(scope="module")
def demo_report(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("demo")
    env = {**os.environ, "TMPDIR": str(tmp), "HF_HUB_OFFLINE": "1"}  # offline: the demo needs no internet
    # Run as a user does (the console script), from a folder holding a folder named adapterhub (the
    # parent of a clone): the Hub the demo starts must still run the installed package.
    parent = tmp_path_factory.mktemp("parent-of-a-clone")
    (parent / "adapterhub").mkdir()
    script = Path(sys.executable).with_name("adapterhub")
    proc = subprocess.run(
        [str(script), "demo", "--json", "--text", MY_TEXT],
        capture_output=True, text=True, env=env, timeout=300, stdin=subprocess.DEVNULL, cwd=parent,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    # commands are wrapped with shell continuations; the checks below read them as one line
    return json.loads(proc.stdout), proc.stderr.replace(" \\\n      ", " "), tmp


def test_every_example_sentence_gets_its_label(demo_report):
    report, _, _ = demo_report
    for task in DEMO_TASKS:
        rows = report["predictions"][task.key]
        assert [r["text"] for r in rows] == [t for t, _ in task.examples] + [MY_TEXT]
        for row, (text, expected) in zip(rows, task.examples):
            assert row["label"] == expected, f"{task.key}: {text!r} -> {row['label']}, expected {expected}"
            assert len(row["logits"]) == len(task.labels)


def test_merged_checkpoint_predicts_what_the_adapter_predicts(demo_report):
    report, _, _ = demo_report
    before = report["predictions"][SENTIMENT.key]
    after = report["merged"]["predictions"]
    assert [r["label"] for r in after] == [r["label"] for r in before]
    for a, b in zip(before, after):
        assert b["logits"] == pytest.approx(a["logits"], abs=1e-4)
    assert report["merged"]["same_labels"] is True


def test_both_tasks_from_one_forward_pass(demo_report):
    report, stderr, _ = demo_report
    parallel = report["parallel"]
    assert parallel["setup"] == "Parallel('sentiment', 'emotion')"
    # The sentiment slice answers with the LoRA's classifier (the model's own head), the emotion
    # slice with the bottleneck's AdapterHub head.
    assert parallel["heads"] == [None, "emotion"]
    for task in DEMO_TASKS:
        rows = {r["text"]: r for r in parallel["predictions"][task.key]}
        for text, expected in task.examples:
            assert rows[text]["label"] == expected
        # The one-pass result is what the adapter gives alone (set_adapter(task.key)).
        for single in report["predictions"][task.key]:
            assert rows[single["text"]]["logits"] == pytest.approx(single["logits"], abs=1e-5)
    assert "set_adapter(Parallel('sentiment', 'emotion'))" in stderr


def test_published_releases_are_the_ones_the_bundled_index_pins(demo_report):
    report, stderr, _ = demo_report
    published = {p["name"]: p for p in report["published"]}
    installed = {i["name"]: i for i in report["installed"]}
    assert set(published) == set(installed) == {t.name for t in DEMO_TASKS}
    for task in DEMO_TASKS:
        release = bundled_entry(task.name)["versions"]["1.0.0"]  # the source tree's JSON, read as is
        assert published[task.name]["method"] == task.method
        # The demo's fresh Hub got exactly the commit the bundled entry pins, with the same files.
        assert published[task.name]["commit"] == release["source"]["revision"]
        assert sorted(published[task.name]["files"], key=lambda f: f["path"]) == sorted(
            release["files"], key=lambda f: f["path"]
        )
        # ... and installing by name through the bundled index locked that commit.
        assert installed[task.name]["revision"] == release["source"]["revision"]
        assert installed[task.name]["version"] == "1.0.0"
    names = f"{DEMO_TASKS[0].name} {DEMO_TASKS[1].name}"
    assert f"HF_ENDPOINT={report['hub']['url']} adapterhub install {names} --lock" in stderr
    assert "--index" not in stderr.split("adapterhub install", 1)[1].splitlines()[0]  # the bundled one
    assert "SOURCE_DATE_EPOCH=" in stderr
    # pushed WITH the load check: the demo's own adapters pass it, in the class their task needs
    assert "--no-check" not in stderr
    assert "(lora, loads onto BertForSequenceClassification(num_labels=2))" in stderr
    assert "(bottleneck, loads onto BertModel)" in stderr


def test_the_narration_explains_and_ends_with_next_steps(demo_report):
    report, stderr, _ = demo_report
    for line in ("PEFT format: ", "AdapterHub format: ", "Parallel: every child adapter"):
        assert line in stderr
    lines = stderr.rstrip().splitlines()
    nexts = lines[lines.index("Next, try:") + 1:]
    assert len(nexts) == 4 and nexts[0].lstrip().startswith("adapterhub demo --text")


def test_leaves_nothing_behind(demo_report):
    report, stderr, tmp = demo_report
    assert not Path(report["workspace"]).exists()
    # torch may leave its own compile cache in TMPDIR; nothing of adapterhub's may remain.
    assert [p.name for p in tmp.iterdir() if p.name.startswith("adapterhub")] == []
    assert "Stopped the Hub" in stderr
    assert report["seconds"] < 90  # about 10 s on an idle 2-core machine
