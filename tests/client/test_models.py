"""The typed client records and their serializers: every file format round-trips through them."""

from __future__ import annotations

import json
import tomllib
from dataclasses import FrozenInstanceError
from pathlib import Path

import pytest

from adapterhub.client.lockfile import read_lock, render, write_lock
from adapterhub.client.models import (
    FileEntry,
    IndexEntry,
    InstallRecord,
    LockEntry,
    LockRegistry,
    MethodStamp,
    Source,
    toml_key,
)

SHA = "ab" * 32
COMMIT = "c0" * 20


def _entries() -> list[LockEntry]:
    files = (FileEntry("adapter_config.json", 10, SHA), FileEntry("sub/adapter_model.safetensors", 2048, "cd" * 32))
    lora = MethodStamp("lora", "adapterhub.default_plugins.lora", None, "0.1.0")  # a lock records no distribution
    return [
        LockEntry("sentiment/sst2@>=1,<2", "sentiment/sst2", lora, Source.hub("alice/lora-a", COMMIT), files,
                  version="1.1.0", registry=LockRegistry("../index", "sha256:" + "ef" * 32)),
        LockEntry("alice/nli-lora", "alice/nli-lora", MethodStamp("unknown"), Source.hub("alice/nli-lora", COMMIT), files),
        LockEntry("./mine", "mine", lora, Source.local("mine", "12" * 32), files[:1]),
    ]


def test_lock_round_trips_byte_identically(tmp_path):
    lock = write_lock(tmp_path / "a.lock", _entries())
    text = lock.read_text()
    assert read_lock(lock) == sorted(_entries(), key=lambda e: (e.name, e.requested))
    assert render(read_lock(lock)) == text
    # The TOML is the schema's: kebab-case keys, None fields left out, a version only when there is one.
    tables = {t["requested"]: t for t in tomllib.loads(text)["adapter"]}
    registry = tables["sentiment/sst2@>=1,<2"]
    assert registry["source"] == {"type": "hf", "repo-id": "alice/lora-a", "revision": COMMIT}
    assert registry["method"] == {"name": "lora", "plugin": "adapterhub.default_plugins.lora", "plugin-version": "0.1.0"}
    assert list(registry) == ["requested", "name", "version", "method", "source", "registry", "files"]
    assert tables["./mine"]["source"] == {"type": "local", "path": "mine", "digest": "12" * 32}
    assert "version" not in tables["alice/nli-lora"] and tables["alice/nli-lora"]["method"] == {"name": "unknown"}


def test_lock_tables_read_back_unchanged():
    for entry in _entries():
        table = entry.to_dict()
        assert LockEntry.from_dict(table) == entry
        assert LockEntry.from_dict(table).to_dict() == table


def test_one_snake_kebab_mapper():
    assert toml_key("repo_id") == "repo-id" and toml_key("plugin_version") == "plugin-version"
    assert Source.from_lock(Source.hub("a/b", COMMIT).to_lock()) == Source.hub("a/b", COMMIT)
    assert Source.hub("a/b", COMMIT).to_dict() == {"type": "hf", "repo_id": "a/b", "revision": COMMIT}


def test_method_stamp_serves_the_lock_and_the_manifest():
    from adapterhub.client.detect import stamp_method

    stamp = stamp_method("lora")
    assert stamp.to_lock() == {"name": "lora", "plugin": "adapterhub.default_plugins.lora", "plugin-version": "0.1.0"}
    assert stamp.to_manifest() == {"name": "adapterhub.default_plugins.lora", "distribution": "adapterhub",
                                   "version": "0.1.0"}
    assert MethodStamp.from_manifest("lora", stamp.to_manifest()) == stamp
    assert MethodStamp.from_lock(stamp.to_lock()) == MethodStamp("lora", stamp.plugin, None, stamp.version)


def test_file_entries_compare_by_content_not_provenance():
    a = FileEntry("x", 1, SHA, "index")
    assert a == FileEntry("x", 1, SHA, "lock", "0" * 40) and a.to_dict() == {"path": "x", "size": 1, "sha256": SHA}
    assert a != FileEntry("x", 2, SHA)
    with pytest.raises(FrozenInstanceError):
        a.size = 2  # type: ignore[misc]


