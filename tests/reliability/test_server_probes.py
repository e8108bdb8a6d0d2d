"""Reliability, server side: private repos probed by other users, directly and through another
repo's commit.

alice keeps a private repo with an LFS file and a regular file. bob (signed in) and an anonymous
client try every endpoint on it, under every spelling of its id, by branch, tag, full and short
commit id; each answer must be *exactly* the answer for a repo that never existed (status, error
code, message, body). Then bob tries to reach the private content through repos he may write: a
commit (and a pull request on alice's public repo) naming the LFS object by sha256 and size, a
branch, tag or parent at alice's commit, downloads through his repo at alice's commit, and the LFS
batch endpoint. Every try must be refused, and at the end no repo but alice's holds her content.

The default run tries each probe once (a few seconds); ``ADAPTERHUB_RELIABILITY_FULL=1`` repeats
them with more spellings. Every loop is bounded in count and time; all traffic stays on
127.0.0.1. It prints ``refused/tried`` and, with ``ADAPTERHUB_RELIABILITY_REPORT=FILE``, appends
the tally to FILE as a JSON line.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import time

import httpx2
import pytest

from adapterhub.server.testing import running_hub

pytestmark = pytest.mark.reliability

FULL = os.environ.get("ADAPTERHUB_RELIABILITY_FULL", "").strip().lower() in {"1", "true", "yes", "on"}
DEADLINE_S = 600 if FULL else 120
USERS = {"alice": "tok-alice-probe-1", "bob": "tok-bob-probe-2"}


class Tally:
    def __init__(self, case: str) -> None:
        self.case, self.tried, self.refused, self.failures = case, 0, 0, []
        self.started = time.monotonic()

    def record(self, refused: bool, what: str) -> None:
        self.tried += 1
        self.refused += refused
        if not refused:
            self.failures.append(what)

    def report(self) -> None:
        seconds = round(time.monotonic() - self.started, 1)
        print(f"\n{self.case}: refused {self.refused}/{self.tried} in {seconds} s")
        path = os.environ.get("ADAPTERHUB_RELIABILITY_REPORT")
        if path:
            with open(path, "a") as fh:
                fh.write(json.dumps({"case": self.case, "outcome": "refused", "ok": self.refused,
                                     "tried": self.tried, "seconds": seconds}) + "\n")


@pytest.fixture(scope="module")
def seeded(tmp_path_factory):
    from huggingface_hub import CommitOperationAdd, HfApi, constants

    previous = constants.HF_HUB_DISABLE_XET
    constants.HF_HUB_DISABLE_XET = True  # alice's weights go through git-LFS
    with running_hub(tmp_path_factory.mktemp("probes"), USERS) as hub:
        alice = HfApi(endpoint=hub.url, token=USERS["alice"])
        secret = os.urandom(4096)
        alice.create_repo("alice/Secret-LoRA", private=True)
        info = alice.create_commit("alice/Secret-LoRA", [
            CommitOperationAdd("adapter_model.safetensors", secret),
            CommitOperationAdd("adapter_config.json", b'{"secret": "config"}'),
        ], commit_message="release")
        alice.create_tag("alice/Secret-LoRA", tag="v1")
        alice.create_pull_request("alice/Secret-LoRA", title="internal")
        alice.create_repo("alice/open")
        yield hub, alice, secret, info.oid
    constants.HF_HUB_DISABLE_XET = previous


def _shape(resp: httpx2.Response) -> tuple:
    """What a client can observe, less what differs between any two requests (the request id)."""
    return resp.status_code, resp.headers.get("X-Error-Code"), resp.headers.get("X-Error-Message"), resp.content


def _requests(repo: str, commit: str) -> list[tuple[str, str, dict]]:
    """(method, path, options) of every endpoint, on ``repo`` (``ns/name``) at ``commit``."""
    lfs = {"operation": "upload", "objects": [{"oid": "ab" * 32, "size": 1}]}
    ndjson = b'{"key": "header", "value": {"summary": "x"}}'
    out = [("GET", f"/api/models/{repo}", {}), ("GET", f"/api/models/{repo}/auth-check", {}),
           ("GET", f"/api/models/{repo}/refs?include_prs=1", {}), ("GET", f"/api/models/{repo}/discussions", {}),
           ("GET", f"/api/models/{repo}/discussions/1", {}), ("GET", f"/api/models/{repo}/likers", {}),
           ("GET", f"/api/models/{repo}/lfs-files", {}),
           ("GET", f"/api/models/{repo}/user-access-request/pending", {}),
           ("POST", f"/api/models/{repo}/discussions", {"json": {"title": "t"}}),
           ("POST", f"/api/models/{repo}/discussions/1/comment", {"json": {"comment": "c"}}),
           ("POST", f"/api/models/{repo}/discussions/1/merge", {}),
           ("POST", f"/{repo}.git/info/lfs/objects/batch", {"json": lfs}),
           ("POST", f"/api/models/{repo}/preupload/main", {"json": {"files": []}}),
           ("POST", f"/api/models/{repo}/commit/main", {"content": ndjson}),
           ("POST", f"/api/models/{repo}/commit/main?create_pr=1", {"content": ndjson}),
           ("POST", f"/api/models/{repo}/duplicate", {"json": {"repository": "bob/copy"}}),
           ("POST", f"/api/models/{repo}/tag/main", {"json": {"tag": "x"}}),
           ("POST", f"/api/models/{repo}/branch/x", {"json": {}}),
           ("POST", f"/api/models/{repo}/super-squash/main", {"json": {}}),
           ("PUT", f"/api/models/{repo}/settings", {"json": {"visibility": "public"}}),
           ("POST", f"/api/models/{repo}/like", {}), ("POST", f"/{repo}/ask-access", {}),
           ("POST", "/api/repos/move", {"json": {"fromRepo": repo, "toRepo": "bob/moved", "type": "model"}}),
           ("DELETE", "/api/repos/delete", {"json": {"name": repo.split("/")[1], "organization": "alice"}})]
    for rev in ("main", "v1", "refs%2Fpr%2F1", commit, commit[:7]):
        out += [("GET", f"/api/models/{repo}/revision/{rev}", {}), ("GET", f"/api/models/{repo}/tree/{rev}", {}),
                ("GET", f"/api/models/{repo}/commits/{rev}", {}),
                ("POST", f"/api/models/{repo}/paths-info/{rev}", {"data": {"paths": "adapter_config.json"}}),
                ("HEAD", f"/{repo}/resolve/{rev}/adapter_model.safetensors", {}),
                ("GET", f"/{repo}/resolve/{rev}/adapter_config.json", {})]
    return out


def _spellings(name: str, count: int) -> list[str]:
    rng = random.Random(7)
    out = {name, name.lower(), name.upper()}
    while len(out) < count:
        out.add("".join(c.upper() if rng.random() < 0.5 else c.lower() for c in name))
    return sorted(out)[:count]


def test_private_repos_look_missing_to_everyone_else(seeded):
    hub, _, _, commit = seeded
    tally = Tally("private repo probed directly (bob, anonymous)")
    deadline = time.monotonic() + DEADLINE_S
    spellings = _spellings("alice/Secret-LoRA", 6 if FULL else 2)
    with httpx2.Client(base_url=hub.url, timeout=30) as client:
        for who, headers in (("bob", {"Authorization": f"Bearer {USERS['bob']}"}), ("anonymous", {})):
            for spelled in spellings:
                for (method, path, options), (_, ghost_path, _) in zip(
                    _requests(spelled, commit), _requests("alice/never-existed", commit)
                ):
                    if time.monotonic() > deadline:
                        tally.record(False, "deadline reached")
                        break
                    probe = client.request(method, path, headers=headers, **options)
                    ghost = client.request(method, ghost_path, headers=headers, **options)
                    same = _shape(probe) == _shape(ghost) and probe.status_code in (401, 404)
                    tally.record(same, f"{who} {method} {path}: {probe.status_code} vs {ghost.status_code}")
    tally.report()
    assert tally.refused == tally.tried, tally.failures[:10]


def test_another_repos_commit_cannot_reach_private_content(seeded):
    from huggingface_hub import HfApi

    hub, alice, secret, commit = seeded
    oid, size = hashlib.sha256(secret).hexdigest(), len(secret)
    bob = HfApi(endpoint=hub.url, token=USERS["bob"])
    bob.create_repo("bob/mine", exist_ok=True)
    tally = Tally("private content reached through another repo's commit")
    headers = {"Authorization": f"Bearer {USERS['bob']}"}
    lfs_line = {"key": "lfsFile", "value": {"path": "x.safetensors", "algo": "sha256", "oid": oid, "size": size}}
    lfs_no_size = {"key": "lfsFile", "value": {"path": "x.safetensors", "algo": "sha256", "oid": oid}}

    def commit_lines(repo: str, *lines: dict, query: str = "", parent: str | None = None) -> httpx2.Response:
        head = {"summary": "probe", **({"parentCommit": parent} if parent else {})}
        body = "\n".join(json.dumps(x) for x in [{"key": "header", "value": head}, *lines])
        return client.post(f"/api/models/{repo}/commit/main{query}", content=body.encode(), headers=headers)

    rounds = 5 if FULL else 1
    with httpx2.Client(base_url=hub.url, timeout=30) as client:
        for _ in range(rounds):
            for repo, query in (("bob/mine", ""), ("alice/open", "?create_pr=1")):
                for line in (lfs_line, lfs_no_size):
                    resp = commit_lines(repo, line, query=query)
                    tally.record(resp.status_code == 422, f"commit into {repo}{query}: {resp.status_code}")
            resp = commit_lines("bob/mine", parent=commit)
            tally.record(resp.status_code in (404, 412), f"parent at alice's commit: {resp.status_code}")
            for method, path, options in (
                ("POST", "/api/models/bob/mine/branch/from-alice", {"json": {"startingPoint": commit}}),
                ("POST", f"/api/models/bob/mine/tag/{commit}", {"json": {"tag": "from-alice"}}),
                ("POST", f"/api/models/bob/mine/tag/{commit[:7]}", {"json": {"tag": "from-alice"}}),
                ("GET", f"/api/models/bob/mine/revision/{commit}", {}),
                ("GET", f"/api/models/bob/mine/tree/{commit}", {}),
                ("HEAD", f"/bob/mine/resolve/{commit}/adapter_model.safetensors", {}),
                ("GET", "/bob/mine/resolve/main/adapter_model.safetensors", {}),
                ("POST", f"/api/models/bob/mine/paths-info/{commit}", {"data": {"paths": "adapter_model.safetensors"}}),
            ):
                resp = client.request(method, path, headers=headers, **options)
                tally.record(resp.status_code == 404, f"{method} {path}: {resp.status_code}")
            # The LFS batch on bob's repo asks him for the content, as for content that exists nowhere.
            batch = client.post("/bob/mine.git/info/lfs/objects/batch", headers=headers,
                                json={"operation": "upload", "objects": [{"oid": oid, "size": size}]}).json()
            actions = batch["objects"][0].get("actions", {})
            tally.record("upload" in actions, f"batch said the object is present: {batch}")
            verify = client.post(actions["verify"]["href"], headers=headers, json={"oid": oid, "size": size}) \
                if "verify" in actions else None
            tally.record(verify is not None and verify.status_code == 422, "verify without upload accepted")
        # Afterwards: no repo but alice's holds her content, and alice's repo did not move.
        leaked = []
        for repo in ("bob/mine", "alice/open"):
            for rev in [c.commit_id for c in bob.list_repo_commits(repo)]:
                for entry in bob.list_repo_tree(repo, revision=rev, recursive=True):
                    if getattr(entry, "lfs", None) and entry.lfs.sha256 == oid:
                        leaked.append(f"{repo}@{rev}")
        tally.record(not leaked, f"content reachable from {leaked}")
        tally.record(list(bob.get_repo_discussions("alice/open")) == [], "a pull request was opened")
        tally.record(alice.model_info("alice/Secret-LoRA").sha == commit, "alice's repo moved")
    tally.report()
    assert tally.refused == tally.tried, tally.failures[:10]
