"""Every snippet in README.md runs, so the README cannot go stale.

How the README's fenced blocks are treated:

* ``sh`` blocks are the two set-up commands. They install the project, so they are not run
  here; instead the test command must be exactly what ``.ci/run`` runs.
* ``bash`` and ``python`` blocks run in order, in one scratch directory, as a newcomer would
  paste them: exported variables carry over from one bash block to the next, and python blocks
  see that environment too.
* A block right after ``<!-- readme: background -->`` is a long-running server ("in another
  terminal"): it starts in the background, the test waits for its ``Serving on`` line, and it is
  stopped at the end.
* A block right after ``<!-- readme: file PATH -->`` is written to PATH instead of being run.
* A block right after ``<!-- readme: compat -->`` builds virtualenvs (minutes each), so it is not
  run; every line must call ``.ci/compat`` with options its ``--help`` documents, and CI runs it.

Two substitutions keep the run isolated, and nothing else is changed: the README's fixed ports
(8765, 8080) become free ports, and ``pip install -e DIR`` (installing the example plugin) installs
into a scratch folder put on PYTHONPATH instead of into the test environment itself.
"""

from __future__ import annotations

import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
README_PORTS = ("8765", "8080")

_FENCE = re.compile(r"(?:<!--\s*readme:\s*(?P<directive>[^>]*?)\s*-->\s*\n)?```(?P<lang>[\w-]*)\n(?P<body>.*?)```", re.S)


@dataclass
class Block:
    lang: str
    body: str
    directive: str
    line: int


def readme_blocks() -> list[Block]:
    text = README.read_text(encoding="utf-8")
    return [
        Block(m["lang"], m["body"], (m["directive"] or "").strip(), text.count("\n", 0, m.start()) + 1)
        for m in _FENCE.finditer(text)
    ]


def test_setup_commands_match_ci():
    setup = [b for b in readme_blocks() if b.lang == "sh"]
    assert len(setup) == 2, "the README has exactly two set-up commands, in ```sh blocks"
    demo, tests = (b.body.strip() for b in setup)
    assert "torch==2.13.0" in demo and "adapterhub demo" in demo
    ci = (ROOT / ".ci" / "run").read_text()
    assert tests in ci, f"the README's test command {tests!r} is not what .ci/run runs"


def _free_port() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return str(s.getsockname()[1])


def _isolate_pip(body: str, site: Path) -> str:
    return re.sub(
        r"pip install -e (\S+)",
        lambda m: f"{shlex.quote(sys.executable)} -m pip install --quiet --no-deps --no-build-isolation "
        f"--target {shlex.quote(str(site))} {m[1]}",
        body,
    )


@pytest.mark.slow
def test_readme_snippets_run(tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    site = tmp_path / "plugin-site"
    env_file = tmp_path / "env.sh"
    ports = {port: _free_port() for port in README_PORTS}
    bin_dir = Path(sys.executable).parent
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("HF_", "ADAPTERHUB_")) or key in ("HF_HUB_DISABLE_TELEMETRY",)
    }
    env.update(
        PATH=f"{bin_dir}{os.pathsep}{env.get('PATH', '')}",
        HOME=str(tmp_path / "home"),
        ADAPTERHUB_HOME=str(tmp_path / "adapterhub-home"),
        HF_HOME=str(tmp_path / "hf-home"),
        PYTHONPATH=str(site),
        HF_HUB_DISABLE_PROGRESS_BARS="1",
    )
    env_file.write_text("")
    servers: list[subprocess.Popen] = []
    ran = 0
    try:
        for block in readme_blocks():
            body = block.body
            for fixed, free in ports.items():
                body = body.replace(fixed, free)
            where = f"README.md line {block.line}"
            if block.directive.startswith("file "):
                target = work / block.directive.split(None, 1)[1]
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_text(body)
                continue
            if block.directive == "compat":
                continue  # checked by test_compat_commands_are_real
            if block.lang not in ("bash", "python"):
                continue
            if block.lang == "python":
                script = tmp_path / f"snippet-{block.line}.py"
                script.write_text(body)
                command = f"source {env_file} && {shlex.quote(sys.executable)} {shlex.quote(str(script))}"
            else:
                script = tmp_path / f"snippet-{block.line}.sh"
                script.write_text(f"set -euo pipefail\nsource {env_file}\n{_isolate_pip(body, site)}\nexport -p > {env_file}\n")
                command = f"bash {shlex.quote(str(script))}"
            if block.directive == "background":
                log = tmp_path / f"server-{block.line}.log"
                proc = subprocess.Popen(
                    ["bash", "-c", f"exec {command}" if block.lang == "python" else command],
                    cwd=work, env=env, stdout=log.open("w"), stderr=subprocess.STDOUT, start_new_session=True,
                )
                servers.append(proc)
                deadline = time.monotonic() + 120
                while "Serving on" not in log.read_text():
                    assert proc.poll() is None, f"{where}: server exited:\n{log.read_text()}"
                    assert time.monotonic() < deadline, f"{where}: no 'Serving on' line:\n{log.read_text()}"
                    time.sleep(0.2)
                ran += 1
                continue
            result = subprocess.run(
                ["bash", "-c", command], cwd=work, env=env, capture_output=True, text=True, timeout=600
            )
            assert result.returncode == 0, (
                f"{where} ({block.lang}) failed with exit {result.returncode}\n"
                f"--- snippet ---\n{body}\n--- stdout ---\n{result.stdout}\n--- stderr ---\n{result.stderr}"
            )
            print(f"--- {where} ---\n{result.stdout}")  # visible with -s, for reading what the README does
            ran += 1
    finally:
        for proc in servers:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
                try:
                    proc.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, signal.SIGKILL)
    assert ran >= 5, f"only {ran} README snippets ran"


def test_accuracy_table_matches_the_training_scripts_metrics():
    """The README's accuracy table is copied from what examples/train_demo_adapters.py measured."""
    import json

    metrics = json.loads((ROOT / "adapterhub" / "demo" / "adapters" / "metrics.json").read_text())["tasks"]
    text = README.read_text(encoding="utf-8")
    for task in metrics.values():
        row = next((line for line in text.splitlines() if line.startswith(f"| `{task['name']}` |")), None)
        assert row is not None, f"no README table row for {task['name']}"
        cells = [c.strip() for c in row.strip("|").split("|")]
        shown = [float(c.rstrip("%")) for c in cells[-3:]]
        measured = [100 * task[k] for k in ("accuracy", "base_untrained_head_accuracy", "chance_accuracy")]
        assert shown == pytest.approx(measured, abs=0.051), (task["name"], shown, measured)


def test_compat_commands_are_real():
    blocks = [b for b in readme_blocks() if b.directive == "compat"]
    assert blocks, "the README shows how to run the compatibility check"
    usage = subprocess.run([sys.executable, str(ROOT / ".ci" / "compat"), "--help"], capture_output=True,
                           text=True, check=True).stdout
    for block in blocks:
        for line in block.body.strip().splitlines():
            words = shlex.split(line.split("#")[0])
            assert words[:2] == ["python3", ".ci/compat"], line
            for word in words[2:]:
                if word.startswith("--"):
                    assert word in usage, f"README.md line {block.line}: {word} is not a .ci/compat option"
