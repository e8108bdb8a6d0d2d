"""Gated repos and their access requests, and likes.

A gated repo (``gated: "auto"`` or ``"manual"`` in its settings) shows its metadata to everyone
who may see it, but its files only to its namespace's members and to users whose access request
was accepted; others get ``403 GatedRepo``. Users ask for access with ``POST /{repo}/ask-access``
(the Hub's form; ``curl -X POST -H "Authorization: Bearer $HF_TOKEN" $HF_ENDPOINT/alice/x/ask-access``):
``auto`` accepts at once, ``manual`` waits for an admin, who lists, accepts, rejects, cancels or
grants requests with huggingface_hub's ``*_access_request`` / ``grant_access`` calls. Requests
live in ``<repo>/access.json``, likes in ``<repo>/likes.json``.
"""

from __future__ import annotations

import uuid
from typing import Any

from flask import Request, Response

from .errors import HubError
from .names import REPO_TYPES, name_key
from .objects import Repo
from .read_api import paginate
from .routing import HubState, json_response, route
from .storage import HubStorage, now_iso, read_json, write_json
from .write_api import json_body

_STATUSES = ("pending", "accepted", "rejected")


def _set(storage: HubStorage, repo: Repo, user: str, status: str, *, new_ok: bool, expect: tuple[str, ...],
         reason: str | None = None) -> None:
    with storage.lock(repo):
        table = storage.access_requests(repo)
        current = table.get(name_key(user))
        if current is None and not new_ok:
            raise HubError(404, f"No access request from {user} on {repo.id}.")
        if current is not None and current["status"] not in expect:
            raise HubError(400, f"The access request of {user} on {repo.id} is already {current['status']}.")
        entry = current or {"user": user, "requestId": uuid.uuid4().hex[:24]}
        entry.update(status=status, timestamp=now_iso())
        if reason is not None:
            entry["rejectionReason"] = reason
        table[name_key(user)] = entry
        write_json(repo.path / "access.json", table)


def _gated_admin_repo(state: HubState, req: Request, T: str, ns: str, name: str) -> Repo:
    repo, _ = state.admin_repo(req, T, f"{ns}/{name}")
    if not repo.gated:
        raise HubError(400, f"{repo.id} is not gated: set gated to 'auto' or 'manual' in its settings first.")
    return repo


@route("GET", "api/{T}/{ns}/{name}/user-access-request/{status}")
def list_requests(state: HubState, req: Request, T: str, ns: str, name: str, status: str) -> Response:
    repo = _gated_admin_repo(state, req, T, ns, name)
    if status not in _STATUSES:
        raise HubError(400, f"Unknown status {status!r}: one of {', '.join(_STATUSES)}.")
    items = []
    for entry in state.storage.access_requests(repo).values():
        if entry["status"] == status:
            account = state.auth.account(entry["user"])
            user = {"user": entry["user"], "fullname": account.fullname if account else entry["user"]}
            items.append({"user": user, "requestId": entry["requestId"], "status": status,
                          "timestamp": entry["timestamp"]})
    return paginate(req, state, items, f"/api/{T}/{ns}/{name}/user-access-request/{status}")


@route("POST", "api/{T}/{ns}/{name}/user-access-request/handle")
def handle_request(state: HubState, req: Request, T: str, ns: str, name: str) -> Response:
    repo = _gated_admin_repo(state, req, T, ns, name)
    payload = json_body(req)
    user = payload.get("user")
    if user is None:
        by_id = {e["requestId"]: e["user"] for e in state.storage.access_requests(repo).values()}
        user = by_id.get(str(payload.get("requestId")))
        if user is None:
            raise HubError(404, f"No access request {payload.get('requestId')!r} on {repo.id}.")
    status = payload.get("status")
    if status not in _STATUSES:
        raise HubError(400, f"Unknown status {status!r}: one of {', '.join(_STATUSES)}.")
    others = tuple(s for s in _STATUSES if s != status)
    _set(state.storage, repo, str(user), status, new_ok=False, expect=others, reason=payload.get("rejectionReason"))
    return json_response({})


@route("POST", "api/{T}/{ns}/{name}/user-access-request/grant")
def grant(state: HubState, req: Request, T: str, ns: str, name: str) -> Response:
    repo = _gated_admin_repo(state, req, T, ns, name)
    user = str(json_body(req).get("user") or "")
    if state.auth.account(user) is None:
        raise HubError(404, f"User {user!r} does not exist on this Hub.")
    _set(state.storage, repo, user, "accepted", new_ok=True, expect=("pending", "rejected"))
    return json_response({})


@route("POST", "{ns}/{name}/ask-access")
@route("POST", "{pfx}/{ns}/{name}/ask-access")
def ask_access(state: HubState, req: Request, ns: str, name: str, pfx: str = "models") -> Response:
    user = state.require_user(req)
    repo = state.readable_repo(req, pfx, f"{ns}/{name}")
    if not repo.gated:
        raise HubError(400, f"{repo.id} is not gated: its files are open to everyone who can see it.")
    status = "accepted" if repo.gated == "auto" else "pending"
    _set(state.storage, repo, user, status, new_ok=True, expect=("rejected",) if status == "pending" else _STATUSES)
    return json_response({"status": status})


# --- likes -----------------------------------------------------------------------------------


def _likes(repo: Repo) -> dict[str, str]:
    path = repo.path / "likes.json"
    return read_json(path) if path.is_file() else {}


@route("POST DELETE", "api/{T}/{ns}/{name}/like")
def like(state: HubState, req: Request, T: str, ns: str, name: str) -> Response:
    user = state.require_user(req)
    repo = state.readable_repo(req, T, f"{ns}/{name}")
    with state.storage.lock(repo):
        likes = _likes(repo)
        if req.method == "DELETE":
            likes.pop(name_key(user), None)
        else:
            likes.setdefault(name_key(user), now_iso())
        write_json(repo.path / "likes.json", likes)
    return json_response({})


@route("GET", "api/{T}/{ns}/{name}/likers")
def likers(state: HubState, req: Request, T: str, ns: str, name: str) -> Response:
    repo = state.readable_repo(req, T, f"{ns}/{name}")
    items = []
    for key in sorted(_likes(repo)):
        account = state.auth.account(key)
        items.append({"user": account.name if account else key, "fullname": account.fullname if account else key,
                      "avatarUrl": ""})
    return paginate(req, state, items, f"/api/{T}/{ns}/{name}/likers")


@route("GET", "api/users/{user}/likes")
def user_likes(state: HubState, req: Request, user: str) -> Response:
    if state.auth.account(user) is None:
        raise HubError(404, f"User {user!r} not found.")
    items = []
    for repo_type in REPO_TYPES:
        for repo in state.storage.list_repos(repo_type):
            when = _likes(repo).get(name_key(user))
            if when and state.may_see(req, repo):
                items.append({"createdAt": when, "repo": {"name": repo.id, "type": repo.singular_type}})
    return paginate(req, state, items, f"/api/users/{user}/likes")
