"""git-LFS on the local Hub: the batch endpoint, signed upload URLs, verification, listing and
permanently deleting a repo's LFS objects, and the answer to clients that ask for Xet.

The batch endpoint answers *per repo*: it asks for an upload unless this repo already owns the
object (:mod:`.blobs`), so it reveals nothing about what other repos hold, and an upload proves
possession of the content before the repo may reference it. Upload URLs authorise one object
of one size for one repo, for an hour, without a token (the client sends none on the PUT).
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote, urlencode

from flask import Request, Response

from .blobs import OWNED_DIR, disown, owns
from .errors import HubError
from .history import lfs_objects, rewrite_without
from .names import check_sha256
from .read_api import paginate
from .routing import HubState, json_response, route
from .write_api import json_body

#: What a client with Xet on (huggingface_hub's default) is told when the server asks for LFS.
XET_HINT = (
    "This Hub stores large files through git-LFS and does not speak Xet: run the client with "
    "HF_HUB_DISABLE_XET=1 (or start the Hub with --inline-uploads)."
)


def _lfs_response(data: Any, status: int = 200) -> Response:
    return Response(json.dumps(data), status=status, mimetype="application/vnd.git-lfs+json")


@route("POST", "{ns}/{name_git}/info/lfs/objects/batch")
@route("POST", "{pfx}/{ns}/{name_git}/info/lfs/objects/batch")
def lfs_batch(state: HubState, req: Request, ns: str, name_git: str, pfx: str = "models") -> Response:
    state.require_user(req)  # uploads for a pull request come from users who cannot write
    repo = state.readable_repo(req, pfx, f"{ns}/{name_git}")
    payload = json_body(req)
    if payload.get("operation") != "upload":
        raise HubError(400, "Only LFS uploads go through the batch API here; download through /resolve.")
    base = state.base_url(req)
    objects = []
    for obj in payload.get("objects", []):
        oid, size = str(obj.get("oid", "")), int(obj.get("size", -1))
        item: dict[str, Any] = {"oid": oid, "size": size}
        try:
            check_sha256(oid)
            if size < 0:
                raise HubError(422, f"Invalid size {size} for {oid}.")
        except HubError as err:
            item["error"] = {"code": 422, "message": err.message}
            objects.append(item)
            continue
        if not (owns(repo.path, oid) and state.storage.blobs.has(oid, size)):
            where = f"{pfx}/{repo.path.parent.name}/{repo.path.name}"
            expires, sig = state.auth.sign("upload", where, oid, str(size))
            query = urlencode({"size": size, "expires": expires, "sig": sig})
            item["actions"] = {
                "upload": {"href": f"{base}/_lfs/upload/{where}/{oid}?{query}"},
                "verify": {"href": f"{base}/_lfs/verify/{pfx}/{quote(repo.id)}"},
            }
        objects.append(item)
    return _lfs_response({"transfer": "basic", "objects": objects, "hash_algo": "sha256"})


@route("PUT", "_lfs/upload/{T}/{ns}/{name}/{oid}")
def lfs_upload(state: HubState, req: Request, T: str, ns: str, name: str, oid: str) -> Response:
    # Upload PUTs carry no token: the signed URL from the batch answer is the authorisation.
    size = req.args.get("size", "")
    where = f"{T}/{ns}/{name}"
    if not state.auth.verify(req.args.get("expires", ""), req.args.get("sig", ""), "upload", where, oid, size):
        raise HubError(403, "This upload URL is invalid or expired; ask the batch endpoint for a new one.")
    repo = state.storage.get_repo(T, f"{ns}/{name}")
    req.max_content_length = int(size)  # the signed size, not the app-wide body limit
    entry = state.storage.blobs.put_stream(req.stream, oid, int(size))
    marker = repo.path / OWNED_DIR / oid
    marker.parent.mkdir(exist_ok=True)
    marker.write_text(entry.git_sha1 or "")  # uploaded to this repo; keeps the content's git id
    return json_response({})


@route("POST", "_lfs/verify/{T}/{ns}/{name}")
def lfs_verify(state: HubState, req: Request, T: str, ns: str, name: str) -> Response:
    state.require_user(req)
    repo = state.readable_repo(req, T, f"{ns}/{name}")
    payload = json_body(req)
    oid, size = str(payload.get("oid", "")), int(payload.get("size", -1))
    if not (state.storage.blobs.has(oid, size) and owns(repo.path, oid)):
        raise HubError(422, f"LFS object {oid} was not uploaded to {repo.id} completely.")
    return json_response({})


@route("GET", "api/{T}/{ns}/{name}/lfs-files")
def list_lfs_files(state: HubState, req: Request, T: str, ns: str, name: str) -> Response:
    repo, _ = state.writable_repo(req, T, f"{ns}/{name}")
    items = [o.to_json() for o in lfs_objects(state.storage, repo)]
    return paginate(req, state, items, f"/api/{T}/{ns}/{name}/lfs-files")


@route("POST", "api/{T}/{ns}/{name}/lfs-files/batch")
def delete_lfs_files(state: HubState, req: Request, T: str, ns: str, name: str) -> Response:
    """Permanently delete LFS objects: rewrite history without them (by default), then drop them."""
    repo, _ = state.admin_repo(req, T, f"{ns}/{name}")
    deletions = json_body(req).get("deletions") or {}
    shas = {check_sha256(str(s)) for s in deletions.get("sha", [])}
    if deletions.get("rewriteHistory", True):
        rewrite_without(state.storage, repo, shas)
    disown(repo.path, shas)
    root = state.storage.root / "repos"
    for sha in shas:  # content no other repo owns is gone at once, not at the next `hub gc`
        if not any(root.glob(f"*/*/*/{OWNED_DIR}/{sha}")):
            state.storage.blobs.path(sha).unlink(missing_ok=True)
    return json_response({"deleted": len(shas)})


#: hf_xet shows only the status and the URL of a failed request, never the server's message, so
#: the token request is redirected to a URL that *is* the hint.
XET_HINT_PATH = "/api/xet-is-not-supported-here/run-the-client-with-HF_HUB_DISABLE_XET=1-or-serve-with--inline-uploads"


@route("GET", "api/{T}/{ns}/{name}/xet-write-token/{*rev}")
@route("GET", "api/{T}/{ns}/{name}/xet-read-token/{*rev}")
def xet_token(state: HubState, req: Request, T: str, ns: str, name: str, rev: str) -> Response:
    state.readable_repo(req, T, f"{ns}/{name}")
    return Response(status=307, headers={"Location": XET_HINT_PATH, "X-Error-Message": XET_HINT})


@route("GET", XET_HINT_PATH.strip("/"))
def xet_hint(state: HubState, req: Request) -> Response:
    raise HubError(501, XET_HINT)
