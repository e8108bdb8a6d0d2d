"""File transfers (adapterhub.client.download) against the local Hub through a fault-injecting
proxy: one GET per attempt, resumed with Range, restarted when the server ignores Range, never
retried inside huggingface_hub's own backoff; an interrupt stops every thread at once."""

from __future__ import annotations

import _thread
import hashlib
import os
import signal
import threading
import time
from pathlib import Path

import pytest

from adapterhub.client.download import FetchJob, fetch_files
from adapterhub.client.models import FileEntry
from adapterhub.errors import DownloadError
from adapterhub.settings import get_settings
from support.fault_proxy import Fault, FaultProxy

from .conftest import TOKEN

SIZE = 3 * 1024 * 1024


@pytest.fixture(scope="module")
def big(tmp_path_factory):
    from huggingface_hub import HfApi

    from adapterhub.server.testing import running_hub

    root = tmp_path_factory.mktemp("download")
    (root / "src").mkdir()
    data = os.urandom(SIZE)
    (root / "src" / "w.bin").write_bytes(data)
    with running_hub(root / "hub", {"alice": TOKEN}, lfs_threshold=1024 * 1024) as hub:
        api = HfApi(endpoint=hub.url, token=TOKEN)
        api.create_repo("alice/big")
        commit = api.upload_folder(repo_id="alice/big", folder_path=root / "src").oid
        yield hub, commit, data


def _job(commit: str, tmp_path: Path, data: bytes) -> FetchJob:
    entry = FileEntry("w.bin", len(data), hashlib.sha256(data).hexdigest(), "hub-lfs")
    return FetchJob("alice/big", commit, entry, tmp_path / "w.incomplete")


def _fetch(proxy: FaultProxy, job: FetchJob, **env: str):
    os.environ.update({"ADAPTERHUB_READ_TIMEOUT": "1", **env})
    return fetch_files(get_settings(endpoint=proxy.url), [job], progress=False)


def test_a_reset_is_resumed_with_range(big, tmp_path):
    hub, commit, data = big
    with FaultProxy(hub.url) as proxy:
        proxy.add(Fault("reset", at=0.5), Fault("truncate", at=0.5))
        (fetched,) = _fetch(proxy, job := _job(commit, tmp_path, data))
        ranges = [h.range for h in proxy.hits]
    assert fetched.size == SIZE and fetched.sha256 == hashlib.sha256(data).hexdigest()
    assert job.partial.read_bytes() == data
    assert ranges[0] is None and all(r and r.startswith("bytes=") for r in ranges[1:]) and len(ranges) == 3


def test_a_server_that_ignores_range_gets_a_fresh_start(big, tmp_path):
    hub, commit, data = big
    job = _job(commit, tmp_path, data)
    job.partial.write_bytes(data[:1000])  # from an earlier, interrupted run
    with FaultProxy(hub.url) as proxy:
        proxy.add(Fault("drop_range"))
        (fetched,) = _fetch(proxy, job)
        assert [(h.range, h.status) for h in proxy.hits] == [("bytes=1000-", 200)]
    assert fetched.size == SIZE and fetched.resumed == 0 and job.partial.read_bytes() == data


def test_a_resumed_download_reports_what_it_resumed(big, tmp_path):
    hub, commit, data = big
    job = _job(commit, tmp_path, data)
    job.partial.write_bytes(data[:12345])
    with FaultProxy(hub.url) as proxy:
        (fetched,) = _fetch(proxy, job)
        assert [h.range for h in proxy.hits] == ["bytes=12345-"]
    assert fetched.resumed == 12345 and fetched.sha256 == hashlib.sha256(data).hexdigest()


def test_an_http_error_no_retry_fixes_is_reported_at_once(big, tmp_path):
    hub, commit, data = big
    job = FetchJob("alice/big", commit, FileEntry("missing.bin", 10, "0" * 64, "index"), tmp_path / "m.incomplete")
    with FaultProxy(hub.url) as proxy:
        with pytest.raises(DownloadError, match=r"alice/big@\w{12}/missing.bin: file not found"):
            _fetch(proxy, job)
        assert len(proxy.hits) == 1


class _CtrlC:
    """Ctrl-C for the main thread from ``delay`` seconds on, pressed again every 0.25 s until the test
    disarms it: CPython drops a KeyboardInterrupt that lands while the main thread runs a finaliser
    (``__del__``, a weakref callback during garbage collection), as it would drop a real Ctrl-C there.
    Only armed presses raise, so none reaches the test after it has seen one."""

    def __init__(self, delay: float) -> None:
        self.delay, self.armed, self.stop = delay, True, threading.Event()
        self.presser = threading.Thread(target=self._press, daemon=True)

    def _handler(self, signum, frame) -> None:
        if self.armed:
            raise KeyboardInterrupt

    def _press(self) -> None:
        if self.stop.wait(self.delay):
            return
        while True:
            _thread.interrupt_main()  # Ctrl-C, as the main thread sees it
            if self.stop.wait(0.25):
                return

    def __enter__(self) -> _CtrlC:
        self.previous = signal.signal(signal.SIGINT, self._handler)
        self.presser.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.armed = False
        self.stop.set()
        self.presser.join()
        signal.signal(signal.SIGINT, self.previous)


def test_an_interrupt_stops_every_transfer_at_once(big, tmp_path):
    hub, commit, data = big
    job = _job(commit, tmp_path, data)
    with FaultProxy(hub.url) as proxy:
        proxy.throttle = 256 * 1024  # 12 s for the file
        start = time.monotonic()
        with pytest.raises(KeyboardInterrupt), _CtrlC(1.0):  # disarmed before the raise is checked
            _fetch(proxy, job)
        took = time.monotonic() - start
    assert took < 2.5, took
    assert not [t for t in threading.enumerate() if t.name.startswith("adapterhub-download")]
    kept = job.partial.read_bytes()
    assert 0 < len(kept) < SIZE and data.startswith(kept)  # resumable
