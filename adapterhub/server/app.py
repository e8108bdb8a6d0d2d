"""The Flask app of the local Hub: :func:`create_app` builds the WSGI app for one root.

It wires the pieces together and nothing more: the storage (:mod:`.storage`), the users and
tokens (:mod:`.auth`), the request body limit, and one catch-all Flask route that hands every
request to :func:`.routing.dispatch`. The endpoints are registered by importing :mod:`.read_api`
and :mod:`.write_api`, whose handlers carry :func:`.routing.route` decorators.
"""

from __future__ import annotations

import os
from pathlib import Path

from flask import Flask, Response, request
from werkzeug.exceptions import HTTPException

from . import read_api, write_api  # noqa: F401  (their @route decorators fill the route table)
from .auth import Auth
from .errors import HubError
from .routing import HubState, dispatch, error_response
from .storage import HubStorage

MAX_BODY_ENV = "ADAPTERHUB_HUB_MAX_BODY_BYTES"
#: Commits carry non-LFS files inline (base64), so the default leaves room for large adapters.
DEFAULT_MAX_BODY_BYTES = 4 << 30

_ALL_METHODS = ["GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"]


def create_app(
    root: Path | str,
    users: dict[str, str] | None = None,
    *,
    lfs_threshold: int | None = None,
    max_body_bytes: int | None = None,
) -> Flask:
    """The WSGI app serving the Hub stored under ``root``.

    ``lfs_threshold``: files of at least this many bytes are asked to go through git-LFS. Only
    clients running with ``HF_HUB_DISABLE_XET=1`` can do that, so it is off (None) by default and
    every file travels inside the commit.
    ``max_body_bytes``: the largest request body accepted (413 beyond); default
    ``$ADAPTERHUB_HUB_MAX_BODY_BYTES``, else 4 GiB. LFS uploads are bounded by their signed size.
    """
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    state = HubState(HubStorage(root), Auth(users or {}, root), lfs_threshold)
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

    return app
