"""Write endpoints of the local Hub: repos (create, delete, move, duplicate, settings), preupload,
NDJSON commits (to branches and pull requests, or opening one with ``create_pr``), branches, tags
and super-squash. LFS transfers are in :mod:`.lfs`, discussions in :mod:`.prs`."""

from __future__ import annotations

import base64
import binascii
import json
import shutil
from pathlib import Path
from typing import Any

from flask import Request, Response

from . import prs
from .blobs import OWNED_DIR, mark_owned, owns
from .errors import HubError, forbidden, revision_not_found
from .history import commit as write_commit
from .history import lfs_rule, super_squash, writable_ref
from .names import TYPE_PLURAL, check_name, check_repo_path, pr_number
from .objects import GATED_VALUES, AddFile, DeleteFile, DeleteFolder, Operation, TreeEntry
from .patterns import GitIgnore
from .routing import HubState, json_response, route
from .storage import write_json

#: JSON request bodies (repo settings, preupload lists, LFS batches) are small; commits stream.
_MAX_JSON_BYTES = 16 << 20


def json_body(req: Request) -> dict[str, Any]:
    req.max_content_length = min(req.max_content_length or _MAX_JSON_BYTES, _MAX_JSON_BYTES)
    data = req.get_json(silent=True, force=True)
    if not isinstance(data, dict):
        raise HubError(400, "Expected a JSON object as the request body.")
    return data


def _repo_type(value: Any) -> str:
    try:
        return TYPE_PLURAL[value]
    except (KeyError, TypeError):
        raise HubError(400, f"Unknown repo type {value!r}.") from None


def _repo_id(payload: dict[str, Any], user: str) -> str:
    name = str(payload.get("name") or "")
    org = payload.get("organization")
    if "/" in name and not org:
        org, name = name.split("/", 1)
    ns = org or user
    check_name(ns, "namespace")
    check_name(name, "repo name")
    return f"{ns}/{name}"


def _truthy(value: str | None) -> bool:
    return (value or "").lower() in ("1", "true", "yes")


# --- repos -----------------------------------------------------------------------------------


@route("POST", "api/repos/create")
def create_repo(state: HubState, req: Request) -> Response:
    user = state.require_user(req)
    payload = json_body(req)
    repo_type = _repo_type(payload.get("type"))
    repo_id = _repo_id(payload, user)
    ns = repo_id.split("/")[0]
    url = state.repo_url(req, repo_type, repo_id)
    if not state.auth.can_write(user, ns):
        if state.auth.account(ns) is None and state.auth.org(ns) is None:
            raise HubError(404, f"Namespace {ns!r} does not exist: it is neither a user nor an organisation here.")
        raise forbidden(f"You don't have the rights to create a repo under the namespace {ns!r}.")
    org = state.auth.org(ns)
    visibility = payload.get("visibility")
    if visibility is None and "private" in payload:
        visibility = "private" if payload["private"] else "public"
    private = visibility == "private" if visibility is not None else bool(org and org.private_by_default)
    files = {}
    if repo_type == "spaces":  # a Space has a card from the start, as on the Hub
        card = f"---\ntitle: {repo_id.split('/')[1]}\nsdk: {payload.get('sdk') or 'static'}\npinned: false\n---\n"
        files["README.md"] = card.encode()
    try:
        repo = state.storage.create_repo(repo_type, repo_id, private=private, author=user, files=files)
    except HubError as err:
        if err.status == 409:
            err.body["url"] = state.repo_url(req, repo_type, state.storage.get_repo(repo_type, repo_id).id)
        raise
    url = state.repo_url(req, repo_type, repo.id)
    return json_response({"url": url, "name": repo.id, "id": repo.id})


@route("DELETE", "api/repos/delete")
def delete_repo(state: HubState, req: Request) -> Response:
    user = state.require_user(req)
    payload = json_body(req)
    repo, _ = state.admin_repo(req, _repo_type(payload.get("type")), _repo_id(payload, user))
    state.storage.delete_repo(repo)
    return json_response({})


