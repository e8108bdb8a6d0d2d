"""Read endpoints of the local Hub: repo info, tree, paths-info, refs, commits, file downloads
(HEAD/GET with Range), repo listing and search, and the JSON shapes of each that the client parses."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

from flask import Request, Response

from .cards import card_data, card_tags, parse_front_matter
from .errors import HubError, entry_not_found
from .names import check_repo_path
from .objects import Commit, Repo, TreeEntry
from .routing import HubState, json_response, route

_PAGE_SIZE = 1000


# --- shapes the client parses ----------------------------------------------------------------


def file_entry_json(path: str, entry: TreeEntry, last_commit: Commit | None = None) -> dict[str, Any]:
    item: dict[str, Any] = {"type": "file", "path": path, "oid": entry.tree_oid, "size": entry.size}
    if entry.lfs:
        item["lfs"] = {"oid": entry.sha256, "size": entry.size, "pointerSize": entry.pointer_size}
    if last_commit is not None:
        item["lastCommit"] = {"id": last_commit.id, "title": last_commit.title, "date": last_commit.date}
    return item


def dir_entry_json(path: str, commit: Commit) -> dict[str, Any]:
    listing = "\n".join(f"{p} {e.sha256}" for p, e in sorted(commit.files.items()) if p.startswith(path + "/"))
    return {"type": "directory", "path": path, "oid": hashlib.sha1(listing.encode()).hexdigest(), "size": 0}


def repo_info_json(state: HubState, req: Request, repo: Repo, commit: Commit, *, blobs: bool) -> dict[str, Any]:
    card = card_data(state.storage, commit)
    siblings = []
    for path, entry in sorted(commit.files.items()):
        sib: dict[str, Any] = {"rfilename": path}
        if blobs:
            sib.update(size=entry.size, blobId=entry.tree_oid)
            if entry.lfs:
                sib["lfs"] = file_entry_json(path, entry)["lfs"] | {"sha256": entry.sha256}
        siblings.append(sib)
    info: dict[str, Any] = {
        "_id": hashlib.sha1(f"{repo.type}/{repo.id}".encode()).hexdigest()[:24],
        "id": repo.id,
        "author": repo.namespace,
        "sha": commit.id,
        "lastModified": commit.date,
        "createdAt": repo.created_at,
        "private": repo.private,
        "gated": False,
        "disabled": False,
        "downloads": 0,
        "likes": 0,
        "tags": card_tags(card),
        "siblings": siblings,
    }
    if repo.type == "models":
        info["modelId"] = repo.id
        for key in ("library_name", "pipeline_tag"):
            if isinstance(card.get(key), str):
                info[key] = card[key]
    if card:
        info["cardData"] = card
    return info


def _last_commits(state: HubState, repo: Repo, commit: Commit, paths: list[str]) -> dict[str, Commit]:
    """For each path, the oldest commit of the run (from ``commit`` back) where it is unchanged."""
    result = {p: commit for p in paths}
    pending = set(paths)
    for older in state.storage.history(repo, commit):
        if older is commit:
            continue
        for p in list(pending):
            if older.files.get(p) == commit.files.get(p):
                result[p] = older
            else:
                pending.discard(p)
        if not pending:
            break
    return result


def _paginate(req: Request, state: HubState, items: list[Any], raw_path: str) -> Response:
    try:
        limit = max(1, min(int(req.args.get("limit", _PAGE_SIZE)), _PAGE_SIZE))
        start = max(0, int(req.args.get("cursor", 0)))
    except ValueError:
        raise HubError(400, "limit and cursor must be integers.") from None
    page = items[start : start + limit]
    headers = {}
    if start + limit < len(items):
        args = [(k, v) for k, v in req.args.items(multi=True) if k != "cursor"] + [("cursor", str(start + limit))]
        headers["Link"] = f'<{state.base_url(req)}{raw_path}?{urlencode(args)}>; rel="next"'
    return json_response(page, headers=headers)


def _truthy(value: str | None) -> bool:
    return (value or "").lower() in ("1", "true", "yes")


# --- endpoints -------------------------------------------------------------------------------


@route("GET", "api/whoami-v2")
def whoami(state: HubState, req: Request) -> Response:
    user = state.require_user(req)
    return json_response(
        {
            "type": "user",
            "id": user,
            "name": user,
            "fullname": user,
            "email": None,
            "orgs": [],
            "auth": {"type": "access_token", "accessToken": {"displayName": "adapterhub", "role": "write"}},
        }
    )


@route("GET", "api/agent-harnesses")
def agent_harnesses(state: HubState, req: Request) -> Response:
    return json_response({"standardEnvVars": [], "harnesses": {}})


@route("GET POST", "api/telemetry/{*topic}")
def telemetry(state: HubState, req: Request, topic: str) -> Response:
    return json_response({})


@route("POST", "api/validate-yaml")
def validate_yaml(state: HubState, req: Request) -> Response:
    payload = req.get_json(silent=True) or {}
    try:
        parse_front_matter(str(payload.get("content", "")))
    except ValueError as exc:
        return json_response({"errors": [{"message": str(exc)}], "warnings": []}, 400)
    return json_response({"errors": [], "warnings": []})


@route("GET", "api/{T}/{ns}/{name}")
@route("GET", "api/{T}/{ns}/{name}/revision/{rev}")
def repo_info(state: HubState, req: Request, T: str, ns: str, name: str, rev: str = "main") -> Response:
    repo = state.readable_repo(req, T, f"{ns}/{name}")
    commit = state.storage.resolve(repo, rev)
    return json_response(repo_info_json(state, req, repo, commit, blobs=_truthy(req.args.get("blobs"))))


@route("GET", "api/{T}/{ns}/{name}/tree/{rev}/{*path}")
def tree(state: HubState, req: Request, T: str, ns: str, name: str, rev: str, path: str = "") -> Response:
    repo = state.readable_repo(req, T, f"{ns}/{name}")
    commit = state.storage.resolve(repo, rev)
    path = path.strip("/")
    if path:
        check_repo_path(path)
    prefix = f"{path}/" if path else ""
    recursive = _truthy(req.args.get("recursive"))
    dirs: set[str] = set()
    files: list[str] = []
    for p in commit.files:
        if not p.startswith(prefix):
            continue
        rest = p[len(prefix) :].split("/")
        if len(rest) == 1:
            files.append(p)
        elif recursive:
            files.append(p)
            dirs.update(prefix + "/".join(rest[:i]) for i in range(1, len(rest)))
        else:
            dirs.add(prefix + rest[0])
    if path and not files and not dirs:
        raise entry_not_found(repo.id, path)
    last = _last_commits(state, repo, commit, files) if _truthy(req.args.get("expand")) else {}
    items = [dir_entry_json(d, commit) for d in sorted(dirs)]
    items += [file_entry_json(p, commit.files[p], last.get(p)) for p in sorted(files)]
    raw_path = f"/api/{T}/{ns}/{name}/tree/{quote(rev, safe='')}" + (f"/{quote(path)}" if path else "")
    return _paginate(req, state, items, raw_path)


@route("POST", "api/{T}/{ns}/{name}/paths-info/{rev}")
def paths_info(state: HubState, req: Request, T: str, ns: str, name: str, rev: str) -> Response:
    repo = state.readable_repo(req, T, f"{ns}/{name}")
    commit = state.storage.resolve(repo, rev)
    if req.is_json:
        payload = req.get_json(silent=True) or {}
        paths, expand = payload.get("paths", []), bool(payload.get("expand"))
    else:
        paths, expand = req.form.getlist("paths"), _truthy(req.form.get("expand"))
    wanted = [str(p).strip("/") for p in paths]
    files = [p for p in wanted if p in commit.files]
    last = _last_commits(state, repo, commit, files) if expand else {}
    items = []
    for p in wanted:
        if p in commit.files:
            items.append(file_entry_json(p, commit.files[p], last.get(p)))
        elif p and any(f.startswith(p + "/") for f in commit.files):
            items.append(dir_entry_json(p, commit))
    return json_response(items)


@route("GET", "api/{T}/{ns}/{name}/refs")
def refs(state: HubState, req: Request, T: str, ns: str, name: str) -> Response:
    repo = state.readable_repo(req, T, f"{ns}/{name}")
    table = state.storage.refs(repo)
    data: dict[str, Any] = {
        "branches": [{"name": n, "ref": f"refs/heads/{n}", "targetCommit": c} for n, c in sorted(table["branches"].items())],
        "converts": [],
        "tags": [{"name": n, "ref": f"refs/tags/{n}", "targetCommit": c} for n, c in sorted(table["tags"].items())],
    }
    if _truthy(req.args.get("include_prs")):
        data["pullRequests"] = []
    return json_response(data)


@route("GET", "api/{T}/{ns}/{name}/commits/{rev}")
def commits(state: HubState, req: Request, T: str, ns: str, name: str, rev: str) -> Response:
    repo = state.readable_repo(req, T, f"{ns}/{name}")
    head = state.storage.resolve(repo, rev)
    items = [
        {
            "id": c.id,
            "title": c.title,
            "message": c.message,
            "date": c.date,
            "authors": [{"user": c.author}],
            "parents": [c.parent] if c.parent else [],
        }
        for c in state.storage.history(repo, head)
    ]
    return _paginate(req, state, items, f"/api/{T}/{ns}/{name}/commits/{quote(rev, safe='')}")


def _iter_file(path: Path, start: int, length: int) -> Iterator[bytes]:
    with open(path, "rb") as fh:
        fh.seek(start)
        while length > 0:
            chunk = fh.read(min(length, 1 << 20))
            if not chunk:
                break
            length -= len(chunk)
            yield chunk


@route("GET", "{ns}/{name}/resolve/{rev}/{*path}")
@route("GET", "{pfx}/{ns}/{name}/resolve/{rev}/{*path}")
def resolve(state: HubState, req: Request, ns: str, name: str, rev: str, path: str, pfx: str = "models") -> Response:
    repo = state.readable_repo(req, pfx, f"{ns}/{name}")
    commit = state.storage.resolve(repo, rev)
    entry = commit.files.get(path)
    if entry is None:
        err = entry_not_found(repo.id, path)
        err.headers["X-Repo-Commit"] = commit.id
        raise err
    headers = {
        "X-Repo-Commit": commit.id,
        "ETag": f'"{entry.etag}"',
        "Accept-Ranges": "bytes",
        "Content-Disposition": f"inline; filename*=UTF-8''{quote(path.rsplit('/', 1)[-1])}",
    }
    blob = state.storage.blob_path(entry.sha256)
    size = entry.size
    start, length, status = 0, size, 200
    if req.range is not None and req.range.units == "bytes" and len(req.range.ranges) == 1:
        span = req.range.range_for_length(size)
        if span is None:
            headers["Content-Range"] = f"bytes */{size}"
            raise HubError(416, f"Range not satisfiable for {path!r} ({size} bytes).", headers=headers)
        start, stop = span
        length, status = stop - start, 206
        headers["Content-Range"] = f"bytes {start}-{stop - 1}/{size}"
    headers["Content-Length"] = str(length)
    body = [] if req.method == "HEAD" else _iter_file(blob, start, length)
    resp = Response(body, status=status, headers=headers, mimetype="application/octet-stream", direct_passthrough=True)
    resp.headers["Content-Length"] = str(length)
    return resp


@route("GET", "api/{T}")
def list_repos(state: HubState, req: Request, T: str) -> Response:
    search = (req.args.get("search") or "").lower()
    author = req.args.get("author")
    filters = [f for value in req.args.getlist("filter") for f in value.split(",") if f]
    full = _truthy(req.args.get("full"))
    with_card = _truthy(req.args.get("cardData"))
    items = []
    for repo in state.storage.list_repos(T):
        if not state.may_see(req, repo):
            continue
        if author and repo.namespace != author:
            continue
        if search and search not in repo.id.lower():
            continue
        commit = state.storage.resolve(repo, "main")
        info = repo_info_json(state, req, repo, commit, blobs=False)
        if filters and not all(f in info["tags"] or f == info.get("library_name") for f in filters):
            continue
        if not full:
            info.pop("siblings")
        if not with_card:
            info.pop("cardData", None)
        items.append(info)
    sort = req.args.get("sort")
    if sort in ("lastModified", "createdAt"):
        items.sort(key=lambda i: i[sort], reverse=req.args.get("direction") != "1")
    return _paginate(req, state, items, f"/api/{T}")