def test_bundled_index_entries_round_trip():
    from adapterhub.client.authoring import entry_problems
    from adapterhub.client.index import bundled_index_path

    path = bundled_index_path()
    assert path is not None
    for name, raw in json.loads(path.read_text())["entries"].items():
        entry = IndexEntry.from_dict(raw)
        assert entry.name == name and entry.namespace == raw["namespace"]
        assert entry.to_dict() == raw
        assert entry_problems(entry.to_dict(), name) == []


def test_index_entry_keeps_extensions_and_fills_optional_fields():
    raw = {"schema_version": 1, "name": "ns/a", "namespace": "ns", "task": "t", "method": "lora",
           "base_model": {"repo_id": "o/m"}, "x-note": {"k": 1},
           "versions": {"1.0.0": {"source": {"type": "hf", "repo_id": "o/a", "revision": COMMIT},
                                  "files": [{"path": "a", "size": 1, "sha256": SHA}], "yanked": True,
                                  "yanked_reason": "bad"}}}
    entry = IndexEntry.from_dict(raw)
    assert entry.versions["1.0.0"].yanked and entry.versions["1.0.0"].files[0].expected_from == "index"
    out = entry.to_dict()
    assert out["x-note"] == {"k": 1} and out["versions"]["1.0.0"]["yanked_reason"] == "bad"
    assert out["subtask"] is None and out["base_model"] == {"repo_id": "o/m", "revision": None, "model_type": None}
    assert IndexEntry.from_dict(out) == entry


def test_install_record_round_trips(tmp_path):
    data = {
        "record_version": 1, "key": "hf/alice/lora-a", "commit": COMMIT,
        "files": [{"path": "a.json", "size": 3, "sha256": SHA}],
        "method": {"name": "lora", "plugin": "adapterhub.default_plugins.lora", "plugin-version": "0.1.0"},
        "names": [{"name": "sentiment/sst2", "version": "1.0.0"}], "revisions": ["", "v1"],
        "installed_by": "adapterhub 0.1.0", "installed_seq": 7,
        "source": {"type": "hf", "repo_id": "alice/lora-a", "revision": COMMIT}, "notes": ["n"],
    }
    record = InstallRecord.from_dict(data, tmp_path)
    assert record.to_dict() == data and record.directory == tmp_path
    assert record.display_name == "sentiment/sst2" and record.matches("alice/lora-a@v1")
    assert record.matches("sentiment/sst2@1.0.0") and not record.matches("sentiment/sst2@2.0.0")


def test_lock_files_written_before_the_redesign_still_load(tmp_path):
    """A lock as cli/install.py wrote it before the client records were typed."""
    text = (
        '# This file is generated by adapterhub. Do not edit by hand.\nversion = 1\ngenerated-by = "adapterhub 0.1.0"\n\n'
        '[[adapter]]\nrequested = "sentiment/sst2@1.0.0"\nname = "sentiment/sst2"\nversion = "1.0.0"\n\n'
        '[adapter.method]\nname = "lora"\nplugin = "adapterhub.default_plugins.lora"\nplugin-version = "0.1.0"\n\n'
        f'[adapter.source]\ntype = "hf"\nrepo-id = "alice/lora-a"\nrevision = "{COMMIT}"\n\n'
        f'[adapter.registry]\nurl = "bundled"\ndigest = "sha256:{SHA}"\n\n'
        f'[[adapter.files]]\npath = "adapter_config.json"\nsize = 10\nsha256 = "{SHA}"\n'
    )
    lock = tmp_path / "old.lock"
    lock.write_text(text)
    [entry] = read_lock(lock)
    assert entry.source.repo_id == "alice/lora-a" and entry.registry == LockRegistry("bundled", f"sha256:{SHA}")
    assert render([entry]) == text
    assert Path(lock).read_text() == text
