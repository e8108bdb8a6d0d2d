"""A ``adapterhub hub serve --demo`` subprocess, read the way a user (or the README) reads it."""

from __future__ import annotations

import contextlib
import json
import os
import queue
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
READY = "Serving on "


def bundled_entry(name: str) -> dict:
    """The registry entry as the source tree ships it (read as plain JSON, not through adapterhub)."""
    return json.loads((ROOT / "registry_index" / f"{name}.json").read_text(encoding="utf-8"))


@dataclass
class DemoHub:
    url: str
    process: subprocess.Popen
    stdout_lines: list[str]
    stderr_path: Path

    def stderr(self) -> str:
        return self.stderr_path.read_text(encoding="utf-8", errors="replace")


@contextlib.contextmanager
def serve_demo_hub(
    root: Path, *args: str, env: dict[str, str] | None = None, ready_prefix: str = READY, timeout_s: float = 90
) -> Iterator[DemoHub]:
    """Start ``adapterhub hub serve --root ROOT --port 0 --demo ARGS``; yield once the ready line
    ("Serving on URL", or the JSON object with ``--json``) is printed."""
    stderr_path = root.parent / f"{root.name}-{os.getpid()}-{threading.get_ident()}.stderr"
    with open(stderr_path, "w", encoding="utf-8") as err:
        process = subprocess.Popen(
            [sys.executable, "-m", "adapterhub", "hub", "serve", "--root", str(root), "--port", "0", "--demo", *args],
            stdout=subprocess.PIPE, stderr=err, stdin=subprocess.DEVNULL, text=True,
            env={**os.environ, **(env or {})},
        )
    lines: queue.Queue[str | None] = queue.Queue()
    seen: list[str] = []

    def pump() -> None:
        for line in process.stdout:
            lines.put(line)
        lines.put(None)

    threading.Thread(target=pump, daemon=True).start()
    try:
        url = None
        while url is None:
            line = lines.get(timeout=timeout_s)
            if line is None:
                process.wait(timeout=10)
                raise RuntimeError(f"hub exited with {process.returncode}:\n{stderr_path.read_text()}")
            seen.append(line)
            if line.startswith(ready_prefix):
                url = json.loads(line)["url"] if ready_prefix == "{" else line[len(READY):].strip()
        yield DemoHub(url, process, seen, stderr_path)
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
