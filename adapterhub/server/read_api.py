"""Read endpoints of the local Hub: repo info, tree, paths-info, refs, commits, file downloads
(HEAD/GET with Range), repo listing and search, ``auth-check`` and ``validate-yaml``, and the
JSON shapes of each that the client parses."""

from __future__ import annotations

import hashlib
import html
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

from flask import Request, Response

from .cards import card_data, card_tags, validate_card
from .errors import HubError, entry_not_found
from .history import all_refs
from .objects import Commit, Repo, TreeEntry
from .routing import HubState, json_response, route

_PAGE_SIZE = 1000


# --- shapes the client parses ----------------------------------------------------------------


def _last_commit_json(commit: Commit) -> dict[str, Any]:
    return {"id": commit.id, "title": commit.title, "date": commit.date}


def file_entry_json(path: str, entry: TreeEntry, last_commit: Commit | None = None) -> dict[str, Any]:
    item: dict[str, Any] = {"type": "file", "path": path, "oid": entry.tree_oid, "size": entry.size}
    if entry.lfs:
        item["lfs"] = {"oid": entry.sha256, "size": entry.size, "pointerSize": entry.pointer_size}
    if last_commit is not None:
        item["lastCommit"] = _last_commit_json(last_commit)
    return item


def _folder_signature(commit: Commit, path: str) -> list[tuple[str, str]]:
    return sorted((p, e.sha256) for p, e in commit.files.items() if p.startswith(path + "/"))


def dir_entry_json(path: str, commit: Commit, last_commit: Commit | None = None) -> dict[str, Any]:
    listing = "\n".join(f"{p} {sha}" for p, sha in _folder_signature(commit, path))
    item: dict[str, Any] = {"type": "directory", "path": path, "oid": hashlib.sha1(listing.encode()).hexdigest(),
                            "size": 0}
    if last_commit is not None:
        item["lastCommit"] = _last_commit_json(last_commit)
    return item


