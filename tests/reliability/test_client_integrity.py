"""Changed bytes: on the server, on the wire, in the store and in a partial download. Every change is
detected, names the file, and nothing is installed from it; the store verifies clean afterwards and
a repair (a rerun, or ``install --force``) completes."""

from __future__ import annotations

import os
import random
import stat
from pathlib import Path

import pytest

from .client_support import (
    FAST,
    Fault,
    cli,
    installed_matches,
    partial_files,
    proxy,  # noqa: F401 (fixture)
    seeded,  # noqa: F401 (fixture)
    size,
    tally,  # noqa: F401 (fixture)
    verify_clean,
    visible_installs,
)

pytestmark = pytest.mark.reliability

FILES = ("adapter_model.safetensors", "adapter_config.json")


def _flip(path: Path, offset: int) -> None:
    """Change one byte of ``path`` in place (read-only files too), keeping its size."""
    mode = path.stat().st_mode
    os.chmod(path, mode | stat.S_IWUSR)
    with open(path, "r+b") as fh:
        fh.seek(offset)
        byte = fh.read(1)
        fh.seek(offset)
        fh.write(bytes([byte[0] ^ 0x5A]))
    os.chmod(path, mode)


def test_a_changed_byte_on_the_server_is_detected(seeded, tally, tmp_path):
    rng = random.Random(7)
    count = tally("changed byte on the server", "detected, nothing installed")
    for i in range(size(4, 100)):
        repo, name = f"alice/r{rng.randrange(4)}", FILES[i % 2]
        content = (seeded.adapters[repo] / name).read_bytes()
        copies = seeded.stored_copies(content)
        offset = rng.randrange(len(content))
        for copy in copies:
            _flip(copy, offset)
        try:
            home = tmp_path / f"h{i}"
            result = cli(home, "install", repo, "-q", HF_ENDPOINT=seeded.url)
        finally:
            for copy in copies:
                _flip(copy, offset)  # the same flip again restores the byte
        detected = (result.exit_code == 1 and "failed verification" in result.stderr and name in result.stderr
                    and seeded.url in result.stderr)
        count.record(bool(copies) and detected and not visible_installs(home) and verify_clean(home) is None,
                     f"{name}@{offset} of {repo} ({len(copies)} stored copies): {result.stderr[-300:]}")
    tally.check()


def test_a_byte_changed_on_the_wire_is_detected_and_a_rerun_completes(seeded, proxy, tally, tmp_path):
    rng = random.Random(8)
    count = tally("byte changed in transit", "detected, then a clean rerun")
    for i in range(size(2, 20)):
        repo, home = f"alice/r{i % 4}", tmp_path / f"h{i}"
        proxy.clear()
        proxy.add(Fault("flip", at=rng.random()), marker="adapter_model.safetensors")
        result = cli(home, "install", repo, "-q", HF_ENDPOINT=proxy.url, **FAST)
        detected = result.exit_code == 1 and "adapter_model.safetensors: sha256" in result.stderr
        clean = not visible_installs(home) and verify_clean(home) is None
        rerun = cli(home, "install", repo, "-q", HF_ENDPOINT=proxy.url, **FAST)
        count.record(detected and clean and rerun.exit_code == 0 and installed_matches(home, seeded, repo),
                     f"{result.stderr[-300:]} / rerun: {rerun.stderr[-200:]}")
    tally.check()


def test_a_changed_byte_in_the_store_is_found_by_verify_and_repaired_by_force(seeded, tally, tmp_path):
    rng = random.Random(9)
    count = tally("changed byte in the store", "detected by verify, repaired by install --force")
    home = tmp_path / "home"
    for i in range(4):
        assert cli(home, "install", f"alice/r{i}", "-q", HF_ENDPOINT=seeded.url).exit_code == 0
    for i in range(size(4, 50)):
        repo, name = f"alice/r{rng.randrange(4)}", FILES[i % 2]
        folder = next(p.with_suffix("") for p in visible_installs(home) if repo.split("/")[1] in str(p))
        target = folder / name
        _flip(target, rng.randrange(target.stat().st_size))
        found = cli(home, "verify")
        detected = found.exit_code == 1 and name in found.stderr + found.stdout
        repair = cli(home, "install", repo, "--force", "-q", HF_ENDPOINT=seeded.url)
        count.record(detected and repair.exit_code == 0 and verify_clean(home) is None
                     and installed_matches(home, seeded, repo),
                     f"{name} of {repo}: verify said {found.stdout[-200:]}{found.stderr[-200:]}")
    tally.check()


def test_a_changed_partial_download_is_fetched_again(seeded, proxy, tally, tmp_path):
    rng = random.Random(10)
    count = tally("changed byte in a partial download", "recovered by the rerun")
    for i in range(size(2, 20)):
        repo, home = f"alice/r{i % 4}", tmp_path / f"h{i}"
        proxy.clear()
        proxy.add(Fault("reset", at=rng.uniform(0.3, 0.9)), marker="adapter_model.safetensors")
        first = cli(home, "install", repo, "-q", HF_ENDPOINT=proxy.url, ADAPTERHUB_RETRIES="0", **FAST)
        partial = [p for p in partial_files(home) if p.stat().st_size > 0]
        if first.exit_code != 1 or not partial:
            count.record(False, f"no partial file was left: {first.stderr[-300:]}")
            continue
        big = max(partial, key=lambda p: p.stat().st_size)
        _flip(big, rng.randrange(big.stat().st_size))
        proxy.clear()
        rerun = cli(home, "install", repo, "-q", HF_ENDPOINT=proxy.url, **FAST)
        ranges = [h.range for h in proxy.hits if "adapter_model.safetensors" in h.path]
        # resumed first (Range), found wrong, then fetched again from the start
        refetched = len(ranges) == 2 and ranges[0] is not None and ranges[1] is None
        count.record(rerun.exit_code == 0 and refetched and installed_matches(home, seeded, repo)
                     and verify_clean(home) is None, f"requests {ranges}: {rerun.stderr[-300:]}")
    tally.check()
