"""What the client reliability tests share: the size switch, a seeded local Hub behind a fault
proxy, the CLI in-process or as a process, and the tally every test prints.

Sizes: the default (bounded) run tries each case a few times and stays within tens of seconds, so
the whole suite runs it. ``ADAPTERHUB_RELIABILITY_FULL=1`` (or ``python benchmarks/reliability.py``)
tries every case many times; every loop is still bounded in count and in time. All traffic stays on
127.0.0.1. With ``ADAPTERHUB_RELIABILITY_REPORT=FILE`` each tally is also appended to FILE (JSON lines).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from adapterhub.testing import CliResult, run_cli  # noqa: F401 (test modules import them from here)
from support.fault_proxy import Fault, FaultProxy  # noqa: F401

FULL = os.environ.get("ADAPTERHUB_RELIABILITY_FULL", "").strip().lower() in {"1", "true", "yes", "on"}
TOKEN = "tok-alice-reliability-5c1e"
#: Settings that keep one test's waiting short; each test may tighten them.
FAST = {"ADAPTERHUB_READ_TIMEOUT": "1", "ADAPTERHUB_RETRY_AFTER_MAX": "1", "ADAPTERHUB_MAX_WAIT": "20"}


def size(bounded: int, full: int) -> int:
    """How many times to try a case in this run."""
    return full if FULL else bounded


@dataclass
class Tally:
    """Counts for one case: ``tried`` attempts, ``ok`` of them ended as they must (detected,
    recovered, refused...); ``failures`` say how the others ended."""

    name: str
    outcome: str  # what "ok" means: "detected", "recovered", ...
    tried: int = 0
    ok: int = 0
    failures: list[str] = field(default_factory=list)
    started: float = field(default_factory=time.monotonic)
    ended: float = 0.0

    def record(self, ok: bool, why: str = "") -> None:
        self.ended = time.monotonic()
        self.tried += 1
        if ok:
            self.ok += 1
        else:
            self.failures.append(why)

    @property
    def seconds(self) -> float:
        return (self.ended or time.monotonic()) - self.started

    def line(self) -> str:
        return f"reliability: {self.name}: {self.outcome} {self.ok}/{self.tried} ({self.seconds:.1f} s)"


class Tallies:
    """The tallies of one test: ``tallies(name, outcome)`` makes one; :meth:`check` asserts that
    every try ended as it must. All of them are printed when the test ends, pass or fail."""

    def __init__(self) -> None:
        self.made: list[Tally] = []

    def __call__(self, name: str, outcome: str) -> Tally:
        self.made.append(Tally(name, outcome))
        return self.made[-1]

    def check(self) -> None:
        for t in self.made:
            assert t.tried > 0, f"{t.name}: nothing was tried"
        bad = [f"{t.name}: {t.outcome} {t.ok}/{t.tried}; {t.failures[:3]}" for t in self.made if t.ok != t.tried]
        assert not bad, "\n".join(bad)


@pytest.fixture
def tally(capsys) -> Iterator[Tallies]:
    tallies = Tallies()
    yield tallies
    report = os.environ.get("ADAPTERHUB_RELIABILITY_REPORT")
    with capsys.disabled():
        for t in tallies.made:
            print("\n" + t.line(), end="")
            if report:
                with open(report, "a", encoding="utf-8") as fh:
                    fh.write(json.dumps({"case": t.name, "outcome": t.outcome, "ok": t.ok, "tried": t.tried,
                                         "seconds": round(t.seconds, 1), "full": FULL}) + "\n")


# --- the Hub ---------------------------------------------------------------------------------------


def make_adapter(directory: Path, seed: int, weights_bytes: int) -> Path:
    """A PEFT-layout LoRA folder whose weights file holds about ``weights_bytes`` of float32 data."""
    import numpy as np
    from safetensors.numpy import save_file

    directory.mkdir(parents=True, exist_ok=True)
    config = {"peft_type": "LORA", "r": 2, "lora_alpha": 4, "target_modules": ["query"],
              "base_model_name_or_path": "tiny-bert", "task_type": "FEATURE_EXTRACTION", "x-seed": seed}
    (directory / "adapter_config.json").write_text(json.dumps(config, indent=2))
    n = max(2, weights_bytes // 8)
    rng = np.random.default_rng(seed)
    save_file({"base_model.model.encoder.layer.0.attention.self.query.lora_A.weight": rng.standard_normal((2, n // 2)).astype("float32"),
               "base_model.model.encoder.layer.0.attention.self.query.lora_B.weight": rng.standard_normal((n // 2, 2)).astype("float32")},
              str(directory / "adapter_model.safetensors"))
    return directory


def sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


@dataclass
class Seeded:
    """A running Hub with adapters ``alice/r0``, ``alice/r1``, ... (their local copies in ``adapters``)."""

    hub: object
    url: str
    root: Path
    adapters: dict[str, Path]
    commits: dict[str, str]

    def push(self, repo_id: str, folder: Path) -> str:
        from huggingface_hub import HfApi

        api = HfApi(endpoint=self.url, token=TOKEN)
        api.create_repo(repo_id, exist_ok=True)
        commit = api.upload_folder(repo_id=repo_id, folder_path=folder).oid
        self.adapters[repo_id], self.commits[repo_id] = folder, commit
        return commit

    def stored_copies(self, content: bytes) -> list[Path]:
        """Every file under the Hub's root holding exactly ``content`` (wherever the server keeps it)."""
        digest = hashlib.sha256(content).hexdigest()
        return [p for p in (self.root / "hub").rglob("*") if p.is_file() and p.stat().st_size == len(content)
                and sha256(p) == digest]


