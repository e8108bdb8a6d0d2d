"""The retry policy (adapterhub.client.retry): bounded attempts, Retry-After capped and shown, one wait
budget per install, waits that Ctrl-C ends at once, and the settings that tune it."""

from __future__ import annotations

import logging
import threading
import time

import pytest

from adapterhub.client.retry import Cancelled, GiveUp, RetryPolicy, Transient, Waits, parse_retry_after
from adapterhub.settings import get_settings


def test_retry_after_is_read_as_seconds_or_an_http_date():
    assert parse_retry_after("120") == 120.0
    assert parse_retry_after(" 0 ") == 0.0
    assert parse_retry_after(None) is None and parse_retry_after("soon") is None and parse_retry_after("-5") is None
    now = 1_700_000_000.0
    assert parse_retry_after("Tue, 14 Nov 2023 22:14:20 GMT", now=now) == pytest.approx(1_700_000_060.0 - now)
    assert parse_retry_after("Tue, 14 Nov 2023 22:00:00 GMT", now=now) == 0.0  # in the past


def test_retry_after_is_capped_and_the_cap_is_shown(caplog):
    waits = Waits(RetryPolicy(retry_after_max_s=60, max_wait_s=1000))
    with caplog.at_level(logging.WARNING, logger="adapterhub.client"):
        wait = waits.plan(Transient("the server answered HTTP 429", status=429, retry_after=3600), 1, "a/b@c/w")
    assert wait == 60
    assert caplog.messages == ["a/b@c/w: the server answered HTTP 429; the server asked to wait 3600 s; waiting 60 s "
                               "(capped by ADAPTERHUB_RETRY_AFTER_MAX) (retry 1 of 5)"]
    assert waits.plan(Transient("x", retry_after=2), 2, "w") == 2  # below the cap: obeyed as is


def test_attempts_and_the_wait_budget_are_bounded():
    policy = RetryPolicy(retries=3, max_wait_s=10, backoff_s=1, backoff_max_s=4)
    waits = Waits(policy)
    assert [waits.plan(Transient("reset"), n, "w") for n in (1, 2, 3)] == [1, 2, 4]
    with pytest.raises(GiveUp, match="gave up after 4 attempts"):
        waits.plan(Transient("reset"), 4, "w")
    assert waits.spent == 7
    with pytest.raises(GiveUp, match=r"waiting 4 s more would exceed the 10 s an install may wait \(ADAPTERHUB_MAX_WAIT\)"):
        Waits(policy).plan(Transient("slow", retry_after=4, stalled=7), 1, "w")  # a stall counts against the budget


def test_the_budget_is_shared_by_the_threads_of_one_install():
    waits = Waits(RetryPolicy(retries=100, max_wait_s=5, backoff_s=1, backoff_max_s=1))
    paid, refused = [], []

    def worker():
        for n in range(1, 4):
            try:
                paid.append(waits.plan(Transient("reset"), n, "w"))
            except GiveUp:
                refused.append(n)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(paid) == 5 and len(refused) == 12 - 5


def test_a_wait_ends_at_once_when_the_install_is_interrupted():
    waits = Waits(RetryPolicy())
    threading.Timer(0.1, waits.cancel.set).start()
    start = time.monotonic()
    with pytest.raises(Cancelled):
        waits.sleep(60)
    assert time.monotonic() - start < 1
    with pytest.raises(Cancelled):
        waits.check()


def test_the_settings_come_from_the_environment(monkeypatch):
    settings = get_settings()
    assert RetryPolicy.from_settings(settings) == RetryPolicy()
    monkeypatch.setenv("ADAPTERHUB_RETRIES", "2")
    monkeypatch.setenv("ADAPTERHUB_READ_TIMEOUT", "0.5")
    monkeypatch.setenv("ADAPTERHUB_RETRY_AFTER_MAX", "0")
    monkeypatch.setenv("ADAPTERHUB_MAX_WAIT", "12.5")
    policy = RetryPolicy.from_settings(get_settings())
    assert (policy.retries, policy.read_timeout_s, policy.retry_after_max_s, policy.max_wait_s) == (2, 0.5, 0, 12.5)
    for name, value in (("ADAPTERHUB_RETRIES", "1.5"), ("ADAPTERHUB_READ_TIMEOUT", "0"),
                        ("ADAPTERHUB_MAX_WAIT", "-1"), ("ADAPTERHUB_RETRY_AFTER_MAX", "inf")):
        monkeypatch.setenv(name, value)
        with pytest.raises(ValueError, match=name):
            get_settings()
        monkeypatch.delenv(name)
