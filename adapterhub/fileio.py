"""Atomic file writes: a reader sees the old file or the complete new one, never a half-written one.

The data goes to a private temp file next to the target (same filesystem, so ``os.replace`` is an
atomic rename) and is renamed over it; on any failure the temp file is removed and the target is
untouched. ``fsync=True`` also flushes the data to disk before the rename, for files that must
survive a crash (store records, lock files, index caches), at the cost of a slower write.

Pure standard library: importable from anywhere without pulling in torch.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any


def atomic_write_bytes(path: str | Path, data: bytes, *, fsync: bool = False) -> Path:
    """Write ``data`` to ``path`` atomically, creating missing parent folders; returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
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


def atomic_write_text(path: str | Path, text: str, *, fsync: bool = False) -> Path:
    """Write ``text`` as UTF-8 to ``path`` atomically (see :func:`atomic_write_bytes`)."""
    return atomic_write_bytes(path, text.encode("utf-8"), fsync=fsync)


def dump_json(data: Any) -> str:
    """adapterhub's canonical JSON text (index, store records, manifests): sorted keys, 2-space
    indent, non-ASCII kept as is, trailing newline, so equal data always gives equal bytes."""
    return json.dumps(data, indent=2, sort_keys=True, ensure_ascii=False) + "\n"