def repo_info_json(state: HubState, req: Request, repo: Repo, commit: Commit, *, blobs: bool) -> dict[str, Any]:
    card = card_data(state.storage, commit)
    siblings = []
    for path, entry in sorted(commit.files.items()):
        sib: dict[str, Any] = {"rfilename": path}
        if blobs:
            sib.update(size=entry.size, blobId=entry.tree_oid)
            if entry.lfs:
                sib["lfs"] = {"sha256": entry.sha256, "size": entry.size, "pointerSize": entry.pointer_size}
        siblings.append(sib)
    info: dict[str, Any] = {
        "_id": hashlib.sha1(f"{repo.type}/{repo.created_at}/{repo.path.name}".encode()).hexdigest()[:24],
        "id": repo.id,
        "author": repo.namespace,
        "sha": commit.id,
        "lastModified": commit.date,
        "createdAt": repo.created_at,
        "private": repo.private,
        "gated": repo.gated,
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


def last_commits(
    state: HubState, repo: Repo, commit: Commit, files: Sequence[str], dirs: Sequence[str] = ()
) -> dict[str, Commit]:
    """For each file or folder, the oldest commit of the run (from ``commit`` back) where it is unchanged."""
    def signature(c: Commit, path: str, is_dir: bool) -> Any:
        return _folder_signature(c, path) if is_dir else c.files.get(path)

    wanted = [(p, False) for p in files] + [(d, True) for d in dirs]
    current = {key: signature(commit, *key) for key in wanted}
    result = {p: commit for p, _ in wanted}
    pending = set(wanted)
    for older in state.storage.history(repo, commit):
        if older is commit:
            continue
        for key in list(pending):
            if signature(older, *key) == current[key]:
                result[key[0]] = older
            else:
                pending.discard(key)
        if not pending:
            break
    return result


def paginate(req: Request, state: HubState, items: list[Any], raw_path: str) -> Response:
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


def truthy(value: str | None) -> bool:
    return (value or "").lower() in ("1", "true", "yes")


# --- endpoints -------------------------------------------------------------------------------


@route("GET", "api/agent-harnesses")
def agent_harnesses(state: HubState, req: Request) -> Response:
    return json_response({"standardEnvVars": [], "harnesses": {}})


@route("GET HEAD POST", "api/telemetry/{*topic}")
def telemetry(state: HubState, req: Request, topic: str) -> Response:
    return json_response({})


@route("POST", "api/validate-yaml")
def validate_yaml(state: HubState, req: Request) -> Response:
    payload = req.get_json(silent=True) or {}
    errors, warnings = validate_card(str(payload.get("content", "")), str(payload.get("repoType") or "model"))
    body = {"errors": [{"message": m} for m in errors], "warnings": [{"message": m} for m in warnings]}
    return json_response(body, 400 if errors else 200)


@route("GET", "api/{T}/{ns}/{name}")
@route("GET", "api/{T}/{ns}/{name}/revision/{rev}")
def repo_info(state: HubState, req: Request, T: str, ns: str, name: str, rev: str = "main") -> Response:
    repo = state.readable_repo(req, T, f"{ns}/{name}")
    commit = state.storage.resolve(repo, rev)
    return json_response(repo_info_json(state, req, repo, commit, blobs=truthy(req.args.get("blobs"))))


@route("GET", "api/{T}/{ns}/{name}/auth-check")
def auth_check(state: HubState, req: Request, T: str, ns: str, name: str) -> Response:
    repo = state.readable_repo(req, T, f"{ns}/{name}")
    state.check_download(req, repo)
    return json_response({})


@route("GET", "api/{T}/{ns}/{name}/tree/{rev}/{*path}")
def tree(state: HubState, req: Request, T: str, ns: str, name: str, rev: str, path: str = "") -> Response:
    repo = state.readable_repo(req, T, f"{ns}/{name}")
    commit = state.storage.resolve(repo, rev)
    path = path.strip("/")
    prefix = f"{path}/" if path else ""
    recursive = truthy(req.args.get("recursive"))
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
    last = last_commits(state, repo, commit, files, sorted(dirs)) if truthy(req.args.get("expand")) else {}
    items = [dir_entry_json(d, commit, last.get(d)) for d in sorted(dirs)]
    items += [file_entry_json(p, commit.files[p], last.get(p)) for p in sorted(files)]
    raw_path = f"/api/{T}/{ns}/{name}/tree/{quote(rev, safe='')}" + (f"/{quote(path)}" if path else "")
    return paginate(req, state, items, raw_path)


@route("POST", "api/{T}/{ns}/{name}/paths-info/{rev}")
def paths_info(state: HubState, req: Request, T: str, ns: str, name: str, rev: str) -> Response:
    repo = state.readable_repo(req, T, f"{ns}/{name}")
    commit = state.storage.resolve(repo, rev)
    if req.is_json:
        payload = req.get_json(silent=True) or {}
        paths, expand = payload.get("paths", []), bool(payload.get("expand"))
    else:
        paths, expand = req.form.getlist("paths"), truthy(req.form.get("expand"))
    wanted = [str(p).strip("/") for p in paths]
    files = [p for p in wanted if p in commit.files]
    dirs = [p for p in wanted if p and p not in commit.files and any(f.startswith(p + "/") for f in commit.files)]
    last = last_commits(state, repo, commit, files, dirs) if expand else {}
    items = [file_entry_json(p, commit.files[p], last.get(p)) for p in files]
    items += [dir_entry_json(p, commit, last.get(p)) for p in dirs]
    return json_response(items)


@route("GET", "api/{T}/{ns}/{name}/refs")
def refs(state: HubState, req: Request, T: str, ns: str, name: str) -> Response:
    repo = state.readable_repo(req, T, f"{ns}/{name}")
    table = state.storage.refs(repo)
    data: dict[str, Any] = {"branches": [], "converts": [], "tags": []}
    kinds = {"branches": "branches", "tags": "tags", "pulls": "pullRequests"}
    include_prs = truthy(req.args.get("include_prs"))
    if include_prs:
        data["pullRequests"] = []
    for kind, key, ref in all_refs(table):
        if kind == "pulls" and not include_prs:
            continue
        data[kinds[kind]].append({"name": key if kind != "pulls" else ref, "ref": ref, "targetCommit": table[kind][key]})
    return json_response(data)


@route("GET", "api/{T}/{ns}/{name}/commits/{rev}")
def commits(state: HubState, req: Request, T: str, ns: str, name: str, rev: str) -> Response:
    repo = state.readable_repo(req, T, f"{ns}/{name}")
    head = state.storage.resolve(repo, rev)
    expand = req.args.getlist("expand[]") + req.args.getlist("expand")
    formatted = "formatted" in expand or truthy(req.args.get("formatted"))
    items = []
    for c in state.storage.history(repo, head):
        item = {
            "id": c.id,
            "title": c.title,
            "message": c.message,
            "date": c.date,
            "authors": [{"user": c.author}],
            "parents": [c.parent] if c.parent else [],
        }
        if formatted:
            item["formatted"] = {"title": html.escape(c.title), "message": html.escape(c.message)}
        items.append(item)
    return paginate(req, state, items, f"/api/{T}/{ns}/{name}/commits/{quote(rev, safe='')}")


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
    state.check_download(req, repo)
    blob = state.storage.blobs.path(entry.sha256)
    if not blob.is_file():  # its LFS object was deleted for good
        err = entry_not_found(repo.id, path)
        err.headers["X-Repo-Commit"] = commit.id
        raise err
    headers = {
        "X-Repo-Commit": commit.id,
        "ETag": f'"{entry.etag}"',
        "Accept-Ranges": "bytes",
        "Content-Disposition": f"inline; filename*=UTF-8''{quote(path.rsplit('/', 1)[-1])}",
    }
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
    author = (req.args.get("author") or "").lower()
    filters = [f for value in req.args.getlist("filter") for f in value.split(",") if f]
    full = truthy(req.args.get("full"))
    with_card = truthy(req.args.get("cardData"))
    items = []
    for repo in state.storage.list_repos(T):
        if not state.may_see(req, repo):
            continue
        if author and repo.namespace.lower() != author:
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
    if sort in ("lastModified", "createdAt", "id"):
        items.sort(key=lambda i: i[sort], reverse=req.args.get("direction") != "1")
    return paginate(req, state, items, f"/api/{T}")
