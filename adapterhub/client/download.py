"""File transfers of an install: a pool of download threads, each file resumed with ``Range``
after every transfer error until it is complete or :mod:`adapterhub.client.retry` gives up, and
Ctrl-C that stops them all at once.

Connections are opened by :func:`adapterhub.client.remote.open_file` (one call, one attempt);
this module decides what happens between attempts. Files stream into ``*.incomplete`` files
(named by :mod:`adapterhub.client.stage`, which also checks what arrived against the plan), hashed
once while they arrive. An interrupted or failed download leaves its partial file in place, out
of the store's sight, for the next install to resume.
"""

from __future__ import annotations

import os
import queue
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import DownloadError, ResolutionError
from ..settings import Settings
from .hashing import StreamHasher, is_commit
from .models import FileEntry
from .paths import check_relpath
from .remote import FileStream, check_online, download_headers, open_file, resolve_url, translate_download_error
from .retry import SETTINGS_HINT, Cancelled, GiveUp, RetryPolicy, Transient, Waits

_CHUNK = 1 << 20


@dataclass(frozen=True)
class FetchJob:
    """One file to stream from ``repo_id@commit`` into ``partial`` (``*.incomplete``, resumed).
    ``file.size`` bounds the download; its git blob id is hashed too when no sha256 is known."""

    repo_id: str
    commit: str
    file: FileEntry
    partial: Path

    @property
    def what(self) -> str:
        return f"{self.repo_id}@{self.commit[:12]}/{self.file.path}"


@dataclass(frozen=True)
class Fetched:
    """What arrived for a job: ``size`` bytes (None: more than expected) and their hashes;
    ``resumed``: how many of them were already on disk from an earlier, interrupted run."""

    job: FetchJob
    size: int | None
    sha256: str
    git_oid: str | None
    resumed: int = 0


class _Transfers:
    """The open streams of one :func:`fetch_files` call and its wait budget, so that an interrupt
    cuts every transfer at once."""

    def __init__(self, waits: Waits) -> None:
        self.waits = waits
        self._lock = threading.Lock()
        self._open: set[FileStream] = set()

    def add(self, stream: FileStream) -> None:
        with self._lock:
            self._open.add(stream)
        self.waits.check()  # an abort that came while connecting

    def discard(self, stream: FileStream) -> None:
        with self._lock:
            self._open.discard(stream)

    def abort(self) -> None:
        self.waits.cancel.set()
        with self._lock:
            streams = list(self._open)
        for stream in streams:
            stream.cut()


class _Partial:
    """The ``*.incomplete`` file of one job, open for appending, with the hash of what it holds."""

    def __init__(self, job: FetchJob, progress: Any, waits: Waits) -> None:
        self.size, self.progress = job.file.size, progress
        self.git = job.file.sha256 is None and is_commit(job.file.git_oid)
        self.hasher = StreamHasher(self.size, git=self.git)
        self.oversize = False
        have = job.partial.stat().st_size if job.partial.is_file() else 0
        if have > self.size:  # longer than the file can be: never trust it
            job.partial.unlink()
            have = 0
        if have:  # resume: the bytes already on disk are hashed once, here
            with open(job.partial, "rb") as fh:
                while chunk := fh.read(_CHUNK):
                    waits.check()
                    self.hasher.update(chunk)
        self.have = self.resumed = have
        self._tick(have)
        self.out = open(job.partial, "ab" if have else "wb")  # noqa: SIM115 - closed by close()

    def _tick(self, n: int) -> None:
        if self.progress is not None and n:
            self.progress.update(n)

    def write(self, chunk: bytes) -> None:
        if self.have + len(chunk) > self.size:
            self.oversize = True
            return
        self.out.write(chunk)
        self.hasher.update(chunk)
        self.have += len(chunk)
        self._tick(len(chunk))

    def restart(self) -> None:
        """Forget the bytes so far (the server cannot resume them)."""
        self.out.seek(0)
        self.out.truncate()
        self._tick(-self.have)
        self.hasher, self.have, self.resumed = StreamHasher(self.size, git=self.git), 0, 0

    def close(self, *, complete: bool) -> None:
        self.out.flush()
        if complete:
            os.fsync(self.out.fileno())  # one fsync per file, before it can become a blob
        self.out.close()


def _attempt(url: str, headers: dict[str, str], part: _Partial, transfers: _Transfers) -> None:
    """One GET of the rest of the file, every chunk written as it arrives; Transient if it fell short."""
    before = part.have
    try:
        with open_file(url, headers, start=part.have, read_timeout=transfers.waits.policy.read_timeout_s) as stream:
            try:
                transfers.add(stream)
                if part.have and stream.status != 206:  # the server ignored Range: start over
                    part.restart()
                    before = 0
                elif stream.status == 206 and not stream.content_range.startswith(f"bytes {part.have}-"):
                    raise Transient(f"the server resumed at the wrong offset ({stream.content_range!r})", restart=True)
                for chunk in stream.chunks():
                    transfers.waits.check()
                    part.write(chunk)
                    if part.oversize:
                        return
            finally:
                transfers.discard(stream)
    except Transient as failure:
        transfers.waits.check()  # a transfer cut by an interrupt is not a failure to retry
        if part.have == part.size and not failure.restart:
            return  # every byte arrived before the connection failed (a Content-Length too long)
        if failure.status is None:
            failure.reason += f" after {part.have - before} bytes ({part.have} of {part.size} in all)"
        raise
    if part.have < part.size:  # a well-formed answer, but short of the expected size
        raise Transient(f"the response ended early, after {part.have - before} bytes ({part.have} of {part.size} "
                        "in all)", short_end=True)


