"""Discussions and pull requests of the local Hub, with the permissions the Hub applies.

A pull request is a discussion with a ref of its own, ``refs/pr/N``, started at the head of its base
branch; commits go there (``create_pr=1`` on a commit opens one) and merging applies the PR's
changes onto the base branch in one commit, refusing when the base changed the same files since.
Anyone who can see a repo (and is signed in) may open discussions and pull requests, comment,
and push to the pull requests they opened; its writers may also push to any pull request, change
any title or status, and merge. Each discussion is one JSON file, ``<repo>/discussions/<num>.json``,
written under the repo's lock; events use the Hub's shapes (``comment``, ``status-change``,
``title-change``, ``commit``).
"""

from __future__ import annotations

import difflib
import html
import uuid
from pathlib import Path
from typing import Any

from flask import Request, Response

from .errors import HubError, forbidden
from .history import apply_operations, commit as write_commit
from .objects import AddFile, DeleteFile, Repo
from .routing import HubState, json_response, route
from .storage import HubStorage, now_iso, read_json, write_json

_PAGE = 50
_DEFAULT_BODY = "{kind} opened with the [huggingface_hub Python library](https://huggingface.co/docs/huggingface_hub)"


def _path(repo: Repo, num: int) -> Path:
    return repo.path / "discussions" / f"{int(num)}.json"


def load(storage: HubStorage, repo: Repo, num: int) -> dict[str, Any]:
    try:
        return read_json(_path(repo, num))
    except (FileNotFoundError, ValueError):
        raise HubError(404, f"Discussion #{num} not found in {repo.id}") from None


def _save(repo: Repo, discussion: dict[str, Any]) -> None:
    write_json(_path(repo, discussion["num"]), discussion)


def _event(kind: str, author: str, data: dict[str, Any]) -> dict[str, Any]:
    return {"id": uuid.uuid4().hex[:24], "type": kind, "createdAt": now_iso(), "author": author, "data": data}


def _comment(author: str, text: str) -> dict[str, Any]:
    latest = {"raw": text, "html": f"<p>{html.escape(text)}</p>", "updatedAt": now_iso(), "author": author}
    return _event("comment", author, {"edited": False, "hidden": False, "latest": latest, "history": [latest]})


def _event_json(event: dict[str, Any]) -> dict[str, Any]:
    out = dict(event, author={"name": event["author"], "fullname": event["author"], "type": "user"})
    if event["type"] == "comment":
        latest = dict(event["data"]["latest"], author={"name": event["data"]["latest"]["author"]})
        out["data"] = dict(event["data"], latest=latest, numEdits=len(event["data"]["history"]) - 1)
    return out


def create(
    storage: HubStorage, repo: Repo, author: str, title: str, description: str | None, *,
    pull_request: bool, base: str = "main",
) -> dict[str, Any]:
    """Open a discussion, or a pull request whose ``refs/pr/N`` starts at the head of ``base``."""
    title = (title or "").strip()
    if not title:
        raise HubError(400, "A discussion needs a title.")
    kind = "Pull Request" if pull_request else "Discussion"
    with storage.lock(repo):
        folder = repo.path / "discussions"
        folder.mkdir(exist_ok=True)
        num = 1 + max((int(p.stem) for p in folder.glob("*.json") if p.stem.isdigit()), default=0)
        discussion: dict[str, Any] = {
            "num": num, "title": title, "author": author, "isPullRequest": pull_request, "status": "open",
            "createdAt": now_iso(), "events": [_comment(author, (description or "").strip() or
                                                         _DEFAULT_BODY.format(kind=kind))],
        }
        if pull_request:
            refs = storage.refs(repo)
            if base not in refs["branches"]:
                raise HubError(404, f"Invalid rev id: {base}", "RevisionNotFound")
            discussion.update(base=base, baseCommit=refs["branches"][base], mergeCommitId=None)
            refs["pulls"][str(num)] = refs["branches"][base]
            storage.write_refs(repo, refs)
        _save(repo, discussion)
    return discussion


