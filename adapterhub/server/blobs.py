"""File contents of the local Hub, which repos may use which, and garbage collection.

Contents are stored once, by sha256 (``blobs/ab/abcd...``), whoever uploaded them. Which repo
may *reference* a blob is recorded per repo: an empty marker ``<repo>/owned/<sha256>`` is written
when the content is uploaded to that repo (inline in a commit, or through its LFS batch) and for
every blob of every commit the repo stores. A commit may only name a blob its repo owns, so a
sha256 and size learnt from somewhere else (a lock file, a manifest) never turn into another
repo's file: the content itself has to be sent to this repo. The LFS batch endpoint asks for an
upload unless *this* repo owns the blob, so it tells nothing about other repos either.

:func:`collect_garbage` (``adapterhub hub gc``) deletes blobs that no repo owns any more (after
repo deletions, history rewrites and abandoned uploads), keeping recent ones so that an upload
racing with it is never lost: uploads refresh the blob's time even when the content was there.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import time
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from ..fileio import atomic_write_bytes
from .errors import HubError
from .names import check_sha256
from .objects import TreeEntry, git_blob_sha1

_CHUNK = 1 << 20
OWNED_DIR = "owned"


class BlobStore:
    """The content-addressed blobs under ``<root>/blobs`` (shared by all repos)."""

    def __init__(self, root: Path) -> None:
        self.dir = Path(root) / "blobs"
        self.tmp = Path(root) / "tmp"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.tmp.mkdir(parents=True, exist_ok=True)

    def path(self, sha256: str) -> Path:
        check_sha256(sha256)
        return self.dir / sha256[:2] / sha256

    def has(self, sha256: str, size: int | None = None) -> bool:
        path = self.path(sha256)
        return path.is_file() and (size is None or path.stat().st_size == size)

    def _refresh(self, path: Path) -> None:
        """Mark an existing blob as just used, so a concurrent garbage collection keeps it."""
        try:
            os.utime(path)
        except FileNotFoundError:
            pass

    def put_bytes(self, data: bytes) -> TreeEntry:
        sha256 = hashlib.sha256(data).hexdigest()
        target = self.path(sha256)
        if target.is_file():
            self._refresh(target)
        else:
            atomic_write_bytes(target, data, fsync=True)
        return TreeEntry(sha256=sha256, size=len(data), git_sha1=git_blob_sha1(data), lfs=False)

    def put_stream(self, stream: IO[bytes], expected_sha256: str, expected_size: int) -> TreeEntry:
        """Store an upload, checking it hashes to what the client announced; nothing lands otherwise.

        The whole body is read and checked even when the content is already stored: an upload
        proves that the uploader has the content.
        """
        target = self.path(expected_sha256)
        tmp = self.tmp / f"{uuid.uuid4().hex}.upload"
        digest, sha1, size = hashlib.sha256(), hashlib.sha1(b"blob %d\0" % expected_size), 0
        try:
            with open(tmp, "wb") as fh:
                while chunk := stream.read(_CHUNK):
                    size += len(chunk)
                    if size > expected_size:
                        break
                    digest.update(chunk)
                    sha1.update(chunk)
                    fh.write(chunk)
                fh.flush()
                os.fsync(fh.fileno())
            if size != expected_size or digest.hexdigest() != expected_sha256:
                raise HubError(
                    400, f"Upload does not match: expected sha256 {expected_sha256} and {expected_size} bytes."
                )
            target.parent.mkdir(exist_ok=True)
            if target.is_file():
                self._refresh(target)
            else:
                os.replace(tmp, target)
        finally:
            tmp.unlink(missing_ok=True)
        return TreeEntry(sha256=expected_sha256, size=expected_size, git_sha1=sha1.hexdigest(), lfs=True)

    def git_sha1(self, sha256: str) -> str:
        """The git blob id of a stored blob (read through once)."""
        path = self.path(sha256)
        sha1 = hashlib.sha1(b"blob %d\0" % path.stat().st_size)
        with open(path, "rb") as fh:
            while chunk := fh.read(_CHUNK):
                sha1.update(chunk)
        return sha1.hexdigest()

    def iter_all(self) -> Iterator[Path]:
        for sub in sorted(self.dir.iterdir()):
            if sub.is_dir():
                yield from (p for p in sorted(sub.iterdir()) if p.is_file())


# --- which repo owns which blob ----------------------------------------------------------------


def mark_owned(repo_path: Path, sha256s: Iterable[str]) -> None:
    """Record that the repo at ``repo_path`` may reference these blobs."""
    owned = repo_path / OWNED_DIR
    owned.mkdir(exist_ok=True)
    for sha256 in set(sha256s):
        marker = owned / check_sha256(sha256)
        if not marker.exists():
            marker.touch()


def owns(repo_path: Path, sha256: str) -> bool:
    return (repo_path / OWNED_DIR / check_sha256(sha256)).is_file()


def disown(repo_path: Path, sha256s: Iterable[str]) -> None:
    for sha256 in set(sha256s):
        (repo_path / OWNED_DIR / check_sha256(sha256)).unlink(missing_ok=True)


# --- garbage collection ------------------------------------------------------------------------


@dataclass(frozen=True)
class GcReport:
    """What :func:`collect_garbage` found and did (``dry_run``: what it would do)."""

    blobs_kept: int
    blobs_removed: int
    bytes_freed: int
    recent_kept: int  # unowned, but younger than the grace period
    tmp_removed: int
    dry_run: bool


def collect_garbage(root: Path, *, min_age_s: float = 3600.0, dry_run: bool = False) -> GcReport:
    """Delete the blobs no repo owns, and leftovers of interrupted uploads, older than ``min_age_s``."""
    root = Path(root)
    store = BlobStore(root)
    live = {marker.name for marker in (root / "repos").glob(f"*/*/*/{OWNED_DIR}/*")}
    cutoff = time.time() - min_age_s
    kept = removed = freed = recent = 0
    for path in store.iter_all():
        if path.name in live:
            kept += 1
            continue
        stat = path.stat()
        if stat.st_mtime > cutoff:
            recent += 1
            continue
        if path.name in {m.name for m in (root / "repos").glob(f"*/*/*/{OWNED_DIR}/{path.name}")}:
            kept += 1  # owned since the scan started
            continue
        removed += 1
        freed += stat.st_size
        if not dry_run:
            path.unlink(missing_ok=True)
    tmp_removed = 0
    for leftover in store.tmp.iterdir():  # partial uploads, repos half built or half deleted
        if leftover.name.endswith((".upload", ".repo", ".deleted")) and leftover.stat().st_mtime <= cutoff:
            tmp_removed += 1
            if not dry_run:
                if leftover.is_dir():
                    shutil.rmtree(leftover, ignore_errors=True)
                else:
                    leftover.unlink(missing_ok=True)
    return GcReport(kept, removed, freed, recent, tmp_removed, dry_run)
