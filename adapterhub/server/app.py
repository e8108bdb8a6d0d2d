"""The Flask app of the local Hub: :func:`create_app` builds the WSGI app for one root.

It wires the pieces together and nothing more: the storage (:mod:`.storage`), the accounts
(:mod:`.auth`), the upload policy, the request body limit, the ``X-Request-Id`` every answer
carries, and one catch-all Flask route that hands every request to :func:`.routing.dispatch`. The
endpoints are registered by importing their modules, whose handlers carry
:func:`.routing.route` decorators.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path
from typing import Any

from flask import Flask, Response, request
from werkzeug.exceptions import HTTPException

from . import access, lfs, orgs, prs, read_api, write_api  # noqa: F401  (their @route decorators fill the table)
from .auth import Accounts, Auth, build_accounts
from .errors import HubError
from .routing import HubState, dispatch, error_response
from .storage import HubStorage

MAX_BODY_ENV = "ADAPTERHUB_HUB_MAX_BODY_BYTES"
#: Commits carry non-LFS files inline (base64), so the default leaves room for large adapters.
DEFAULT_MAX_BODY_BYTES = 4 << 30

_ALL_METHODS = ["GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"]


def request_id(headers: Any) -> str:
    """The client's ``X-Request-Id``, else its ``X-Amzn-Trace-Id`` (huggingface_hub sends one), else new."""
    given = headers.get("X-Request-Id") or headers.get("X-Amzn-Trace-Id") or ""
    given = "".join(ch for ch in given if 0x20 < ord(ch) < 0x7F)[:200]
    return given or str(uuid.uuid4())


def create_app(
    root: Path | str,
    users: dict[str, str] | Accounts | None = None,
    *,
    orgs: dict[str, Any] | None = None,
    lfs_threshold: int | None = None,
    inline_uploads: bool = False,
    max_body_bytes: int | None = None,
) -> Flask:
    """The WSGI app serving the Hub stored under ``root``.

    ``users``: ``{name: token}`` (or validated :class:`~.auth.Accounts`); ``orgs``: ``{name:
    [members]}`` (see :func:`~.auth.build_accounts`).
    ``lfs_threshold``: files of at least this many bytes are LFS files (default: the Hub's 10 MiB);
    ``.gitattributes`` patterns apply as well. Clients upload LFS files through git-LFS, which
    needs ``HF_HUB_DISABLE_XET=1``, unless ``inline_uploads`` makes every file travel inside the
    commit (what clients with Xet on need); they are stored as LFS files either way.
    ``max_body_bytes``: the largest request body accepted (413 beyond); default
    ``$ADAPTERHUB_HUB_MAX_BODY_BYTES``, else 4 GiB. LFS uploads are bounded by their signed size.
    """
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    accounts = users if isinstance(users, Accounts) else build_accounts(users or {}, orgs)
    state = HubState(HubStorage(root), Auth(accounts, root), lfs_threshold, inline_uploads)
    app = Flask("adapterhub.server")
    app.config["HUB"] = state
    if max_body_bytes is None:
        max_body_bytes = int(os.environ.get(MAX_BODY_ENV, "").strip() or DEFAULT_MAX_BODY_BYTES)
    app.config["MAX_CONTENT_LENGTH"] = max_body_bytes

    @app.route("/", defaults={"_": ""}, methods=_ALL_METHODS, provide_automatic_options=False)
    @app.route("/<path:_>", methods=_ALL_METHODS, provide_automatic_options=False)
    def handle(_: str) -> Response:
        return dispatch(state, request)

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException) -> Response:
        return error_response(HubError(exc.code or 400, exc.description or exc.name))

    @app.after_request
    def add_request_id(response: Response) -> Response:
        response.headers["X-Request-Id"] = request_id(request.headers)
        return response

    return app