def discard(storage: HubStorage, repo: Repo, num: int) -> None:
    """Undo :func:`create` of a pull request whose first commit failed (all or nothing)."""
    with storage.lock(repo):
        refs = storage.refs(repo)
        refs["pulls"].pop(str(num), None)
        storage.write_refs(repo, refs)
        _path(repo, num).unlink(missing_ok=True)


def may_push(state: HubState, repo: Repo, user: str, num: int) -> None:
    """Pushing to ``refs/pr/N``: its author or a writer of the repo, while it is open."""
    discussion = load(state.storage, repo, num)
    if not discussion["isPullRequest"]:
        raise HubError(400, f"#{num} is a discussion, not a pull request.")
    if discussion["status"] not in ("open", "draft"):
        raise HubError(400, f"Pull request #{num} is {discussion['status']}: reopen it to push to it.")
    if discussion["author"].lower() != user.lower() and not state.auth.can_write(user, repo.namespace):
        raise forbidden(f"Only the author of #{num} or a writer of {repo.id} can push to refs/pr/{num}.")


def record_commit(storage: HubStorage, repo: Repo, num: int, author: str, title: str, oid: str) -> None:
    with storage.lock(repo):
        discussion = load(storage, repo, num)
        discussion["events"].append(_event("commit", author, {"subject": title, "oid": oid}))
        _save(repo, discussion)


def _diff(storage: HubStorage, repo: Repo, discussion: dict[str, Any]) -> str:
    start = storage.read_commit(repo, discussion["baseCommit"])
    tip = storage.resolve(repo, f"refs/pr/{discussion['num']}")
    out = []
    for path in sorted(set(start.files) | set(tip.files)):
        old, new = start.files.get(path), tip.files.get(path)
        if old == new:
            continue
        out.append(f"diff --git a/{path} b/{path}")
        texts = []
        for entry in (old, new):
            data = storage.blobs.path(entry.sha256).read_bytes() if entry and entry.size < (1 << 20) else b""
            try:
                texts.append(data.decode("utf-8").splitlines(keepends=True))
            except UnicodeDecodeError:
                texts.append(None)
        if None in texts or any(e is not None and e.size >= (1 << 20) for e in (old, new)):
            out.append(f"Binary files a/{path} and b/{path} differ\n")
        else:
            out.extend(difflib.unified_diff(texts[0], texts[1], f"a/{path}", f"b/{path}"))
    return "\n".join(line.rstrip("\n") for line in out) + ("\n" if out else "")


def details_json(state: HubState, repo: Repo, discussion: dict[str, Any], *, diff: bool = False) -> dict[str, Any]:
    out = summary_json(repo, discussion)
    out["events"] = [_event_json(e) for e in discussion["events"]]
    if discussion["isPullRequest"]:
        out["changes"] = {"base": f"refs/heads/{discussion['base']}"}
        if discussion.get("mergeCommitId"):
            out["changes"]["mergeCommitId"] = discussion["mergeCommitId"]
        out["filesWithConflicts"] = discussion.get("filesWithConflicts", [])
        if diff:
            out["diff"] = _diff(state.storage, repo, discussion)
    return out


def summary_json(repo: Repo, discussion: dict[str, Any]) -> dict[str, Any]:
    return {
        "num": discussion["num"], "title": discussion["title"], "status": discussion["status"],
        "createdAt": discussion["createdAt"], "isPullRequest": discussion["isPullRequest"],
        "author": {"name": discussion["author"], "type": "user"},
        "repo": {"name": repo.id, "type": repo.singular_type},
        "numComments": sum(1 for e in discussion["events"] if e["type"] == "comment"),
        "pinned": False,
    }


def _repo_for(state: HubState, req: Request, T: str, ns: str, name: str) -> tuple[Repo, str]:
    """The repo (which the caller must see) and the signed-in caller."""
    user = state.require_user(req)
    return state.readable_repo(req, T, f"{ns}/{name}"), user


def _discussion_num(num: str) -> int:
    if not num.isdigit() or int(num) <= 0:
        raise HubError(400, f"Invalid discussion number {num!r}.")
    return int(num)


# --- endpoints -------------------------------------------------------------------------------


