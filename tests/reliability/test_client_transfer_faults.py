"""Faults on the wire, through a fault-injecting proxy in front of the local Hub: every fault ends in
success after retries (resuming with Range) or in a clear ``error:`` within a bounded time, with
nothing half-installed and the store verifying clean.

Faults: HTTP 500 and 503, 429 with a large Retry-After, a connection reset mid-body, a truncated
body, a Content-Length longer or shorter than the body, and a stall.
"""

from __future__ import annotations

import random
import time

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

WEIGHTS = "adapter_model.safetensors"  # the LFS file of every seeded adapter (~256 KB)
ONE_OFF = {
    "HTTP 500": lambda at: Fault("status", status=500),
    "HTTP 503": lambda at: Fault("status", status=503),
    "HTTP 429, Retry-After 3600": lambda at: Fault("status", status=429, retry_after=3600),
    "reset mid-body": lambda at: Fault("reset", at=at),
    "truncated body": lambda at: Fault("truncate", at=at),
    "Content-Length too long": lambda at: Fault("length_long", at=at),
    "Content-Length too short": lambda at: Fault("length_short", at=at),
    "stall": lambda at: Fault("stall", at=at, seconds=30),
}


def test_a_one_off_fault_is_retried_and_the_install_completes(seeded, proxy, tally, tmp_path):
    rng = random.Random(19)
    counts = {name: tally(f"one-off {name}", "recovered") for name in ONE_OFF}
    for round_ in range(size(1, 5)):
        for i, (name, make) in enumerate(ONE_OFF.items()):
            repo = f"alice/r{(round_ + i) % 4}"
            home = tmp_path / f"home-{round_}-{i}"
            proxy.clear()
            proxy.add(make(rng.uniform(0.05, 0.95)), marker=WEIGHTS)
            start = time.monotonic()
            result = cli(home, "install", repo, "-q", HF_ENDPOINT=proxy.url, **FAST)
            took = time.monotonic() - start
            ranges = [h.range for h in proxy.hits if WEIGHTS in h.path]
            problems = []
            if result.exit_code != 0:
                problems.append(f"exit {result.exit_code}: {result.stderr[-300:]}")
            if proxy.pending():
                problems.append("the fault was never injected")
            if not installed_matches(home, seeded, repo):
                problems.append("installed files differ from the pushed ones")
            if name in ("reset mid-body", "truncated body", "stall") and not any(ranges[1:]):
                problems.append(f"no resume with Range after a mid-body fault: {ranges}")
            waited = name not in ("Content-Length too long", "Content-Length too short")  # those need no wait
            if "Traceback" in result.stderr or (waited and "warning:" not in result.stderr):
                problems.append(f"the retry was not shown as one warning line: {result.stderr[-300:]}")
            if partial_files(home) or verify_clean(home):
                problems.append("partial files left, or verify failed")
            if took > 15:
                problems.append(f"took {took:.1f} s")
            counts[name].record(not problems, f"{name} on {repo}: {problems}")
    tally.check()


# A body that is complete before its (too long) Content-Length runs out verifies and installs; every
# other persistent fault ends in a clear error (a Content-Length that always stops short looks like a
# file of the wrong size: an integrity error).
PERSISTENT = {
    "HTTP 500": Fault("status", status=500),
    "HTTP 429, Retry-After 3600": Fault("status", status=429, retry_after=3600),
    "reset mid-body": Fault("reset", at=0.5),
    "truncated body": Fault("truncate", at=0.5),
    "Content-Length too long": Fault("length_long", at=0.5),
    "Content-Length too short": Fault("length_short", at=0.5),
    "stall": Fault("stall", at=0.5, seconds=30),
}


