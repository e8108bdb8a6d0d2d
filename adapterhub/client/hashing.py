"""sha256 of files and byte streams, and the git blob id the Hub reports for non-LFS files."""

from __future__ import annotations

import hashlib
from pathlib import Path

_CHUNK = 1 << 20


def sha256_file(path: str | Path) -> str:
    """Hex sha256 of a file, read in 1 MiB chunks (hashlib releases the GIL, so threads scale)."""
    with open(path, "rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


def git_blob_sha1(path: str | Path) -> str:
    """The git blob id (``sha1("blob <size>\\0" + bytes)``) that a Hub tree lists as ``oid``."""
    path = Path(path)
    digest = hashlib.sha1(f"blob {path.stat().st_size}\0".encode())  # noqa: S324 - git's id, not security
    with open(path, "rb") as fh:
        while chunk := fh.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def is_sha256(value: object) -> bool:
    return isinstance(value, str) and len(value) == 64 and all(c in "0123456789abcdef" for c in value)


def is_commit(value: object) -> bool:
    return isinstance(value, str) and len(value) == 40 and all(c in "0123456789abcdef" for c in value)


class StreamHasher:
    """The sha256, and when asked the git blob id, of bytes fed in order (a download or a copy)."""

    def __init__(self, size: int, *, git: bool = False) -> None:
        self._sha = hashlib.sha256()
        self._git = hashlib.sha1(f"blob {size}\0".encode()) if git else None  # noqa: S324 - git's id, not security

    def update(self, chunk: bytes) -> None:
        self._sha.update(chunk)
        if self._git is not None:
            self._git.update(chunk)

    @property
    def sha256(self) -> str:
        return self._sha.hexdigest()

    @property
    def git_oid(self) -> str | None:
        return self._git.hexdigest() if self._git is not None else None