@route("GET", "api/{T}/{ns}/{name}/discussions")
def list_discussions(state: HubState, req: Request, T: str, ns: str, name: str) -> Response:
    repo = state.readable_repo(req, T, f"{ns}/{name}")
    kind, status = req.args.get("type", "all"), req.args.get("status", "all")
    author = (req.args.get("author") or "").lower()
    items = []
    for path in (repo.path / "discussions").glob("*.json"):
        d = read_json(path)
        if kind == "pull_request" and not d["isPullRequest"] or kind == "discussion" and d["isPullRequest"]:
            continue
        if status == "open" and d["status"] not in ("open", "draft") or status == "closed" and d["status"] in (
            "open", "draft"):
            continue
        if author and d["author"].lower() != author:
            continue
        items.append(d)
    items.sort(key=lambda d: -d["num"])
    page = int(req.args.get("p", 0) or 0)
    chosen = items[page * _PAGE : (page + 1) * _PAGE]
    return json_response({"discussions": [summary_json(repo, d) for d in chosen], "count": len(items),
                          "start": page * _PAGE, "numClosedDiscussions": sum(
                              1 for d in items if d["status"] not in ("open", "draft"))})


@route("POST", "api/{T}/{ns}/{name}/discussions")
def create_discussion(state: HubState, req: Request, T: str, ns: str, name: str) -> Response:
    repo, user = _repo_for(state, req, T, ns, name)
    payload = req.get_json(silent=True, force=True) or {}
    discussion = create(state.storage, repo, user, str(payload.get("title") or ""), payload.get("description"),
                        pull_request=bool(payload.get("pullRequest")))
    return json_response({"num": discussion["num"], "url": f"{state.repo_url(req, T, repo.id)}/discussions/"
                                                           f"{discussion['num']}"})


@route("GET", "api/{T}/{ns}/{name}/discussions/{num}")
def get_discussion(state: HubState, req: Request, T: str, ns: str, name: str, num: str) -> Response:
    repo = state.readable_repo(req, T, f"{ns}/{name}")
    discussion = load(state.storage, repo, _discussion_num(num))
    return json_response(details_json(state, repo, discussion, diff=req.args.get("diff") in ("1", "true")))


def _change(state: HubState, req: Request, T: str, ns: str, name: str, num: str, *, owner_or_writer: bool):
    repo, user = _repo_for(state, req, T, ns, name)
    number = _discussion_num(num)
    discussion = load(state.storage, repo, number)
    if owner_or_writer and discussion["author"].lower() != user.lower() and not state.auth.can_write(
            user, repo.namespace):
        raise forbidden(f"Only the author of #{number} or a writer of {repo.id} can do that.")
    return repo, user, number, req.get_json(silent=True, force=True) or {}


@route("POST", "api/{T}/{ns}/{name}/discussions/{num}/comment")
def comment(state: HubState, req: Request, T: str, ns: str, name: str, num: str) -> Response:
    repo, user, number, payload = _change(state, req, T, ns, name, num, owner_or_writer=False)
    text = str(payload.get("comment") or "").strip()
    if not text:
        raise HubError(400, "A comment cannot be empty.")
    with state.storage.lock(repo):
        discussion = load(state.storage, repo, number)
        event = _comment(user, text)
        discussion["events"].append(event)
        _save(repo, discussion)
    return json_response({"newMessage": _event_json(event)})


@route("POST", "api/{T}/{ns}/{name}/discussions/{num}/title")
def rename(state: HubState, req: Request, T: str, ns: str, name: str, num: str) -> Response:
    repo, user, number, payload = _change(state, req, T, ns, name, num, owner_or_writer=True)
    title = str(payload.get("title") or "").strip()
    if not title:
        raise HubError(400, "A discussion needs a title.")
    with state.storage.lock(repo):
        discussion = load(state.storage, repo, number)
        event = _event("title-change", user, {"from": discussion["title"], "to": title})
        discussion["title"] = title
        discussion["events"].append(event)
        _save(repo, discussion)
    return json_response({"newTitle": _event_json(event)})


