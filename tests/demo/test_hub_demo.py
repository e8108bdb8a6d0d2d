"""``adapterhub hub serve --demo``: a Hub seeded with the demo releases the bundled index pins, so
``HF_ENDPOINT=URL adapterhub install NAME`` works against it from another shell, by name."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from adapterhub.demo.tasks import DEMO_TASKS

from demo_helpers import bundled_entry, serve_demo_hub

pytestmark = pytest.mark.slow

DEMO_TOKEN = "demo-publisher-secret-7f3a9c"  # given for the demo user, so we can check it never shows


def _install(url: str, home: Path, lock: Path) -> dict:
    env = {**os.environ, "HF_ENDPOINT": url, "ADAPTERHUB_HOME": str(home)}
    env.pop("ADAPTERHUB_INDEX", None)  # the bundled index, as a user gets it
    proc = subprocess.run(
        [sys.executable, "-m", "adapterhub", "install", *[t.name for t in DEMO_TASKS], "--lock", str(lock), "--json"],
        capture_output=True, text=True, env=env, timeout=180, stdin=subprocess.DEVNULL,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout)


def _repo_state(url: str) -> dict:
    from huggingface_hub import HfApi

    api = HfApi(endpoint=url)
    return {
        t.repo_id: ([c.commit_id for c in api.list_repo_commits(t.repo_id)],
                    [(r.name, r.target_commit) for r in api.list_repo_refs(t.repo_id).tags])
        for t in DEMO_TASKS
    }


def test_install_by_name_against_a_demo_hub_and_restart_is_a_noop(tmp_path):
    root = tmp_path / "hub"
    # A user's offline switch must not stop the server from publishing to itself.
    with serve_demo_hub(root, "--quiet", env={"HF_HUB_OFFLINE": "1"}) as hub:
        assert hub.url.startswith("http://127.0.0.1:")
        # Nothing on stdout before the ready line: it comes once the adapters are published.
        assert hub.stdout_lines == [f"Serving on {hub.url}\n"]
        result = _install(hub.url, tmp_path / "store", tmp_path / "x.lock")
        state = _repo_state(hub.url)
        stderr = hub.stderr()
    assert f"HF_ENDPOINT={hub.url} adapterhub install sentiment/minilm-vader emotion/minilm-nrc" in stderr

    lock = tomllib.loads((tmp_path / "x.lock").read_text(encoding="utf-8"))
    locked = {a["name"]: a for a in lock["adapter"]}
    installed = {i["name"]: i for i in result["installed"]}
    assert set(locked) == set(installed) == {t.name for t in DEMO_TASKS}
    for task in DEMO_TASKS:
        release = bundled_entry(task.name)["versions"]["1.0.0"]
        assert locked[task.name]["source"]["repo-id"] == task.repo_id
        assert locked[task.name]["source"]["revision"] == release["source"]["revision"]
        # Every installed file hashes (independently of adapterhub) to what the bundled index lists.
        folder = Path(installed[task.name]["path"])
        on_disk = {
            p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in folder.rglob("*") if p.is_file()
        }
        assert {f["path"]: f["sha256"] for f in release["files"]}.items() <= on_disk.items()
        # The tag points at the pinned commit, which sits on top of the repo's initial commit.
        commits, tags = state[task.repo_id]
        assert tags == [("v1.0.0", release["source"]["revision"])]
        assert commits[0] == release["source"]["revision"] and len(commits) == 2

    # Restart on the same root, now with a token given for the demo user: publishing is a no-op.
    users = {"ADAPTERHUB_HUB_USERS": f"adapterhub-demo:{DEMO_TOKEN}"}
    with serve_demo_hub(root, env=users) as again:
        assert _repo_state(again.url) == state
        stderr = again.stderr()
    assert "Demo adapter sentiment/minilm-vader 1.0.0" in stderr
    assert DEMO_TOKEN not in stderr and DEMO_TOKEN not in "".join(again.stdout_lines)


def test_json_ready_line_lists_the_published_releases(tmp_path):
    with serve_demo_hub(tmp_path / "hub", "--quiet", "--json", ready_prefix="{") as hub:
        line = json.loads(hub.stdout_lines[-1])
    assert line["url"] == hub.url
    assert {(d["name"], d["revision"]) for d in line["demo"]} == {
        (t.name, bundled_entry(t.name)["versions"]["1.0.0"]["source"]["revision"]) for t in DEMO_TASKS
    }


def test_the_lfs_threshold_does_not_change_the_pinned_commits(tmp_path):
    """Commit ids hash file contents, not how the Hub stores them: a Hub that stores every file
    through git-LFS serves exactly the releases the bundled index pins."""
    with serve_demo_hub(tmp_path / "hub", "--quiet", "--lfs-threshold", "1000") as hub:
        state = _repo_state(hub.url)
    for task in DEMO_TASKS:
        assert state[task.repo_id][1] == [("v1.0.0", bundled_entry(task.name)["versions"]["1.0.0"]["source"]["revision"])]


def test_refuses_to_serve_releases_the_bundled_index_does_not_pin(tmp_path):
    # A demo repo someone else created earlier has another history, so the release's commit cannot
    # be the pinned one: installing by name could not work, and the server says so instead of serving.
    from adapterhub.server.storage import HubStorage

    HubStorage(tmp_path / "hub").create_repo("models", DEMO_TASKS[0].repo_id, private=False, author="someone-else")
    proc = subprocess.run(
        [sys.executable, "-m", "adapterhub", "hub", "serve", "--root", str(tmp_path / "hub"), "--port", "0",
         "--demo", "--quiet"],
        capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL,
    )
    assert proc.returncode == 1
    assert proc.stdout == ""  # never announced
    assert "the bundled index pins" in proc.stderr and DEMO_TASKS[0].name in proc.stderr
