"""Atomic file writes: a reader sees the old file or the complete new one, never a half-written one.

The data goes to a temp file next to the target (same filesystem, so ``os.replace`` is an atomic
rename) and is renamed over it; on any failure the temp file is removed and the target is
untouched. ``fsync=True`` also flushes the data to disk before the rename, for files that must
survive a crash (store records, lock files, index caches), at the cost of a slower write.

The file gets the mode a plain ``open(path, "w")`` would give it, ``0o666`` less the umask (so a
team on a shared filesystem reads each other's lock files, indexes and stores as their umask
allows), not the ``0o600`` of the temp file it was written as; ``mode=`` sets another one.

Pure standard library: importable from anywhere without pulling in torch.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any


def current_umask() -> int:
    """The process's umask, read without changing it where the system shows it (Linux's
    ``/proc/self/status``); elsewhere set and restored at once."""
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def default_file_mode(executable: bool = False) -> int:
    """What ``open()`` (or ``chmod +x``) would give a new file under the current umask."""
    return (0o777 if executable else 0o666) & ~current_umask()


def read_only_mode() -> int:
    """Read-only for whoever the umask lets read (``0o444`` less the umask): for immutable files."""
    return 0o444 & ~current_umask()


def atomic_write_bytes(path: str | Path, data: bytes, *, fsync: bool = False, mode: int | None = None) -> Path:
    """Write ``data`` to ``path`` atomically, creating missing parent folders; returns the path.

    ``mode``: the file's permissions (default: what ``open()`` gives, see the module docstring).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        if hasattr(os, "fchmod"):
            os.fchmod(fd, default_file_mode() if mode is None else mode)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            if fsync:
                fh.flush()
                os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def atomic_write_text(path: str | Path, text: str, *, fsync: bool = False, mode: int | None = None) -> Path:
    """Write ``text`` as UTF-8 to ``path`` atomically (see :func:`atomic_write_bytes`)."""
    return atomic_write_bytes(path, text.encode("utf-8"), fsync=fsync, mode=mode)


def dump_json(data: Any) -> str:
    """adapterhub's canonical JSON text (index, store records, manifests): sorted keys, 2-space
    indent, non-ASCII kept as is, trailing newline, so equal data always gives equal bytes."""
    return json.dumps(data, indent=2, sort_keys=True, ensure_ascii=False) + "\n"
