"""`adapterhub index add|build|validate`: the default folder is ./registry_index as --help says, never
the index bundled inside the package; the folder may be given as an argument; an empty folder is an
error for build as for validate."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from adapterhub.client.index import bundled_index_path

from .conftest import run_cli


def _entry_file(tmp_path: Path, name: str = "team/tiny-lora") -> Path:
    entry = {
        "schema_version": 1, "name": name, "namespace": name.split("/")[0], "task": "sentiment-analysis",
        "method": "lora", "license": "apache-2.0", "description": "d", "tags": [],
        "base_model": {"repo_id": "org/tiny-bert", "revision": None, "model_type": "bert"},
        "versions": {"1.0.0": {"source": {"type": "hf", "repo_id": "team/tiny-lora", "tag": "v1.0.0",
                                          "revision": "a" * 40},
                               "files": [{"path": "adapter_config.json", "size": 2, "sha256": "b" * 64}]}},
    }
    path = tmp_path / "entry.json"
    path.write_text(json.dumps(entry))
    return path


def _bundled_digest() -> str:
    root = bundled_index_path().parent
    return hashlib.sha256(b"".join(p.read_bytes() for p in sorted(root.rglob("*.json")))).hexdigest()


def test_add_without_a_folder_writes_registry_index_here_and_never_the_bundled_one(tmp_path, monkeypatch):
    before = _bundled_digest()
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    result = run_cli("index", "add", str(_entry_file(tmp_path)), "--json")
    assert result.exit_code == 0, result.stderr
    assert Path(result.json()["entry"]).resolve() == (work / "registry_index" / "team" / "tiny-lora.json").resolve()
    assert json.loads((work / "registry_index" / "index.json").read_text())["entries"].keys() == {"team/tiny-lora"}
    assert _bundled_digest() == before
    assert "team/tiny-lora" not in (bundled_index_path()).read_text()


@pytest.mark.parametrize("how", ["argument", "option"])
def test_the_folder_as_an_argument_or_option(tmp_path, how):
    target = tmp_path / "my-index"
    entry = str(_entry_file(tmp_path))
    args = [entry, str(target)] if how == "argument" else [entry, "--dir", str(target)]
    assert run_cli("index", "add", *args).exit_code == 0
    assert (target / "team" / "tiny-lora.json").is_file() and (target / "index.json").is_file()


def test_two_different_folders_are_a_usage_error(tmp_path):
    result = run_cli("index", "add", str(_entry_file(tmp_path)), str(tmp_path / "a"), "--dir", str(tmp_path / "b"))
    assert result.exit_code == 2 and "two index directories" in result.stderr
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_build_on_an_empty_folder_fails(tmp_path, monkeypatch):
    empty = tmp_path / "empty"
    empty.mkdir()
    result = run_cli("index", "build", str(empty))
    assert result.exit_code == 1 and "no index entries" in result.stderr
    assert not (empty / "index.json").exists()
    monkeypatch.chdir(empty)  # no ./registry_index here: nothing is built, the bundled index is untouched
    before = _bundled_digest()
    result = run_cli("index", "build")
    assert result.exit_code == 1 and "registry_index" in result.stderr
    assert _bundled_digest() == before
