"""Commands that find nothing say so plainly: `search` with no matches, `index validate` on an empty folder."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from .conftest import run_cli


def _entry(name: str, task: str = "sentiment-analysis") -> dict:
    return {
        "schema_version": 1, "name": name, "namespace": name.split("/")[0], "task": task, "method": "lora",
        "license": "apache-2.0", "description": "an adapter for the search tests", "tags": ["test"],
        "base_model": {"repo_id": "hf-internal-testing/tiny-bert", "revision": None, "model_type": "bert"},
        "versions": {"1.0.0": {"source": {"type": "hf", "repo_id": "alice/x", "tag": None, "revision": "a" * 40},
                               "files": [{"path": "adapter_config.json", "size": 2, "sha256": "b" * 64}]}},
    }


@pytest.fixture
def index_dir(tmp_path, monkeypatch) -> Path:
    root = tmp_path / "registry"
    for name in ("sentiment/tiny-lora", "nli/roberta-mnli"):
        path = root / f"{name}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(_entry(name)))
    monkeypatch.setenv("ADAPTERHUB_INDEX", str(root))
    return root


def test_search_without_matches_suggests_close_names(index_dir):
    result = run_cli("search", "tiny-lroa")
    assert result.exit_code == 0, result.stderr
    assert result.stdout == ""
    assert "No adapters found for 'tiny-lroa'" in result.stderr
    assert "Close names: sentiment/tiny-lora" in result.stderr and "roberta" not in result.stderr

    result = run_cli("search", "tiny-lroa", "--json")
    assert result.exit_code == 0
    assert result.json() == {"results": [], "suggestions": ["sentiment/tiny-lora"]}


def test_search_without_matches_or_close_names(index_dir):
    result = run_cli("search", "zebra")
    assert result.exit_code == 0
    assert "No adapters found for 'zebra'" in result.stderr and "Close names" not in result.stderr
    assert run_cli("search", "zebra", "--json").json() == {"results": [], "suggestions": []}
    # Filters that exclude everything are named in the message.
    result = run_cli("search", "--task", "translation")
    assert result.exit_code == 0 and "No adapters found for (task translation)" in result.stderr


def test_search_with_matches_has_no_suggestions(index_dir):
    result = run_cli("search", "tiny", "--json").json()
    assert [r["name"] for r in result["results"]] == ["sentiment/tiny-lora"] and result["suggestions"] == []


def test_index_validate_on_an_empty_folder_fails(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    result = run_cli("index", "validate", str(empty))
    assert result.exit_code == 1
    assert f"error: {empty}: no index entries found" in result.stderr
    assert f"{empty}/<namespace>/<name>.json" in result.stderr and "OK" not in result.stderr
    result = run_cli("index", "validate", str(empty), "--json")
    assert result.exit_code == 1 and result.json()["ok"] is False and result.json()["entries"] == []

    # A folder holding only a compiled index.json is named as such.
    (empty / "index.json").write_text('{"schema_version": 1, "entries": {}}')
    result = run_cli("index", "validate", str(empty))
    assert result.exit_code == 1 and "it has an index.json" in result.stderr


def test_index_validate_still_passes_a_real_folder(index_dir):
    result = run_cli("index", "validate", str(index_dir))
    assert result.exit_code == 0, result.stderr
    assert "OK: 2 entries" in result.stderr


def test_search_takes_several_words_unquoted(index_dir):
    """`adapterhub search tiny sentiment` = `adapterhub search "tiny sentiment"`: every word must match."""
    for args in (("tiny", "sentiment"), ("tiny sentiment",)):
        result = run_cli("search", *args, "--json")
        assert result.exit_code == 0, result.stderr
        assert [r["name"] for r in result.json()["results"]] == ["sentiment/tiny-lora"]
    assert run_cli("search", "tiny", "mnli", "--json").json()["results"] == []


def test_a_word_of_a_registry_name_is_suggested(monkeypatch):
    """The bundled index: `vader` is a word of sentiment/minilm-vader."""
    monkeypatch.delenv("ADAPTERHUB_INDEX", raising=False)
    result = run_cli("install", "vader", "--offline")
    assert result.exit_code == 1
    assert "did you mean sentiment/minilm-vader?" in result.stderr
    result = run_cli("info", "vader")
    assert result.exit_code == 1 and "did you mean sentiment/minilm-vader?" in result.stderr
    assert run_cli("search", "vader", "--json").json()["results"][0]["name"] == "sentiment/minilm-vader"