@pytest.fixture(scope="module")
def seeded(tmp_path_factory) -> Iterator[Seeded]:
    """A Hub (LFS from 64 KB, as for real weights) with four adapters of about 256 KB each."""
    from adapterhub.server.testing import running_hub

    root = tmp_path_factory.mktemp("reliability-hub")
    with running_hub(root / "hub", {"alice": TOKEN}, lfs_threshold=64 * 1024) as hub:
        s = Seeded(hub, hub.url, root, {}, {})
        for i in range(4):
            s.push(f"alice/r{i}", make_adapter(root / "src" / f"r{i}", seed=i, weights_bytes=256 * 1024))
        yield s


@pytest.fixture
def proxy(seeded) -> Iterator[FaultProxy]:
    with FaultProxy(seeded.url) as running:
        yield running


def visible_installs(home: Path) -> list[Path]:
    """Install records in the store (``installed-v1/<key>/<commit>.json``): what ``list`` shows."""
    return sorted(p for p in home.glob("installed-v1/**/*.json") if re.fullmatch(r"[0-9a-f]{40}\.json", p.name))


def partial_files(home: Path) -> list[Path]:
    return sorted(home.glob("downloads-v1/**/*.incomplete"))


def cli(home: Path, *args: str, **env: str) -> CliResult:
    """``adapterhub ARGS`` in-process on the store ``home``, with ``env`` added to the environment."""
    return run_cli(*args, env={"ADAPTERHUB_HOME": str(home), **{k: str(v) for k, v in env.items()}})


def spawn(home: Path, *args: str, env: dict[str, str]) -> subprocess.Popen[str]:
    """``adapterhub ARGS`` as a process of its own (to kill it, or to run several at once)."""
    return subprocess.Popen([sys.executable, "-m", "adapterhub", *args],
                            env={**os.environ, "ADAPTERHUB_HOME": str(home), **env},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def verify_clean(home: Path) -> str | None:
    """None when ``adapterhub verify`` passes on the store ``home``; else what it printed."""
    result = cli(home, "verify")
    return None if result.exit_code == 0 else result.stderr + result.stdout


def installed_matches(home: Path, seeded: Seeded, repo_id: str) -> bool:
    """The store has ``repo_id`` installed, every file equal to what was pushed."""
    folders = [record.with_suffix("") for record in visible_installs(home)]  # <commit>.json beside <commit>/
    source = seeded.adapters[repo_id]
    want = {p.name: sha256(p) for p in source.iterdir()}
    return any(folder.is_dir() and {p.name: sha256(p) for p in folder.iterdir()} == want for folder in folders)
