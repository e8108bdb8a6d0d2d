"""Crashes and races with real processes: ``kill -9`` at random moments of an install never leaves a
visible partial install and a rerun completes; several installs into one store at once all succeed
and the store verifies."""

from __future__ import annotations

import random
import signal
import time

import pytest

from .client_support import (
    cli,
    installed_matches,
    proxy,  # noqa: F401 (fixture)
    seeded,  # noqa: F401 (fixture)
    size,
    spawn,
    tally,  # noqa: F401 (fixture)
    verify_clean,
    visible_installs,
)

pytestmark = pytest.mark.reliability

REPOS = [f"alice/r{i}" for i in range(4)]
QUIET = {"HF_HUB_DISABLE_PROGRESS_BARS": "1"}


def _complete_or_absent(home, seeded) -> str | None:
    """After a crash: each install is either fully there (and equal to what was pushed) or invisible."""
    for record in visible_installs(home):
        repo = "alice/" + record.parent.name
        if not installed_matches(home, seeded, repo):
            return f"{repo} is visible but incomplete"
    return None


def test_kill_9_at_random_moments_then_a_rerun_completes(seeded, proxy, tally, tmp_path):
    rng = random.Random(19)
    count = tally("kill -9 during an install", "nothing half-visible, rerun completes")
    proxy.throttle = 4 * 1024 * 1024  # bytes/s: the 1 MB of downloads takes a noticeable time
    env = {"HF_ENDPOINT": proxy.url, **QUIET}
    start = time.monotonic()
    timing = spawn(tmp_path / "timing", "install", *REPOS, "-q", env=env)
    timing.communicate(timeout=120)
    duration = time.monotonic() - start  # process start, resolve, downloads, publish
    assert timing.returncode == 0
    deadline = time.monotonic() + size(30, 300)  # bounded in time as well as in count
    for i in range(size(3, 20)):
        if time.monotonic() > deadline:
            break
        home = tmp_path / f"h{i}"
        proc = spawn(home, "install", *REPOS, "-q", env=env)
        time.sleep(rng.uniform(0.2, duration))
        proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=30)
        problem = _complete_or_absent(home, seeded)
        rerun = cli(home, "install", *REPOS, "-q", HF_ENDPOINT=proxy.url)
        complete = rerun.exit_code == 0 and all(installed_matches(home, seeded, r) for r in REPOS)
        count.record(problem is None and complete and verify_clean(home) is None,
                     f"killed at moment {i}: {problem}; rerun {rerun.exit_code}: {rerun.stderr[-300:]}")
    tally.check()


def test_concurrent_installs_into_one_store(seeded, proxy, tally, tmp_path):
    count = tally("concurrent installs into one store", "succeeded")
    store_ok = tally("store after concurrent installs", "verified")
    for round_ in range(size(1, 3)):
        home = tmp_path / f"h{round_}"
        procs = [spawn(home, "install", *random.Random(n).sample(REPOS, len(REPOS)), "-q",
                       env={"HF_ENDPOINT": proxy.url, **QUIET}) for n in range(size(3, 8))]
        for proc in procs:
            _, err = proc.communicate(timeout=180)
            count.record(proc.returncode == 0, err[-300:])
        store_ok.record(verify_clean(home) is None and len(visible_installs(home)) == len(REPOS)
                        and all(installed_matches(home, seeded, r) for r in REPOS), f"round {round_}")
    tally.check()