@route("POST", "api/repos/move")
def move_repo(state: HubState, req: Request) -> Response:
    payload = json_body(req)
    repo_type = _repo_type(payload.get("type") or "model")
    source, target = str(payload.get("fromRepo") or ""), str(payload.get("toRepo") or "")
    if source.count("/") != 1 or target.count("/") != 1:
        raise HubError(400, "fromRepo and toRepo must both be namespace/name.")
    repo, user = state.admin_repo(req, repo_type, source)
    new_ns, new_name = target.split("/")
    check_name(new_ns, "namespace")
    check_name(new_name, "repo name")
    if not state.auth.can_write(user, new_ns):
        raise forbidden(f"You don't have the rights to create a repo under the namespace {new_ns!r}.")
    moved = state.storage.move_repo(repo, target)
    return json_response({"url": state.repo_url(req, repo_type, moved.id)})


@route("POST", "api/{T}/{ns}/{name}/duplicate")
def duplicate_repo(state: HubState, req: Request, T: str, ns: str, name: str) -> Response:
    user = state.require_user(req)
    source = state.readable_repo(req, T, f"{ns}/{name}")
    state.check_download(req, source)
    payload = json_body(req)
    target = str(payload.get("repository") or f"{user}/{source.name}")
    new_ns = target.split("/")[0]
    if not state.auth.can_write(user, new_ns):
        raise forbidden(f"You don't have the rights to create a repo under the namespace {new_ns!r}.")
    repo = state.storage.create_repo(T, target, private=payload.get("visibility") == "private", author=user)
    with state.storage.lock(source):
        refs = state.storage.refs(source)
        for commit_file in (source.path / "commits").glob("*.json"):
            shutil.copyfile(commit_file, repo.path / "commits" / commit_file.name)
        mark_owned(repo.path, (p.name for p in (source.path / "owned").glob("*")))
    with state.storage.lock(repo):
        write_json(repo.path / "refs.json", {"branches": refs["branches"], "tags": refs["tags"], "pulls": {}})
    return json_response({"url": state.repo_url(req, T, repo.id)})


@route("PUT", "api/{T}/{ns}/{name}/settings")
def repo_settings(state: HubState, req: Request, T: str, ns: str, name: str) -> Response:
    repo, _ = state.admin_repo(req, T, f"{ns}/{name}")
    payload = json_body(req)
    changes: dict[str, Any] = {}
    if "gated" in payload:
        if payload["gated"] not in GATED_VALUES:
            raise HubError(400, f"Invalid gated value {payload['gated']!r}: use false, 'auto' or 'manual'.")
        changes["gated"] = payload["gated"]
    if "visibility" in payload:
        if payload["visibility"] not in ("public", "private"):
            raise HubError(400, f"Invalid visibility {payload['visibility']!r}: use 'public' or 'private'.")
        changes["private"] = payload["visibility"] == "private"
    elif "private" in payload:
        changes["private"] = bool(payload["private"])
    unknown = set(payload) - {"gated", "visibility", "private"}
    if unknown:
        raise HubError(400, f"Unsupported repo settings {sorted(unknown)}: this Hub supports gated and visibility.")
    state.storage.update_repo(repo, **changes)
    return json_response({})


# --- commits ---------------------------------------------------------------------------------


def _target(state: HubState, req: Request, T: str, ns: str, name: str, rev: str):
    """The repo, the caller and what a preupload or commit on ``rev`` is allowed to do."""
    create_pr = _truthy(req.args.get("create_pr"))
    user = state.require_user(req)
    repo = state.readable_repo(req, T, f"{ns}/{name}")
    number = pr_number(rev)
    if create_pr:
        refs = state.storage.refs(repo)
        if rev not in refs["branches"] and rev.removeprefix("refs/heads/") not in refs["branches"]:
            raise revision_not_found(repo.id, rev)
    elif number is not None:
        prs.may_push(state, repo, user, number)
    elif not state.auth.can_write(user, repo.namespace):
        raise forbidden(f"You don't have write access to {repo.id}: open a pull request (create_pr=True) instead.")
    return repo, user, create_pr


