"""The token never leaks: it is grepped in every output of the public commands (successes, every
failure path, retries, a server that echoes the request's headers back) and in every file they
leave (the store, partial downloads, lock files, the huggingface_hub cache)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from .client_support import (
    FAST,
    TOKEN,
    Fault,
    cli,
    proxy,  # noqa: F401 (fixture)
    seeded,  # noqa: F401 (fixture)
    tally,  # noqa: F401 (fixture)
)

pytestmark = pytest.mark.reliability

WEIGHTS = "adapter_model.safetensors"


def test_the_token_is_in_no_output_and_no_file(seeded, proxy, tally, tmp_path):
    outputs = tally("token absent from outputs", "clean")
    files = tally("token absent from files", "clean")
    home = tmp_path / "home"
    env = {"HF_TOKEN": TOKEN, "HF_ENDPOINT": proxy.url, **FAST}
    secret_url = proxy.url.replace("http://", f"http://deploy:{TOKEN}@")

    def run(*args: str, faults: tuple[Fault, ...] = (), marker: str = WEIGHTS, **extra: str) -> None:
        proxy.clear()
        proxy.add(*faults, marker=marker)
        result = cli(home, *args, **{**env, **extra})
        text = result.stdout + result.stderr
        outputs.record(TOKEN not in text and "deploy:" not in text, f"{args}: {text[-400:]}")

    run("install", "alice/r0", "--lock", str(tmp_path / "adapterhub.lock"))  # success, with a lock file
    run("install", "alice/r1", "-q", faults=(Fault("reset", at=0.5), Fault("status", status=503)))  # retries shown
    run("install", "alice/r2", "-q", ADAPTERHUB_RETRIES="0", faults=(Fault("stall", at=0.5, seconds=5),))  # gives up
    run("install", "alice/r2", "-q", faults=(Fault("status", status=400, echo=True),))  # server echoes headers
    run("install", "alice/r3", "-q", marker="/api/models/", faults=(Fault("status", status=401, echo=True),))
    run("install", "alice/no-such-repo", "-q")
    run("install", "alice/r3", "-q", HF_ENDPOINT=secret_url)  # credentials in the endpoint URL
    run("install", "sentiment/x", "-q", "--index", secret_url + "/index.json")  # ... and in an index URL
    run("list", "--json")
    run("verify")
    run("info", "alice/r0")
    run("sync", str(tmp_path / "adapterhub.lock"))
    left = [p for p in (home, Path(os.environ["HF_HOME"]), tmp_path) if p.exists()]
    for path in sorted({f for root in left for f in root.rglob("*") if f.is_file()}):
        data = path.read_bytes()
        files.record(TOKEN.encode() not in data, f"{path} holds the token")
    tally.check()
