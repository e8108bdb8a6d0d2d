"""Validation, conversion, manifest and card: everything a push checks before it talks to a Hub."""

from __future__ import annotations

import hashlib
import json

import pytest

from adapterhub.errors import PublishError
from adapterhub.plugin.registry import registered_methods
from adapterhub.publish import (
    convert_to_safetensors,
    manifest_problems,
    parse_metrics,
    push_directory,
    validate_adapter_dir,
)

from publish_helpers import FIXTURES, copy_fixture, read_json

needs_bottleneck = pytest.mark.skipif("bottleneck" not in registered_methods(), reason="bottleneck plugin missing")


def _tree_digest(root):
    return {
        p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


@needs_bottleneck
def test_pickle_is_refused_with_the_conversion_command_and_every_problem_is_listed(tmp_path):
    adapter = copy_fixture("seq_bn_pickle", tmp_path)
    config = read_json(adapter / "adapter_config.json")
    config["model_name"] = ""  # and the base model is unknown: a second, independent problem
    (adapter / "adapter_config.json").write_text(json.dumps(config))

    with pytest.raises(PublishError) as info:
        validate_adapter_dir(adapter, check=False)

    problems = info.value.problems
    assert any("pytorch_adapter.bin" in p and f"adapterhub convert {adapter} --to-safetensors" in p for p in problems)
    assert any("base model unknown" in p and "--base-model" in p for p in problems)
    assert len(problems) >= 2


@needs_bottleneck
def test_convert_matches_the_safetensors_file_the_adapters_library_wrote(tmp_path):
    from safetensors.torch import load_file

    source = copy_fixture("seq_bn_pickle", tmp_path)
    before = _tree_digest(source)
    converted = convert_to_safetensors(source, tmp_path / "converted")

    assert _tree_digest(source) == before  # --output leaves the original alone
    assert [(a.name, b.name) for a, b in converted] == [("pytorch_adapter.bin", "adapter.safetensors")]
    ours = load_file(tmp_path / "converted" / "adapter.safetensors")
    theirs = load_file(FIXTURES / "seq_bn_safetensors" / "adapter.safetensors")
    assert sorted(ours) == sorted(theirs)
    for key in theirs:
        assert ours[key].dtype == theirs[key].dtype and ours[key].equal(theirs[key]), key

    validated = validate_adapter_dir(tmp_path / "converted", check=False)
    assert (validated.method, validated.format) == ("bottleneck", "adapters")
    assert validated.base_model.repo_id == "base/tiny-bert" and validated.base_model.model_type == "bert"


@needs_bottleneck
def test_convert_cli_in_place_then_validation_passes(tmp_path):
    from publish_helpers import run_cli

    adapter = copy_fixture("seq_bn_pickle", tmp_path)
    result = run_cli("convert", str(adapter), "--to-safetensors", "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)[0]["to"].endswith("adapter.safetensors")
    assert sorted(p.name for p in adapter.iterdir()) == ["adapter.safetensors", "adapter_config.json"]
    assert validate_adapter_dir(adapter, check=False).method == "bottleneck"


def test_not_an_adapter_directory(tmp_path):
    (tmp_path / "adapter_config.json").write_text("{not json")
    with pytest.raises(PublishError) as info:
        validate_adapter_dir(tmp_path, check=False)
    assert any("not valid JSON" in p for p in info.value.problems)
    assert any("no .safetensors weights" in p for p in info.value.problems)


@needs_bottleneck
def test_dry_run_needs_no_token_and_leaves_the_directory_untouched(tmp_path):
    adapter = copy_fixture("seq_bn_safetensors", tmp_path)
    before = _tree_digest(adapter)
    result = push_directory(
        adapter, repo_id="Alice/SeqBN", version="1.2.0", task="sentiment-analysis", license="apache-2.0",
        metrics={"accuracy": 0.75}, check=False, dry_run=True,
    )
    assert _tree_digest(adapter) == before
    assert result.dry_run and result.commit is None
    assert result.name == "alice/seqbn"  # the registry name defaults to the lowercased repo id
    manifest = result.manifest
    assert manifest_problems(manifest) == []
    assert manifest["method"] == "bottleneck" and manifest["format"] == "adapters"
    assert manifest["plugin"]["name"] == "adapterhub.default_plugins.bottleneck"
    assert manifest["metrics"] == {"accuracy": 0.75}
    listed = {f["path"]: f for f in manifest["files"]}
    assert set(listed) == {"adapter.safetensors", "adapter_config.json", "README.md"}
    assert listed["adapter.safetensors"]["sha256"] == before["adapter.safetensors"]


def test_manifest_schema_is_strict():
    good = {
        "schema_version": 1, "name": "a/b", "version": "1.0.0", "method": "lora",
        "plugin": {"name": "p", "distribution": "d", "version": "1"}, "format": "peft",
        "base_model": {"repo_id": "x/y", "revision": None, "model_type": "bert"}, "task": "t", "subtask": None,
        "license": None, "description": None, "metrics": {},
        "files": [{"path": "adapter_config.json", "size": 1, "sha256": "0" * 64}],
        "adapterhub_version": "0.1.0", "created": "2026-01-01T00:00:00Z",
    }
    assert manifest_problems(good) == []
    assert manifest_problems({**good, "x-extra": 1}) == []
    assert manifest_problems({**good, "surprise": 1})
    assert manifest_problems({**good, "files": [{"path": "../evil", "size": 1, "sha256": "0" * 64}]})
    assert manifest_problems({**good, "files": [{"path": "a", "size": 1, "sha256": "XYZ"}]})
    assert manifest_problems({**good, "version": "1.0"})
    assert manifest_problems({**good, "files": good["files"] * 2})  # duplicate paths


def test_bad_arguments_are_reported_together(tmp_path):
    with pytest.raises(PublishError) as info:
        push_directory(tmp_path, repo_id="nope", version="1.0", name="Bad/Name", dry_run=True)
    text = str(info.value)
    assert "--repo" in text and "--version" in text and "--name" in text


def test_missing_token_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.delenv("HF_TOKEN", raising=False)
    with pytest.raises(PublishError) as info:
        push_directory(tmp_path, repo_id="alice/x", version="1.0.0", endpoint="http://127.0.0.1:9")
    assert "HF_TOKEN" in str(info.value) and "--token" in str(info.value)


def test_parse_metrics():
    assert parse_metrics(["accuracy=0.91", "n=3", "split=test"]) == {"accuracy": 0.91, "n": 3, "split": "test"}
    with pytest.raises(PublishError):
        parse_metrics(["accuracy"])


def test_a_link_out_of_the_adapter_folder_is_refused_but_a_hub_cache_snapshot_is_fine(tmp_path):
    secret = tmp_path / "token.txt"
    secret.write_text("hf_not_for_upload")
    adapter = copy_fixture("seq_bn_safetensors", tmp_path / "plain")
    (adapter / "notes.txt").symlink_to(secret)
    with pytest.raises(PublishError) as info:
        validate_adapter_dir(adapter, base_model="org/base", check=False)
    assert any("notes.txt" in p and "outside the adapter folder" in p for p in info.value.problems)

    # The Hugging Face cache layout: snapshot files link into the repo's blobs/ folder.
    repo = tmp_path / "hub" / "models--org--adapter"
    snapshot = repo / "snapshots" / ("a" * 40)
    snapshot.mkdir(parents=True)
    (repo / "blobs").mkdir()
    for file in copy_fixture("seq_bn_safetensors", tmp_path / "src").iterdir():
        blob = repo / "blobs" / file.name
        blob.write_bytes(file.read_bytes())
        (snapshot / file.name).symlink_to(blob)
    validated = validate_adapter_dir(snapshot, base_model="org/base", check=False)
    assert "adapter.safetensors" in validated.files
