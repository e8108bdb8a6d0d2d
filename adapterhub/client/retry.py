"""When and how long a transfer waits before it tries again, and how an install is interrupted.

Pure policy, no I/O and no connections (:mod:`adapterhub.client.remote` opens them and asks this
module what to do after each failure):

* :class:`RetryPolicy`: how many times a file is tried again after a transfer error (a reset, a
  truncated body, a stall, HTTP 408/429/5xx), the longest silence a read may take, the cap on a
  server's ``Retry-After`` and the total time an install may spend waiting. Read from
  :class:`~adapterhub.settings.Settings` (``ADAPTERHUB_RETRIES``, ``ADAPTERHUB_READ_TIMEOUT``,
  ``ADAPTERHUB_RETRY_AFTER_MAX``, ``ADAPTERHUB_MAX_WAIT``).
* :class:`Waits`: one per install, shared by its download threads: the wait budget and the cancel
  switch. Every wait goes through :meth:`Waits.sleep`, which Ctrl-C ends at once.
* :class:`Transient`: a failure worth another try, with what the user should be told.

An install therefore ends, whatever the server does, after at most ``retries + 1`` attempts per
file, each silent for at most ``read_timeout_s``, and at most ``max_wait_s`` seconds of waiting in
all (backoff, ``Retry-After`` and the silences that ended in a read timeout count against it).
"""

from __future__ import annotations

import email.utils
import logging
import threading
import time
from dataclasses import dataclass

from ..settings import Settings

log = logging.getLogger("adapterhub.client")

#: HTTP statuses that a later try may not get: timeouts, rate limits and server errors.
RETRY_STATUSES = frozenset({408, 429, 500, 502, 503, 504})


@dataclass(frozen=True)
class RetryPolicy:
    retries: int = 5  # further attempts per file after the first
    read_timeout_s: float = 30.0  # longest silence while waiting for an answer or a body chunk
    retry_after_max_s: float = 60.0  # a server's Retry-After is obeyed up to this
    max_wait_s: float = 180.0  # all waiting of one install together
    backoff_s: float = 1.0  # first wait after an error without Retry-After; doubles, up to backoff_max_s
    backoff_max_s: float = 8.0

    @classmethod
    def from_settings(cls, settings: Settings) -> RetryPolicy:
        return cls(retries=settings.retries, read_timeout_s=settings.read_timeout,
                   retry_after_max_s=settings.retry_after_max, max_wait_s=settings.max_wait)

    def backoff(self, attempt: int) -> float:
        """The wait before attempt ``attempt + 1`` (``attempt`` >= 1) when the server named none."""
        return min(self.backoff_max_s, self.backoff_s * 2 ** (attempt - 1))

    def describe(self) -> str:
        return (f"{self.retries} retries, {self.read_timeout_s:g} s read timeout, Retry-After capped at "
                f"{self.retry_after_max_s:g} s, {self.max_wait_s:g} s of waiting in all")


SETTINGS_HINT = ("ADAPTERHUB_RETRIES, ADAPTERHUB_READ_TIMEOUT, ADAPTERHUB_RETRY_AFTER_MAX and ADAPTERHUB_MAX_WAIT "
                 "set how patient an install is")


class Transient(Exception):
    """A failed attempt that another one may fix. ``reason`` is for people ("connection reset after
    1.5 MB"); ``retry_after`` is the server's Retry-After in seconds, if it sent one; ``stalled``
    is the silence (seconds) that ended in a read timeout."""

    def __init__(self, reason: str, *, status: int | None = None, retry_after: float | None = None,
                 stalled: float = 0.0, restart: bool = False, short_end: bool = False) -> None:
        super().__init__(reason)
        self.reason, self.status, self.retry_after, self.stalled = reason, status, retry_after, stalled
        self.restart = restart  # the bytes so far cannot be resumed: start the file again
        self.short_end = short_end  # a well-formed answer that ended before the expected size


class Cancelled(Exception):
    """Raised inside a download thread when the install was interrupted (Ctrl-C); never escapes
    :func:`adapterhub.client.remote.fetch_files`, which raises KeyboardInterrupt instead."""


class GiveUp(Exception):
    """No attempt is left, or the wait budget is spent: ``reason`` says which, for the error."""


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delay-seconds or an HTTP date); None if absent or unreadable."""
    if value is None:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when is None or when.tzinfo is None:
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


class Waits:
    """The wait budget and the cancel switch of one install, shared by its download threads."""

    def __init__(self, policy: RetryPolicy) -> None:
        self.policy = policy
        self.cancel = threading.Event()
        self._lock = threading.Lock()
        self._spent = 0.0

    @property
    def spent(self) -> float:
        return self._spent

    @property
    def cancelled(self) -> bool:
        return self.cancel.is_set()

    def check(self) -> None:
        if self.cancel.is_set():
            raise Cancelled()

    def charge(self, seconds: float) -> None:
        """Count time already lost (a silence that ended in a read timeout) against the budget."""
        with self._lock:
            self._spent += max(0.0, seconds)

    def plan(self, failure: Transient, attempt: int, what: str) -> float:
        """How long to wait after ``attempt`` failed with ``failure``, telling the user why; raises
        GiveUp when no attempt is left or the budget cannot pay for the wait."""
        policy = self.policy
        self.charge(failure.stalled)
        attempts = f"{attempt} attempt{'s' if attempt > 1 else ''}"
        if attempt > policy.retries:
            raise GiveUp(f"gave up after {attempts}")
        if failure.retry_after is not None:
            wait = min(failure.retry_after, policy.retry_after_max_s)
            asked = f"the server asked to wait {failure.retry_after:g} s"
            note = (f"{asked}; waiting {wait:g} s (capped by ADAPTERHUB_RETRY_AFTER_MAX)"
                    if wait < failure.retry_after else f"{asked}; waiting {wait:g} s")
        else:
            wait = policy.backoff(attempt)
            note = f"retrying in {wait:g} s"
        with self._lock:
            left = policy.max_wait_s - self._spent
            if wait > left:
                raise GiveUp(f"gave up after {attempts}: waiting {wait:g} s more would exceed the "
                             f"{policy.max_wait_s:g} s an install may wait (ADAPTERHUB_MAX_WAIT)")
            self._spent += wait
        log.warning("%s: %s; %s (retry %d of %d)", what, failure.reason, note, attempt, policy.retries)
        return wait

    def sleep(self, seconds: float) -> None:
        """Wait ``seconds``, or less if the install is interrupted (then raise Cancelled)."""
        if self.cancel.wait(seconds):
            raise Cancelled()