@route("POST", "api/{T}/{ns}/{name}/discussions/{num}/status")
def change_status(state: HubState, req: Request, T: str, ns: str, name: str, num: str) -> Response:
    repo, user, number, payload = _change(state, req, T, ns, name, num, owner_or_writer=True)
    status = payload.get("status")
    if status not in ("open", "closed"):
        raise HubError(400, f"Invalid status {status!r}: 'open' or 'closed'.")
    with state.storage.lock(repo):
        discussion = load(state.storage, repo, number)
        if discussion["status"] == "merged":
            raise HubError(400, f"Pull request #{number} is merged; its status cannot change.")
        if payload.get("comment"):
            discussion["events"].append(_comment(user, str(payload["comment"]).strip()))
        event = _event("status-change", user, {"status": status})
        discussion["status"] = status
        discussion["events"].append(event)
        _save(repo, discussion)
    return json_response({"newStatus": _event_json(event)})


def _find_comment(discussion: dict[str, Any], comment_id: str) -> dict[str, Any]:
    for event in discussion["events"]:
        if event["id"] == comment_id and event["type"] == "comment":
            return event
    raise HubError(404, f"Comment {comment_id} not found in #{discussion['num']}.")


@route("POST", "api/{T}/{ns}/{name}/discussions/{num}/comment/{cid}/edit")
@route("POST", "api/{T}/{ns}/{name}/discussions/{num}/comment/{cid}/hide")
def edit_comment(state: HubState, req: Request, T: str, ns: str, name: str, num: str, cid: str) -> Response:
    repo, user, number, payload = _change(state, req, T, ns, name, num, owner_or_writer=False)
    hide = req.path.rstrip("/").endswith("/hide")
    with state.storage.lock(repo):
        discussion = load(state.storage, repo, number)
        event = _find_comment(discussion, cid)
        is_author = event["author"].lower() == user.lower()
        if not (is_author if not hide else is_author or state.auth.can_write(user, repo.namespace)):
            raise forbidden("Only the author of a comment can edit it; writers can also hide it.")
        if hide:
            event["data"]["hidden"] = True
        else:
            text = str(payload.get("content") or "").strip()
            latest = {"raw": text, "html": f"<p>{html.escape(text)}</p>", "updatedAt": now_iso(), "author": user}
            event["data"].update(edited=True, latest=latest)
            event["data"]["history"].insert(0, latest)
        _save(repo, discussion)
    return json_response({"updatedComment": _event_json(event)})


@route("POST", "api/{T}/{ns}/{name}/discussions/{num}/merge")
def merge(state: HubState, req: Request, T: str, ns: str, name: str, num: str) -> Response:
    repo, user = state.writable_repo(req, T, f"{ns}/{name}")
    number = _discussion_num(num)
    storage = state.storage
    discussion = load(storage, repo, number)
    if not discussion["isPullRequest"]:
        raise HubError(400, f"#{number} is a discussion, not a pull request.")
    if discussion["status"] != "open":
        raise HubError(400, f"Pull request #{number} is {discussion['status']}; only open pull requests merge.")
    start = storage.read_commit(repo, discussion["baseCommit"])
    tip = storage.resolve(repo, f"refs/pr/{number}")
    head = storage.resolve(repo, discussion["base"])
    changed = {p for p in set(start.files) | set(tip.files) if start.files.get(p) != tip.files.get(p)}
    conflicts = sorted(p for p in changed if head.files.get(p) not in (start.files.get(p), tip.files.get(p)))
    if conflicts:
        raise HubError(409, f"Pull request #{number} conflicts with {discussion['base']} on: {', '.join(conflicts)}",
                       body={"filesWithConflicts": conflicts})
    ops = [AddFile(p, tip.files[p], via_lfs=tip.files[p].lfs) if p in tip.files else DeleteFile(p)
           for p in sorted(changed) if head.files.get(p) != tip.files.get(p)]
    apply_operations(head.files, ops)  # raises before anything is written if a deletion misses
    merged = write_commit(storage, repo, discussion["base"], ops, title=discussion["title"],
                          message=str((req.get_json(silent=True, force=True) or {}).get("comment") or ""),
                          author=user, parent_commit=head.id, lfs_threshold=state.lfs_threshold)
    with storage.lock(repo):
        discussion = load(storage, repo, number)
        discussion.update(status="merged", mergeCommitId=merged.id)
        discussion["events"].append(_event("status-change", user, {"status": "merged"}))
        _save(repo, discussion)
    return json_response({"mergeCommitId": merged.id})