def test_a_persistent_fault_ends_in_a_clear_error_within_a_bounded_time(seeded, proxy, tally, tmp_path):
    counts = {name: tally(f"persistent {name}", "installed, or a clear error then a clean rerun")
              for name in PERSISTENT}
    for round_ in range(size(1, 3)):
        for i, (name, fault) in enumerate(PERSISTENT.items()):
            repo = f"alice/r{i % 4}"
            home = tmp_path / f"home-{round_}-{i}"
            proxy.clear()
            proxy.add(*[fault] * 12, marker=WEIGHTS)  # more faults than attempts
            start = time.monotonic()
            result = cli(home, "install", repo, "-q", HF_ENDPOINT=proxy.url, ADAPTERHUB_RETRIES="1", **FAST)
            took = time.monotonic() - start
            err = result.stderr
            problems = []
            if name == "Content-Length too long":
                if result.exit_code != 0 or not installed_matches(home, seeded, repo):
                    problems.append(f"a complete body was not accepted: {err[-400:]}")
                counts[name].record(not problems, f"{name}: {problems}")
                continue
            if result.exit_code != 1 or "Traceback" in err:
                problems.append(f"exit {result.exit_code}: {err[-400:]}")
            error = err[err.find("error: "):]
            if not error.startswith("error: ") or WEIGHTS not in error or "hint:" not in error:
                problems.append(f"the error does not name the file or say what to do: {err[-400:]}")
            if proxy.url not in error:
                problems.append(f"the error does not name the endpoint: {error}")
            if visible_installs(home) or verify_clean(home):
                problems.append("something became visible in the store, or verify failed")
            if took > 20:
                problems.append(f"took {took:.1f} s")
            proxy.clear()  # the network heals: a rerun completes
            rerun = cli(home, "install", repo, "-q", HF_ENDPOINT=proxy.url, **FAST)
            if rerun.exit_code != 0 or not installed_matches(home, seeded, repo) or verify_clean(home):
                problems.append(f"the rerun did not complete: {rerun.stderr[-300:]}")
            counts[name].record(not problems, f"{name}: {problems}")
    tally.check()


def test_retry_after_is_capped_shown_and_bounded_by_the_install_wait_budget(seeded, proxy, tally, tmp_path):
    count = tally("429 with Retry-After 3600", "capped and shown, or refused by the wait budget")
    proxy.add(Fault("status", status=429, retry_after=3600), marker=WEIGHTS)
    start = time.monotonic()
    result = cli(tmp_path / "h1", "install", "alice/r0", "-q", HF_ENDPOINT=proxy.url, ADAPTERHUB_RETRY_AFTER_MAX="1")
    took = time.monotonic() - start
    shown = "the server asked to wait 3600 s; waiting 1 s (capped by ADAPTERHUB_RETRY_AFTER_MAX)" in result.stderr
    count.record(result.exit_code == 0 and shown and took < 10, f"exit {result.exit_code} in {took:.1f} s: {result.stderr}")

    # The wait budget of the whole install: a Retry-After it cannot pay for ends the install at once.
    proxy.clear()
    proxy.add(*[Fault("status", status=429, retry_after=3600)] * 3, marker=WEIGHTS)
    start = time.monotonic()
    result = cli(tmp_path / "h2", "install", "alice/r1", "-q", HF_ENDPOINT=proxy.url, ADAPTERHUB_MAX_WAIT="0.5")
    took = time.monotonic() - start
    bounded = "would exceed the 0.5 s an install may wait (ADAPTERHUB_MAX_WAIT)" in result.stderr
    count.record(result.exit_code == 1 and bounded and took < 5 and not visible_installs(tmp_path / "h2"),
                 f"exit {result.exit_code} in {took:.1f} s: {result.stderr}")
    tally.check()


def test_metadata_requests_are_retried_too(seeded, proxy, tally, tmp_path):
    count = tally("HTTP 500/429 on the Hub's API", "recovered")
    for i, fault in enumerate([Fault("status", status=500), Fault("status", status=429, retry_after=1)]):
        proxy.clear()
        proxy.add(fault, marker="/api/models/")
        home = tmp_path / f"h{i}"
        result = cli(home, "install", f"alice/r{i}", "-q", HF_ENDPOINT=proxy.url, **FAST)
        count.record(result.exit_code == 0 and not proxy.pending() and installed_matches(home, seeded, f"alice/r{i}"),
                     result.stderr[-300:])
    tally.check()


def test_bad_download_settings_are_usage_errors(tmp_path):
    result = cli(tmp_path / "h", "install", "alice/r0", ADAPTERHUB_MAX_WAIT="soon")
    assert result.exit_code == 2 and "ADAPTERHUB_MAX_WAIT='soon' is not a number of seconds" in result.stderr
