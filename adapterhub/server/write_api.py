"""Write endpoints of the local Hub: repos, settings, preupload, NDJSON commits, branches and tags,
and git-LFS uploads (batch, signed upload URLs, verify)."""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any
from urllib.parse import quote, urlencode

from flask import Request, Response

from .errors import HubError
from .names import check_name, check_repo_path
from .objects import AddFile, DeleteFile, DeleteFolder, Operation, TreeEntry
from .routing import HubState, json_response, route

_TYPE_PLURAL = {None: "models", "model": "models", "dataset": "datasets", "space": "spaces"}


#: JSON request bodies (repo settings, preupload lists, LFS batches) are small; commits stream.
_MAX_JSON_BYTES = 16 << 20


def _json_body(req: Request) -> dict[str, Any]:
    req.max_content_length = min(req.max_content_length or _MAX_JSON_BYTES, _MAX_JSON_BYTES)
    data = req.get_json(silent=True, force=True)
    if not isinstance(data, dict):
        raise HubError(400, "Expected a JSON object as the request body.")
    return data


def _repo_type(payload: dict[str, Any]) -> str:
    try:
        return _TYPE_PLURAL[payload.get("type")]
    except KeyError:
        raise HubError(400, f"Unknown repo type {payload.get('type')!r}.") from None


def _repo_id(payload: dict[str, Any], user: str) -> str:
    name = str(payload.get("name") or "")
    org = payload.get("organization")
    if "/" in name and not org:
        org, name = name.split("/", 1)
    ns = org or user
    check_name(ns, "namespace")
    check_name(name, "repo name")
    return f"{ns}/{name}"


# --- repos -----------------------------------------------------------------------------------


@route("POST", "api/repos/create")
def create_repo(state: HubState, req: Request) -> Response:
    user = state.require_user(req)
    payload = _json_body(req)
    repo_type = _repo_type(payload)
    repo_id = _repo_id(payload, user)
    url = state.repo_url(req, repo_type, repo_id)
    if repo_id.split("/")[0] != user:
        raise HubError(403, f"User {user!r} cannot create repos in namespace {repo_id.split('/')[0]!r}.")
    private = payload.get("visibility") == "private" or bool(payload.get("private"))
    try:
        state.storage.create_repo(repo_type, repo_id, private=private, author=user)
    except HubError as err:
        if err.status == 409:
            err.body["url"] = url  # the client's exist_ok path reads it
        raise
    return json_response({"url": url, "name": repo_id, "id": repo_id})


@route("DELETE", "api/repos/delete")
def delete_repo(state: HubState, req: Request) -> Response:
    user = state.require_user(req)
    payload = _json_body(req)
    repo, _ = state.writable_repo(req, _repo_type(payload), _repo_id(payload, user))
    state.storage.delete_repo(repo)
    return json_response({})


@route("PUT", "api/{T}/{ns}/{name}/settings")
def repo_settings(state: HubState, req: Request, T: str, ns: str, name: str) -> Response:
    repo, _ = state.writable_repo(req, T, f"{ns}/{name}")
    payload = _json_body(req)
    if "visibility" in payload:
        state.storage.set_private(repo, payload["visibility"] == "private")
    elif "private" in payload:
        state.storage.set_private(repo, bool(payload["private"]))
    return json_response({})


# --- commits ---------------------------------------------------------------------------------


def _refuse_pull_requests(req: Request) -> None:
    if req.args.get("create_pr") not in (None, "", "0", "false"):
        raise HubError(400, "This Hub does not support pull requests; commit to a branch instead.")


def _upload_mode(state: HubState, size: int) -> str:
    return "lfs" if state.lfs_threshold is not None and size >= state.lfs_threshold else "regular"


@route("POST", "api/{T}/{ns}/{name}/preupload/{rev}")
def preupload(state: HubState, req: Request, T: str, ns: str, name: str, rev: str) -> Response:
    _refuse_pull_requests(req)
    repo, _ = state.writable_repo(req, T, f"{ns}/{name}")
    head = state.storage.resolve(repo, rev)
    answers = []
    for item in _json_body(req).get("files", []):
        path = check_repo_path(str(item.get("path", "")))
        mode = _upload_mode(state, int(item.get("size", 0)))
        answer: dict[str, Any] = {"path": path, "uploadMode": mode, "shouldIgnore": False}
        existing = head.files.get(path)
        # The oid lets the client skip unchanged files; it must be the kind of hash the mode implies.
        if existing is not None:
            if mode == "lfs":
                answer["oid"] = existing.sha256
            elif existing.git_sha1:
                answer["oid"] = existing.git_sha1
        answers.append(answer)
    return json_response({"files": answers, "commitOid": head.id})


def _parse_operations(state: HubState, req: Request) -> tuple[dict[str, Any], list[Operation]]:
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
            operations.append(AddFile(path, state.storage.put_bytes(data)))
        elif key == "lfsFile":
            if value.get("algo", "sha256") != "sha256":
                raise HubError(400, f"Unsupported LFS hash algorithm {value.get('algo')!r} for {path!r}.")
            oid = str(value.get("oid", ""))
            size = value.get("size")
            if not state.storage.has_blob(oid, None if size is None else int(size)):
                raise HubError(422, f"The LFS object {oid} for {path!r} was never uploaded (or has another size).")
            actual = state.storage.blob_path(oid).stat().st_size
            operations.append(AddFile(path, TreeEntry(sha256=oid, size=actual, git_sha1=None, lfs=True)))
        elif key == "deletedFile":
            operations.append(DeleteFile(path))
        elif key == "deletedFolder":
            operations.append(DeleteFolder(path))
        else:
            raise HubError(400, f"Unknown commit operation {key!r}.")
    if header is None:
        raise HubError(400, "The commit body has no header line.")
    return header, operations


