"""Running the local Hub app on werkzeug's threaded server, in the foreground or in a thread."""

from __future__ import annotations

import os
import signal
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server

from .app import create_app
from .auth import Accounts

LFS_THRESHOLD_ENV = "ADAPTERHUB_HUB_LFS_THRESHOLD"


class _QuietQueryHandler(WSGIRequestHandler):
    """Access log lines without query strings (LFS upload URLs carry signatures) or headers."""

    quiet = False

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        if self.quiet:
            return
        path = self.path.split("?", 1)[0]
        status = getattr(code, "value", code)
        sys.stderr.write(f'{self.address_string()} "{self.command} {path}" {status}\n')

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (stdlib signature)
        if not self.quiet:
            sys.stderr.write(f"{self.address_string()} {format % args}\n")


def lfs_threshold_from_env() -> int | None:
    value = os.environ.get(LFS_THRESHOLD_ENV, "").strip()
    return int(value) if value else None


def build_server(
    root: Path,
    users: dict[str, str] | Accounts | None = None,
    *,
    orgs: dict[str, Any] | None = None,
    host: str = "127.0.0.1",
    port: int = 0,
    lfs_threshold: int | None = None,
    inline_uploads: bool = False,
    quiet: bool = False,
) -> BaseWSGIServer:
    app = create_app(root, users, orgs=orgs, lfs_threshold=lfs_threshold, inline_uploads=inline_uploads)
    handler = type("HubRequestHandler", (_QuietQueryHandler,), {"quiet": quiet})
    return make_server(host, port, app, threaded=True, request_handler=handler)


def server_url(server: BaseWSGIServer) -> str:
    host = server.host
    if ":" in host:  # IPv6 literal
        host = f"[{host}]"
    return f"http://{host}:{server.port}"


def serve_forever(server: BaseWSGIServer, announce: Callable[[str], None]) -> None:
    """Serve until SIGTERM or SIGINT, then stop accepting and return."""

    def stop(signum: int, frame: Any) -> None:
        # shutdown() waits for serve_forever to notice, so it must not run on this (the serving) thread.
        threading.Thread(target=server.shutdown, daemon=True).start()

    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        announce(f"Serving on {server_url(server)}")
        server.serve_forever(poll_interval=0.1)  # a stop (SIGINT, SIGTERM) is seen within 0.1 s
    finally:
        server.server_close()
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def start_in_thread(
    root: Path,
    users: dict[str, str] | Accounts | None = None,
    *,
    orgs: dict[str, Any] | None = None,
    host: str = "127.0.0.1",
    port: int = 0,
    lfs_threshold: int | None = None,
    inline_uploads: bool = False,
    quiet: bool = True,
) -> tuple[str, Callable[[], None]]:
    """Serve in a daemon thread of this process; returns ``(url, stop)``."""
    server = build_server(
        Path(root), users, orgs=orgs, host=host, port=port, lfs_threshold=lfs_threshold,
        inline_uploads=inline_uploads, quiet=quiet,
    )
    thread = threading.Thread(target=server.serve_forever, name="adapterhub-hub", daemon=True)
    thread.start()

    def stop() -> None:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)

    return server_url(server), stop
