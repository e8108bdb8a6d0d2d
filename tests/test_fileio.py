"""Atomic writes give files the mode a plain open() would (0o666 less the umask), not the 0o600 of
their temp file: lock, index, entry and manifest files, store records and blobs, and the local Hub's
files stay readable by a team that shares a filesystem as far as its umask says."""

from __future__ import annotations

import contextlib
import json
import os
import stat

import pytest

from adapterhub.fileio import atomic_write_bytes, atomic_write_text, current_umask


@contextlib.contextmanager
def umask(mask: int):
    old = os.umask(mask)
    try:
        yield
    finally:
        os.umask(old)


def _mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


@pytest.mark.parametrize("mask", [0o022, 0o002, 0o027, 0o077])
def test_atomic_writes_honour_the_umask(tmp_path, mask):
    with umask(mask):
        assert current_umask() == mask
        text = atomic_write_text(tmp_path / "a" / "lock.toml", "x = 1\n", fsync=True)
        binary = atomic_write_bytes(tmp_path / "b.bin", b"\0")
        with open(tmp_path / "plain.txt", "w") as fh:  # the reference: what open() does
            fh.write("x")
    assert _mode(text) == _mode(binary) == _mode(tmp_path / "plain.txt") == 0o666 & ~mask
    assert [p.name for p in tmp_path.rglob(".*.tmp")] == []


def test_an_explicit_mode_wins(tmp_path):
    with umask(0o022):
        assert _mode(atomic_write_text(tmp_path / "secret", "s", mode=0o600)) == 0o600


def test_an_overwritten_file_gets_the_current_mode(tmp_path):
    target = tmp_path / "index.json"
    with umask(0o077):
        atomic_write_text(target, "{}")
    with umask(0o022):
        atomic_write_text(target, "{}\n")
    assert _mode(target) == 0o644 and target.read_text() == "{}\n"


def test_index_entries_lock_records_and_blobs_under_a_team_umask(tmp_path):
    from adapterhub.client.hashing import sha256_file
    from adapterhub.client.store import Store
    from adapterhub.testing import run_cli

    entry = {
        "schema_version": 1, "name": "team/x", "namespace": "team", "task": "t", "method": "lora",
        "license": None, "description": "", "tags": [],
        "base_model": {"repo_id": "o/m", "revision": None, "model_type": "bert"},
        "versions": {"1.0.0": {"source": {"type": "hf", "repo_id": "team/x", "tag": None, "revision": "a" * 40},
                               "files": [{"path": "adapter_config.json", "size": 2, "sha256": "b" * 64}]}},
    }
    (tmp_path / "entry.json").write_text(json.dumps(entry))
    with umask(0o007):  # group-shared: rw for the group, nothing for others
        assert run_cli("index", "add", str(tmp_path / "entry.json"), str(tmp_path / "index")).exit_code == 0
        store = Store(tmp_path / "store")
        download = tmp_path / "download"
        download.write_bytes(b"weights")
        blob = store.add_blob(download, sha256_file(download))
    assert _mode(tmp_path / "index" / "team" / "x.json") == _mode(tmp_path / "index" / "index.json") == 0o660
    assert _mode(blob) == 0o440  # blobs are read-only, for the group too