@route("POST", "api/{T}/{ns}/{name}/commit/{rev}")
def commit(state: HubState, req: Request, T: str, ns: str, name: str, rev: str) -> Response:
    _refuse_pull_requests(req)
    repo, user = state.writable_repo(req, T, f"{ns}/{name}")
    header, operations = _parse_operations(state, req)
    new = state.storage.commit(
        repo,
        rev,
        operations,
        title=str(header.get("summary") or "Upload files"),
        message=str(header.get("description") or ""),
        author=user,
        parent_commit=header.get("parentCommit"),
    )
    prefix = "" if T == "models" else f"{T}/"
    return json_response(
        {
            "commitOid": new.id,
            "commitUrl": f"{state.base_url(req)}/{prefix}{repo.id}/commit/{new.id}",
            "commitMessage": new.title,
            "hookOutput": "",
            "success": True,
            "pullRequestUrl": None,
        }
    )


@route("GET", "api/{T}/{ns}/{name}/xet-write-token/{*rev}")
@route("GET", "api/{T}/{ns}/{name}/xet-read-token/{*rev}")
def xet_token(state: HubState, req: Request, T: str, ns: str, name: str, rev: str) -> Response:
    raise HubError(400, "This Hub does not speak Xet: run the client with HF_HUB_DISABLE_XET=1.")


@route("POST", "api/{T}/{ns}/{name}/discussions")
def discussions(state: HubState, req: Request, T: str, ns: str, name: str) -> Response:
    raise HubError(400, "This Hub does not support discussions or pull requests.")


# --- branches and tags -----------------------------------------------------------------------


@route("POST DELETE", "api/{T}/{ns}/{name}/tag/{rev}")
def tag(state: HubState, req: Request, T: str, ns: str, name: str, rev: str) -> Response:
    repo, _ = state.writable_repo(req, T, f"{ns}/{name}")
    if req.method == "DELETE":
        state.storage.set_ref(repo, "tag", rev, None)
    else:
        payload = _json_body(req)
        state.storage.set_ref(repo, "tag", str(payload.get("tag", "")), rev)
    return json_response({})


@route("POST DELETE", "api/{T}/{ns}/{name}/branch/{branch}")
def branch(state: HubState, req: Request, T: str, ns: str, name: str, branch: str) -> Response:
    repo, _ = state.writable_repo(req, T, f"{ns}/{name}")
    if req.method == "DELETE":
        state.storage.set_ref(repo, "branch", branch, None)
    else:
        payload = req.get_json(silent=True, force=True) or {}
        start = payload.get("startingPoint") or "main"
        state.storage.set_ref(repo, "branch", branch, start, exist_ok=bool(payload.get("exist_ok")))
    return json_response({})


# --- git-LFS ---------------------------------------------------------------------------------


def _lfs_response(data: Any, status: int = 200) -> Response:
    return Response(json.dumps(data), status=status, mimetype="application/vnd.git-lfs+json")


@route("POST", "{ns}/{name_git}/info/lfs/objects/batch")
@route("POST", "{pfx}/{ns}/{name_git}/info/lfs/objects/batch")
def lfs_batch(state: HubState, req: Request, ns: str, name_git: str, pfx: str = "models") -> Response:
    repo, _ = state.writable_repo(req, pfx, f"{ns}/{name_git}")
    payload = _json_body(req)
    if payload.get("operation") != "upload":
        raise HubError(400, "Only LFS uploads go through the batch API here; download through /resolve.")
    base = state.base_url(req)
    objects = []
    for obj in payload.get("objects", []):
        oid, size = str(obj.get("oid", "")), int(obj.get("size", -1))
        item: dict[str, Any] = {"oid": oid, "size": size}
        try:
            present = state.storage.has_blob(oid, size)
        except HubError as err:
            item["error"] = {"code": 422, "message": err.message}
            objects.append(item)
            continue
        if not present:
            expires, sig = state.auth.sign("upload", oid, str(size))
            query = urlencode({"size": size, "expires": expires, "sig": sig})
            item["actions"] = {
                "upload": {"href": f"{base}/_lfs/upload/{oid}?{query}"},
                "verify": {"href": f"{base}/_lfs/verify/{pfx}/{quote(repo.id)}"},
            }
        objects.append(item)
    return _lfs_response({"transfer": "basic", "objects": objects, "hash_algo": "sha256"})


@route("PUT", "_lfs/upload/{oid}")
def lfs_upload(state: HubState, req: Request, oid: str) -> Response:
    # Upload PUTs carry no token: the signed URL from the batch answer is the authorisation.
    size = req.args.get("size", "")
    if not state.auth.verify(req.args.get("expires", ""), req.args.get("sig", ""), "upload", oid, size):
        raise HubError(403, "This upload URL is invalid or expired; ask the batch endpoint for a new one.")
    req.max_content_length = int(size)  # the signed size, not the app-wide body limit
    state.storage.put_stream(req.stream, oid, int(size))
    return json_response({})


@route("POST", "_lfs/verify/{T}/{ns}/{name}")
def lfs_verify(state: HubState, req: Request, T: str, ns: str, name: str) -> Response:
    state.writable_repo(req, T, f"{ns}/{name}")
    payload = _json_body(req)
    if not state.storage.has_blob(str(payload.get("oid", "")), int(payload.get("size", -1))):
        raise HubError(422, f"LFS object {payload.get('oid')} was not uploaded completely.")
    return json_response({})
