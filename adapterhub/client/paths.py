"""The one gate every path from an index, lock, manifest or server passes before it touches disk."""

from __future__ import annotations

import os
from pathlib import Path

from ..errors import UnsafePathError


def check_relpath(path: object, *, where: str) -> str:
    """Return ``path`` if it is a safe relative POSIX path, else raise UnsafePathError naming ``where``."""
    problem = None
    if not isinstance(path, str) or not path:
        problem = "is empty or not a string"
    elif path.startswith("/") or (len(path) > 1 and path[1] == ":"):
        problem = "is absolute"
    elif "\\" in path:
        problem = "contains a backslash"
    elif any(ord(c) < 0x20 for c in path):
        problem = "contains a control character"
    else:
        segments = path.split("/")
        if any(s in ("", ".", "..") for s in segments):
            problem = "has an empty, '.' or '..' segment (path traversal)"
    if problem:
        raise UnsafePathError(
            f"{where}: unsafe file path {path!r}: it {problem}",
            hint="file paths must be relative POSIX paths inside the adapter; refusing to install",
        )
    return path  # type: ignore[return-value]


def join_inside(root: Path, relpath: str, *, where: str) -> Path:
    """``root / relpath``, guaranteed (after resolving symlinks) to stay inside ``root``."""
    check_relpath(relpath, where=where)
    target = root / relpath
    real_root = os.path.realpath(root)
    real_target = os.path.realpath(target)
    if os.path.commonpath([real_root, real_target]) != real_root:
        raise UnsafePathError(f"{where}: {relpath!r} resolves outside {root} (symlink?)")
    return target
