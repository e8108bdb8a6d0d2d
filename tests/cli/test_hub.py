"""``adapterhub hub serve`` refuses accounts it could not serve before it starts, and ``adapterhub hub
gc`` removes what no repo references (:mod:`adapterhub.cli.hub`)."""

from __future__ import annotations

import json
import os
import time

import pytest

from adapterhub.server.history import commit
from adapterhub.server.objects import AddFile
from adapterhub.server.storage import HubStorage
from adapterhub.testing import run_cli


@pytest.mark.parametrize(
    ("args", "env", "message"),
    [
        (["--user", "-alice:tok"], {}, "invalid user name '-alice'"),
        (["--user", "a--b:tok"], {}, "invalid user name 'a--b'"),
        (["--user", "alice:t1", "--user", "ALICE:t2"], {}, None),  # the later spec wins, as for one name
        (["--user", "alice:tok", "--org", "team:bob"], {}, "member 'bob' is not a user"),
        (["--user", "alice:tok", "--org", "alice:alice"], {}, "name of a user"),
        (["--user", "alice:tok"], {"ADAPTERHUB_HUB_ORGS": "team:alice=owner"}, "role 'owner'"),
        (["--user", "alice:tok"], {"ADAPTERHUB_HUB_USERS": "bob:tok"}, "share a token"),
    ],
)
def test_serve_checks_users_and_organisations_before_starting(tmp_path, args, env, message):
    result = run_cli("hub", "serve", "--root", str(tmp_path / "hub"), "--port", "1", *args,
                     env={"ADAPTERHUB_HUB_USERS": "", "ADAPTERHUB_HUB_ORGS": "", **env})
    if message is None:
        assert result.exit_code == 2 and "given twice" in result.stderr
        return
    assert result.exit_code == 2, result.stderr
    assert message in result.stderr
    assert "tok" not in result.stderr.replace("TOKEN", "").replace("token", "")  # tokens are not echoed


def test_serve_refuses_a_broken_config_file(tmp_path):
    config = tmp_path / "hub.toml"
    config.write_text("[users.alice]\nfullname = 'no token'\n")
    result = run_cli("hub", "serve", "--root", str(tmp_path / "hub"), "--config", str(config))
    assert result.exit_code == 2 and "user 'alice' has no token" in result.stderr


def test_gc_removes_unreferenced_contents(tmp_path):
    storage = HubStorage(tmp_path / "hub")
    repo = storage.create_repo("models", "alice/gone", private=False, author="alice")
    sha = commit(storage, repo, "main", [AddFile("w.bin", storage.blobs.put_bytes(b"weights"))], title="t",
                 message="", author="alice").files["w.bin"].sha256
    keep = storage.create_repo("models", "alice/kept", private=False, author="alice")
    storage.delete_repo(repo)
    old = time.time() - 7200
    os.utime(storage.blobs.path(sha), (old, old))

    dry = run_cli("hub", "gc", "--root", str(storage.root), "--dry-run", "--json")
    assert dry.exit_code == 0 and json.loads(dry.stdout)["blobs_removed"] == 1 and storage.blobs.has(sha)
    done = run_cli("hub", "gc", "--root", str(storage.root))
    assert done.exit_code == 0 and "deleted 1 unreferenced blob(s) (7 bytes)" in done.stdout
    assert not storage.blobs.has(sha)
    assert storage.resolve(keep, "main").files[".gitattributes"].size > 0
    assert storage.blobs.has(storage.resolve(keep, "main").files[".gitattributes"].sha256)
    missing = run_cli("hub", "gc", "--root", str(tmp_path / "nowhere"))
    assert missing.exit_code == 2