@route("POST", "api/{T}/{ns}/{name}/preupload/{rev}")
def preupload(state: HubState, req: Request, T: str, ns: str, name: str, rev: str) -> Response:
    repo, _, create_pr = _target(state, req, T, ns, name, rev)
    if not create_pr:
        writable_ref(state.storage, repo, rev)
    head = state.storage.resolve(repo, rev)
    payload = json_body(req)
    rule = lfs_rule(state.storage, head.files, state.lfs_threshold)
    ignore_text = payload.get("gitIgnore")
    if ignore_text is None and ".gitignore" in head.files and head.files[".gitignore"].size < (1 << 20):
        ignore_text = state.storage.blobs.path(head.files[".gitignore"].sha256).read_text("utf-8", "replace")
    ignore = GitIgnore.parse(str(ignore_text or ""))
    answers = []
    for item in payload.get("files", []):
        path = check_repo_path(str(item.get("path", "")))
        lfs = rule.is_lfs(path, int(item.get("size", 0)))
        mode = "lfs" if lfs and not state.inline_uploads else "regular"
        answer: dict[str, Any] = {"path": path, "uploadMode": mode, "shouldIgnore": ignore.ignores(path)}
        existing = head.files.get(path)
        # The oid lets the client skip unchanged files; it must be the kind of hash the mode implies.
        if existing is not None:
            if mode == "lfs":
                answer["oid"] = existing.sha256
            elif existing.git_sha1:
                answer["oid"] = existing.git_sha1
        answers.append(answer)
    return json_response({"files": answers, "commitOid": head.id})


def _parse_operations(state: HubState, req: Request, repo_path: Path) -> tuple[dict[str, Any], list[Operation]]:
    header: dict[str, Any] | None = None
    operations: list[Operation] = []
    for raw in req.stream:
        if not raw.strip():
            continue
        try:
            item = json.loads(raw)
            key, value = item["key"], item["value"]
        except (ValueError, KeyError, TypeError):
            raise HubError(400, "Malformed commit body: each line must be a JSON object with 'key' and 'value'.") from None
        if key == "header":
            header = value
            continue
        path = str(value.get("path", ""))
        # Folder deletions name the folder with a trailing slash; nothing else may end with one.
        path = check_repo_path(path[:-1] if key == "deletedFolder" and path.endswith("/") else path)
        if key == "file":
            content = value.get("content", "")
            if value.get("encoding", "base64") == "base64":
                try:
                    data = base64.b64decode(content, validate=True)
                except (binascii.Error, ValueError):
                    raise HubError(400, f"Content of {path!r} is not valid base64.") from None
            else:
                data = str(content).encode()
            entry = state.storage.blobs.put_bytes(data)
            mark_owned(repo_path, [entry.sha256])  # uploaded to this repo
            operations.append(AddFile(path, entry))
        elif key == "lfsFile":
            if value.get("algo", "sha256") != "sha256":
                raise HubError(400, f"Unsupported LFS hash algorithm {value.get('algo')!r} for {path!r}.")
            oid = str(value.get("oid", ""))
            size = value.get("size")
            # Only content uploaded to this repo, or already in its history, may be named here.
            if not (state.storage.blobs.has(oid, None if size is None else int(size)) and owns(repo_path, oid)):
                raise HubError(
                    422, f"The LFS object {oid} for {path!r} was never uploaded to this repo (or has another size)."
                )
            actual = state.storage.blobs.path(oid).stat().st_size
            operations.append(AddFile(path, TreeEntry(oid, actual, _known_sha1(repo_path, oid), True), True))
        elif key == "deletedFile":
            operations.append(DeleteFile(path))
        elif key == "deletedFolder":
            operations.append(DeleteFolder(path))
        else:
            raise HubError(400, f"Unknown commit operation {key!r}.")
    if header is None:
        raise HubError(400, "The commit body has no header line.")
    return header, operations


