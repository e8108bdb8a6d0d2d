"""Start a local Hub for tests and demos: in a subprocess (:func:`running_hub`) or a thread.

Example::

    with running_hub(tmp_path / "hub", {"alice": "tok-a"}) as hub:
        HfApi(endpoint=hub.url, token="tok-a").create_repo("alice/x")
"""

from __future__ import annotations

import contextlib
import os
import queue
import signal
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from .auth import ORGS_ENV, USERS_ENV
from .serving import LFS_THRESHOLD_ENV, start_in_thread

__all__ = ["RunningHub", "running_hub", "start_in_thread"]

_READY_PREFIX = "Serving on "


class HubStartError(RuntimeError):
    """The server process died or stayed silent before announcing its URL."""


class RunningHub:
    """A ``adapterhub hub serve`` subprocess on 127.0.0.1. Tokens travel by environment, not argv."""

    def __init__(
        self,
        root: Path,
        users: dict[str, str] | None = None,
        *,
        env: dict[str, str] | None = None,
        lfs_threshold: int | None = None,
        orgs: dict[str, list[str]] | None = None,
        inline_uploads: bool = False,
        config: Path | None = None,
        startup_timeout_s: float = 30.0,
    ) -> None:
        self.root = Path(root)
        self.users = dict(users or {})
        self.orgs = dict(orgs or {})
        self.env = dict(env or {})
        self.lfs_threshold = lfs_threshold
        self.inline_uploads = inline_uploads
        self.config = config
        self.startup_timeout_s = startup_timeout_s
        self.url: str = ""
        self.port: int = 0
        self.process: subprocess.Popen[str] | None = None
        self._stderr: IO[str] | None = None

    # --- lifecycle ---------------------------------------------------------------------------

    def start(self, port: int | None = None) -> RunningHub:
        if self.process is not None and self.process.poll() is None:
            raise RuntimeError("this hub is already running")
        env = {**os.environ, **self.env}
        env[USERS_ENV] = ",".join(f"{name}:{token}" for name, token in self.users.items())
        env[ORGS_ENV] = ";".join(f"{org}:{','.join(members)}" for org, members in self.orgs.items())
        if self.lfs_threshold is not None:
            env[LFS_THRESHOLD_ENV] = str(self.lfs_threshold)
        # -P: the working directory stays off sys.path, so a folder named ``adapterhub`` there (a clone,
        # run from its parent) cannot shadow the installed package
        cmd = [sys.executable, "-P", "-m", "adapterhub", "hub", "serve", "--root", str(self.root),
               "--port", str(port or 0)]
        if self.inline_uploads:
            cmd.append("--inline-uploads")
        if self.config is not None:
            cmd += ["--config", str(self.config)]
        self._stderr = tempfile.TemporaryFile("w+", prefix="adapterhub-hub-", suffix=".log")
        self.process = subprocess.Popen(
            cmd, stdout=subprocess.PIPE, stderr=self._stderr, stdin=subprocess.DEVNULL, text=True, env=env
        )
        self.url = self._wait_for_url(self.process)
        self.port = int(self.url.rsplit(":", 1)[1])
        return self

    def _wait_for_url(self, process: subprocess.Popen[str]) -> str:
        lines: queue.Queue[str | None] = queue.Queue()

        def pump(stream: IO[str]) -> None:
            # Keeps draining stdout for the server's whole life so it can never block on a full pipe.
            for line in stream:
                lines.put(line)
            lines.put(None)

        assert process.stdout is not None
        threading.Thread(target=pump, args=(process.stdout,), daemon=True).start()
        try:
            while True:
                line = lines.get(timeout=self.startup_timeout_s)
                if line is None:
                    process.wait(timeout=5)
                    raise HubStartError(f"hub server exited with {process.returncode}:\n{self.stderr_text()}")
                if line.startswith(_READY_PREFIX):
                    return line[len(_READY_PREFIX) :].strip()
        except queue.Empty:
            self._terminate(process)
            raise HubStartError(
                f"hub server did not start within {self.startup_timeout_s:.0f} s:\n{self.stderr_text()}"
            ) from None

    def stderr_text(self) -> str:
        if self._stderr is None:
            return ""
        self._stderr.flush()
        self._stderr.seek(0)
        return self._stderr.read()

    @staticmethod
    def _terminate(process: subprocess.Popen[str], timeout_s: float = 10.0) -> None:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()

    def stop(self) -> None:
        """Graceful stop (SIGTERM, then SIGKILL after 10 s)."""
        if self.process is not None:
            self._terminate(self.process)
            if self.process.stdout:
                self.process.stdout.close()

    def kill(self) -> None:
        """Hard stop, as in a crash: no cleanup runs in the server."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def restart(self) -> RunningHub:
        """Stop and start again on the same root, on the same port when it is still free."""
        self.stop()
        old_port = self.port
        try:
            return self.start(port=old_port)
        except HubStartError:
            return self.start(port=0)

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def close(self) -> None:
        self.stop()
        if self._stderr is not None:
            self._stderr.close()
            self._stderr = None


@contextlib.contextmanager
def running_hub(
    root: Path,
    users: dict[str, str] | None = None,
    *,
    env: dict[str, str] | None = None,
    lfs_threshold: int | None = None,
    orgs: dict[str, list[str]] | None = None,
    inline_uploads: bool = False,
    config: Path | None = None,
) -> Iterator[RunningHub]:
    """Run ``python -m adapterhub hub serve`` on a free port for the duration of the block.

    ``users`` maps name to token, ``orgs`` organisation to members. ``env`` is added to the
    server's environment. ``lfs_threshold`` overrides the size from which files are LFS files
    (the Hub's 10 MiB by default; ``.gitattributes`` patterns apply too); clients upload those
    through git-LFS (``HF_HUB_DISABLE_XET=1``) unless ``inline_uploads`` is set. ``config`` is a
    TOML file of users and organisations (``--config``).
    """
    hub = RunningHub(
        root, users, env=env, lfs_threshold=lfs_threshold, orgs=orgs, inline_uploads=inline_uploads, config=config
    )
    hub.start()
    try:
        yield hub
    finally:
        hub.close()
