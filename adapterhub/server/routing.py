"""Routing of the local Hub: the route table, the matcher on raw path segments, the per-request
state handlers receive (:class:`HubState`, with who may read, write or download), and the one
error path.

Routing uses the *raw* (still percent-encoded) path, because the client sends revisions such as
``refs%2Fpr%2F1`` or ``feature%2Fx`` as one segment, and WSGI's decoded ``PATH_INFO`` would split
them. Endpoint modules register handlers with :func:`route`; :func:`dispatch` finds the handler of
a request and turns a :class:`~.errors.HubError` (or a malformed request body) into the answer the
client expects: the status, ``X-Error-Code``, ``X-Error-Message`` and a JSON ``{"error": ...}``
(``X-Request-Id`` is added to every answer by :mod:`.app`). A repo id with one segment (``gpt2``)
is answered ``RepoNotFound``, as on the Hub, so clients report a missing repo, not a broken server.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlsplit

from flask import Request, Response

from .auth import Auth
from .errors import HubError, forbidden, gated, repo_not_found
from .names import REPO_TYPES, name_key
from .objects import Repo
from .storage import HubStorage

log = logging.getLogger("adapterhub.server")

Handler = Callable[..., Response]
_ROUTES: list[tuple[frozenset[str], tuple[str, ...], Handler]] = []
#: What may follow ``/api/{T}/{id}``: with a one-segment id these look like ``ns/name`` routes.
_REPO_ACTIONS = frozenset(
    "like likers discussions refs settings auth-check lfs-files tree commits paths-info preupload commit "
    "revision tag branch super-squash user-access-request xet-write-token xet-read-token".split()
)


def route(methods: str, pattern: str) -> Callable[[Handler], Handler]:
    """Register a handler for ``pattern``: literal segments, ``{x}`` (one segment), ``{*x}`` (the rest).

    ``{T}`` only matches a plural repo type and ``{pfx}`` only ``datasets``/``spaces``.
    """

    def decorate(fn: Handler) -> Handler:
        _ROUTES.append((frozenset(methods.split()), tuple(pattern.strip("/").split("/")), fn))
        return fn

    return decorate


def _match(pattern: tuple[str, ...], segments: list[str]) -> dict[str, str] | None:
    params: dict[str, str] = {}
    for i, part in enumerate(pattern):
        if part.startswith("{*"):
            params[part[2:-1]] = "/".join(segments[i:])
            return params
        if i >= len(segments):
            return None
        seg = segments[i]
        if part.startswith("{"):
            name = part[1:-1]
            if (name == "T" and seg not in REPO_TYPES) or (name == "pfx" and seg not in ("datasets", "spaces")):
                return None
            if name == "name_git":
                if not seg.endswith(".git"):
                    return None
                seg = seg[: -len(".git")]
            if not seg:
                return None
            params[name] = seg
        elif part != seg:
            return None
    return params if len(segments) == len(pattern) else None


def raw_segments(environ: dict[str, Any]) -> list[str]:
    """Path segments, each percent-decoded on its own (so ``%2F`` stays inside its segment)."""
    raw = environ.get("RAW_URI") or environ.get("REQUEST_URI")
    if raw:
        path = urlsplit(raw).path if "://" in raw else raw.split("?", 1)[0]
        parts = path.encode("latin-1").decode("utf-8", "surrogateescape").split("/")
    else:  # no raw path (test clients): WSGI's latin-1 PATH_INFO, re-read as UTF-8
        parts = environ.get("PATH_INFO", "").encode("latin-1").decode("utf-8", "replace").split("/")
        return [p for p in parts if p != ""]
    decoded = [unquote(p, errors="strict") for p in parts]
    return [p for p in decoded if p != ""]


def json_response(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(json.dumps(data), status=status, headers=headers, mimetype="application/json")


def error_response(err: HubError, extra_headers: dict[str, str] | None = None) -> Response:
    headers = {**err.headers, **(extra_headers or {})}
    # Header values must be latin-1; keep them to plain ASCII on one line.
    headers["X-Error-Message"] = re.sub(r"[^\x20-\x7e]", "?", err.message)
    if err.code:
        headers["X-Error-Code"] = err.code
    body = {"error": err.message}
    body.update(err.body)
    return json_response(body, err.status, headers)


@dataclass
class HubState:
    """What every handler needs: the storage, the accounts and the upload policy.

    ``lfs_threshold``: files from this size on are LFS files (None: the Hub's 10 MiB).
    ``inline_uploads``: answer ``regular`` to every ``preupload``, so clients with Xet on (which
    cannot upload through git-LFS) still upload; files are stored by the LFS rule all the same.
    """

    storage: HubStorage
    auth: Auth
    lfs_threshold: int | None = None
    inline_uploads: bool = False

    def user(self, req: Request) -> str | None:
        return self.auth.user_for(req.headers.get("Authorization"))

    def require_user(self, req: Request) -> str:
        user = self.user(req)
        if user is None:
            if req.headers.get("Authorization"):
                raise HubError(401, "Invalid credentials in Authorization header")
            raise HubError(401, "A token is needed: pass token= or set HF_TOKEN.")
        return user

    def readable_repo(self, req: Request, repo_type: str, repo_id: str) -> Repo:
        """The repo if the caller may see it; private repos of others look absent (404)."""
        repo = self.storage.get_repo(repo_type, repo_id)
        if not self.auth.can_read(self.user(req), repo.namespace, repo.private):
            raise repo_not_found(repo_id)
        return repo

    def writable_repo(self, req: Request, repo_type: str, repo_id: str) -> tuple[Repo, str]:
        """The repo and the caller, who must have write access (403 otherwise, 404 if unseen)."""
        user = self.require_user(req)
        repo = self.readable_repo(req, repo_type, repo_id)
        if not self.auth.can_write(user, repo.namespace):
            raise forbidden(f"You don't have write access to {repo.id}: ask its owner for it, or open a pull request.")
        return repo, user

    def admin_repo(self, req: Request, repo_type: str, repo_id: str) -> tuple[Repo, str]:
        """The repo and the caller, who must administer its namespace (settings, moves, deletion)."""
        user = self.require_user(req)
        repo = self.readable_repo(req, repo_type, repo_id)
        if not self.auth.is_admin(user, repo.namespace):
            raise forbidden(f"Only an admin of {repo.namespace} can change the settings of {repo.id}.")
        return repo, user

    def may_see(self, req: Request, repo: Repo) -> bool:
        return self.auth.can_read(self.user(req), repo.namespace, repo.private)

    def check_download(self, req: Request, repo: Repo) -> None:
        """File contents of a gated repo need an accepted access request (or membership)."""
        if not repo.gated:
            return
        user = self.user(req)
        if self.auth.role(user, repo.namespace) is not None:
            return
        if user is None or self.storage.access_requests(repo).get(name_key(user), {}).get("status") != "accepted":
            raise gated(repo.type, repo.id, self.base_url(req))

    @staticmethod
    def base_url(req: Request) -> str:
        return req.host_url.rstrip("/")

    @staticmethod
    def repo_url(req: Request, repo_type: str, repo_id: str) -> str:
        prefix = "" if repo_type == "models" else f"{repo_type}/"
        return f"{HubState.base_url(req)}/{prefix}{repo_id}"


def _is_repo_request(segments: list[str]) -> bool:
    """A path about a repo whose id has one segment (``/api/models/gpt2``, ``/gpt2/resolve/...``)."""
    if len(segments) >= 3 and segments[0] == "api" and segments[1] in REPO_TYPES:
        return len(segments) == 3 or segments[3] in _REPO_ACTIONS
    if len(segments) >= 2 and segments[1] == "resolve":
        return True
    return len(segments) >= 3 and segments[0] in ("datasets", "spaces") and segments[2] == "resolve"


def dispatch(state: HubState, request: Request) -> Response:
    """Answer ``request`` with the first registered handler whose pattern and method match."""
    try:
        segments = raw_segments(request.environ)
    except UnicodeDecodeError:
        return error_response(HubError(400, "The request path is not valid UTF-8."))
    method = "GET" if request.method == "HEAD" else request.method
    allowed = False
    for methods, pattern, handler in _ROUTES:
        params = _match(pattern, segments)
        if params is None:
            continue
        if method not in methods and request.method not in methods:
            allowed = True
            continue
        try:
            return handler(state, request, **params)
        except HubError as err:
            return error_response(err)
        except (ValueError, TypeError, AttributeError, KeyError, RecursionError) as exc:
            # Handlers read fields of untrusted JSON; a field of the wrong type (a string where
            # a number belongs, a list where an object belongs, deep nesting) is the client's
            # mistake, so it is a 400, not a 500.
            log.warning("malformed request %s /%s", request.method, "/".join(segments), exc_info=True)
            return error_response(HubError(400, f"Malformed request: {type(exc).__name__} while reading it."))
    if _is_repo_request(segments):
        return error_response(repo_not_found())
    if allowed:
        return error_response(HubError(405, f"Method {request.method} is not allowed here."))
    return error_response(HubError(404, f"No such endpoint: {request.method} /{'/'.join(segments)}"))