def _known_sha1(repo_path: Path, sha256: str) -> str | None:
    """The git id of an LFS object's content, recorded when it was uploaded (see :mod:`.lfs`)."""
    marker = repo_path / OWNED_DIR / sha256
    text = marker.read_text() if marker.is_file() else ""
    return text.strip() or None


@route("POST", "api/{T}/{ns}/{name}/commit/{rev}")
def commit(state: HubState, req: Request, T: str, ns: str, name: str, rev: str) -> Response:
    repo, user, create_pr = _target(state, req, T, ns, name, rev)
    header, operations = _parse_operations(state, req, repo.path)
    title = str(header.get("summary") or "Upload files").strip() or "Upload files"
    message = str(header.get("description") or "")
    target = rev
    discussion = None
    if create_pr:
        discussion = prs.create(state.storage, repo, user, title, message or None, pull_request=True,
                                base=rev.removeprefix("refs/heads/"))
        target = f"refs/pr/{discussion['num']}"
    try:
        new = write_commit(state.storage, repo, target, operations, title=title, message=message, author=user,
                           parent_commit=header.get("parentCommit"), lfs_threshold=state.lfs_threshold)
    except HubError:
        if discussion is not None:  # the pull request exists only with its first commit
            prs.discard(state.storage, repo, discussion["num"])
        raise
    number = pr_number(target)
    if number is not None:
        prs.record_commit(state.storage, repo, number, user, title, new.id)
    prefix = "" if T == "models" else f"{T}/"
    pr_url = f"{state.base_url(req)}/{prefix}{repo.id}/discussions/{number}" if discussion else None
    return json_response(
        {
            "commitOid": new.id,
            "commitUrl": f"{state.base_url(req)}/{prefix}{repo.id}/commit/{new.id}",
            "commitMessage": new.title,
            "hookOutput": "",
            "success": True,
            "pullRequestUrl": pr_url,
        }
    )


@route("POST", "api/{T}/{ns}/{name}/super-squash/{rev}")
def squash(state: HubState, req: Request, T: str, ns: str, name: str, rev: str) -> Response:
    repo, user = state.writable_repo(req, T, f"{ns}/{name}")
    payload = req.get_json(silent=True, force=True) or {}
    message = str(payload.get("message") or f"Super-squash branch '{rev}'")
    new = super_squash(state.storage, repo, rev, message=message, author=user)
    return json_response({"commitId": new.id})


# --- branches and tags -----------------------------------------------------------------------


@route("POST DELETE", "api/{T}/{ns}/{name}/tag/{rev}")
def tag(state: HubState, req: Request, T: str, ns: str, name: str, rev: str) -> Response:
    repo, _ = state.writable_repo(req, T, f"{ns}/{name}")
    if req.method == "DELETE":
        state.storage.set_ref(repo, "tag", rev.removeprefix("refs/tags/"), None)
    else:
        payload = json_body(req)
        state.storage.set_ref(repo, "tag", str(payload.get("tag", "")), rev)
    return json_response({})


@route("POST DELETE", "api/{T}/{ns}/{name}/branch/{branch}")
def branch(state: HubState, req: Request, T: str, ns: str, name: str, branch: str) -> Response:
    repo, _ = state.writable_repo(req, T, f"{ns}/{name}")
    branch = branch.removeprefix("refs/heads/")
    if req.method == "DELETE":
        state.storage.set_ref(repo, "branch", branch, None)
    else:
        payload = req.get_json(silent=True, force=True) or {}
        start = str(payload.get("startingPoint") or "main")
        state.storage.set_ref(repo, "branch", branch, start, exist_ok=bool(payload.get("exist_ok")))
    return json_response({})

