"""Routing of the local Hub: the route table, the matcher on raw path segments, the per-request
state handlers receive (:class:`HubState`), and how answers and errors are shaped.

Routing uses the *raw* (still percent-encoded) path, because the client sends revisions such as
``refs%2Fpr%2F1`` or ``feature%2Fx`` as one segment, and WSGI's decoded ``PATH_INFO`` would split
them. Handlers in :mod:`.read_api` and :mod:`.write_api` register themselves with :func:`route`;
:func:`dispatch` finds the handler of a request and turns a :class:`~.errors.HubError` (or a
malformed request body) into the HTTP answer the client expects. This module imports no endpoint
module: endpoints import it, and :mod:`.app` imports both.
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
from .errors import HubError, repo_not_found
from .names import REPO_TYPES
from .objects import Repo
from .storage import HubStorage

log = logging.getLogger("adapterhub.server")

Handler = Callable[..., Response]
_ROUTES: list[tuple[frozenset[str], tuple[str, ...], Handler]] = []


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
    """What every handler needs: the storage, the auth table and the LFS policy."""

    storage: HubStorage
    auth: Auth
    lfs_threshold: int | None

    def user(self, req: Request) -> str | None:
        return self.auth.user_for(req.headers.get("Authorization"))

    def require_user(self, req: Request) -> str:
        user = self.user(req)
        if user is None:
            if req.headers.get("Authorization"):
                raise HubError(401, "Invalid credentials in the Authorization header.")
            raise HubError(401, "A token is needed: pass token= or set HF_TOKEN.")
        return user

    def readable_repo(self, req: Request, repo_type: str, repo_id: str) -> Repo:
        """The repo if the caller may see it; private repos of others look absent (404)."""
        repo = self.storage.get_repo(repo_type, repo_id)
        if repo.private and self.user(req) != repo.namespace:
            raise repo_not_found(repo_id)
        return repo

    def writable_repo(self, req: Request, repo_type: str, repo_id: str) -> tuple[Repo, str]:
        user = self.require_user(req)
        repo = self.readable_repo(req, repo_type, repo_id)
        if user != repo.namespace:
            raise HubError(403, f"User {user!r} cannot write to {repo_id!r}: only {repo.namespace!r} can.")
        return repo, user

    def may_see(self, req: Request, repo: Repo) -> bool:
        return not repo.private or self.user(req) == repo.namespace

    @staticmethod
    def base_url(req: Request) -> str:
        return req.host_url.rstrip("/")

    @staticmethod
    def repo_url(req: Request, repo_type: str, repo_id: str) -> str:
        prefix = "" if repo_type == "models" else f"{repo_type}/"
        return f"{HubState.base_url(req)}/{prefix}{repo_id}"


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
    if allowed:
        return error_response(HubError(405, f"Method {request.method} is not allowed here."))
    return error_response(HubError(404, f"No such endpoint: {request.method} /{'/'.join(segments)}"))