def _fetch_one(settings: Settings, job: FetchJob, headers: dict[str, str], progress: Any,
               transfers: _Transfers) -> Fetched:
    """Stream one file, resuming after each transfer error, until it is complete or the policy gives
    up: then a DownloadError naming the file, the endpoint and what to do."""
    check_relpath(job.file.path, where=f"{job.repo_id}@{job.commit[:12]}")
    job.partial.parent.mkdir(parents=True, exist_ok=True)
    waits = transfers.waits
    url = resolve_url(settings, job.repo_id, job.commit, job.file.path)
    part = _Partial(job, progress, waits)
    complete = False
    try:
        attempt = short_ends = 0
        while part.have < part.size and not part.oversize:
            attempt += 1
            try:
                _attempt(url, headers, part, transfers)
            except Transient as failure:
                # A well-formed answer shorter than expected: either its Content-Length lied, or the
                # server's file is shorter than the plan says. Ask for the rest at once: a server with
                # nothing more (HTTP 416, or the same short answer again) has the wrong size, which
                # stage reports; no retry can change that.
                if failure.status == 416 or (failure.short_end and short_ends):
                    break
                if failure.short_end:
                    short_ends += 1
                    continue
                if failure.restart:
                    part.restart()
                try:
                    wait = waits.plan(failure, attempt, job.what)
                except GiveUp as give_up:
                    kept = f"the {part.have} bytes received are kept and the next install resumes them; " if part.have else ""
                    raise DownloadError(
                        f"{job.what}: download from {settings.public_endpoint} failed: {failure.reason}; {give_up}",
                        hint=f"{kept}check that the Hub is reachable and try again later ({SETTINGS_HINT})",
                    ) from None
                waits.sleep(wait)
            except Exception as exc:  # an HTTP error no retry fixes (404, 401, ...)
                raise translate_download_error(exc, job.what, settings) from None
        complete = True
    finally:
        part.close(complete=complete)
    return Fetched(job, None if part.oversize else part.have, part.hasher.sha256, part.hasher.git_oid, part.resumed)


def fetch_files(settings: Settings, jobs: list[FetchJob], *, progress: bool = True, desc: str = "") -> list[Fetched]:
    """Stream every job (files of ALL adapters) through ``settings.max_workers`` threads: one GET
    per file, plus one per retry.

    Pinned to 40-hex commits, so no HEAD round trip is needed. The first error is raised after
    every thread has finished, so no thread is left writing into a staging dir. Ctrl-C (any
    exception in the calling thread) cancels every transfer at once: the threads stop within a
    fraction of a second, the partial files stay resumable, and the exception goes on.
    """
    if not jobs:
        return []
    for job in jobs:
        if not is_commit(job.commit):
            raise ResolutionError(f"{job.repo_id}: refusing to download from a non-commit revision {job.commit!r}")
    check_online(settings, f"{desc or jobs[0].repo_id}: {len(jobs)} file(s) not in the store",
                 hint="run the install once online, or unset HF_HUB_OFFLINE / ADAPTERHUB_OFFLINE")
    headers = download_headers(settings)
    bar = None
    if progress:  # tqdm is only imported when a bar is shown
        from tqdm.auto import tqdm

        # disable=None: a bar only on a terminal, never carriage-return garbage in a log or a pipe.
        bar = tqdm(total=sum(j.file.size for j in jobs) or None, unit="B", unit_scale=True, desc=desc or "download",
                   file=sys.stderr, leave=False, disable=None)
    transfers = _Transfers(Waits(RetryPolicy.from_settings(settings)))
    todo: queue.SimpleQueue[FetchJob] = queue.SimpleQueue()
    for job in sorted(jobs, key=lambda j: -j.file.size):  # largest first: one big file must not start last
        todo.put(job)
    done: queue.SimpleQueue[tuple[FetchJob, Fetched | None, BaseException | None]] = queue.SimpleQueue()

    def work() -> None:
        while not transfers.waits.cancelled:
            try:
                job = todo.get_nowait()
            except queue.Empty:
                return
            try:
                done.put((job, _fetch_one(settings, job, headers, bar, transfers), None))
            except Cancelled:
                return
            except BaseException as exc:  # noqa: BLE001 - handed to the calling thread
                done.put((job, None, exc))

    # Daemon threads: an interrupted process exits at once, never waiting for a silent server.
    threads = [threading.Thread(target=work, name=f"adapterhub-download-{i}", daemon=True)
               for i in range(min(settings.max_workers, len(jobs)))]
    results: list[Fetched] = []
    errors: list[BaseException] = []
    try:
        for thread in threads:
            thread.start()
        while len(results) + len(errors) < len(jobs):
            try:
                _, fetched, exc = done.get(timeout=0.2)  # a timeout keeps Ctrl-C prompt
            except queue.Empty:
                continue
            if exc is not None:
                errors.append(exc)
            elif fetched is not None:
                results.append(fetched)
    except BaseException:
        transfers.abort()
        for thread in threads:  # they stop at their next read; wait at most a second for all
            thread.join(timeout=1.0 / len(threads))
        raise
    finally:
        if bar is not None:
            bar.close()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]
    return results
