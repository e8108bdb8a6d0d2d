"""What the local Hub accepts as a name: repo types, namespaces and repo names, file paths in a
repo, branch and tag names, commit ids and blob ids.

Every check raises a 400 :class:`~.errors.HubError` naming what was refused, and returns its
argument unchanged when it is fine. These rules are what keeps a request from reaching outside
the root: a name never contains ``..`` or a separator, a path never starts with ``/`` or climbs.
"""

from __future__ import annotations

import re

from .errors import HubError

#: URL plural of each repo type -> the singular ``huggingface_hub`` uses in ``repo_type=``.
REPO_TYPES = {"models": "model", "datasets": "dataset", "spaces": "space"}

_NAME_RE = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9._-]{0,94}[A-Za-z0-9_-])?$")
_COMMIT_RE = re.compile(r"^[0-9a-f]{40}$")
_SHA256_RE = re.compile(r"[0-9a-f]{64}")


def is_commit_id(text: str) -> bool:
    """A full 40-hex commit id (the only form of commit id this Hub resolves)."""
    return bool(_COMMIT_RE.match(text))


def check_name(part: str, what: str) -> str:
    """A namespace or repo name: letters, digits, ``-``, ``_``, ``.``; at most 96 characters."""
    if not _NAME_RE.match(part) or ".." in part or part.endswith(".git"):
        raise HubError(400, f"Invalid {what} {part!r}: use letters, digits, '-', '_' and '.', at most 96 characters.")
    return part


def check_repo_path(path: str) -> str:
    """Refuse file paths that could escape a checkout: absolute, ``..``, ``\\``, empty segments."""
    if (
        not path
        or path.startswith("/")
        or "\\" in path
        or "\0" in path
        or any(seg in ("", ".", "..") for seg in path.split("/"))
        or path.split("/")[0] == ".git"
    ):
        raise HubError(400, f"Invalid path in repo: {path!r} (absolute, '..', '\\' or empty segments are refused).")
    return path


def check_ref_name(name: str) -> str:
    """A branch or tag name git would accept, and that cannot be mistaken for a commit id."""
    if (
        not name
        or name.startswith(("/", "-", "refs/"))
        or name.endswith(("/", ".lock"))
        or ".." in name
        or "//" in name
        or re.search(r"[\x00-\x20~^:?*\[\\\x7f]", name)
        or is_commit_id(name)
    ):
        raise HubError(400, f"Invalid branch or tag name {name!r}.")
    return name


def check_sha256(sha256: str) -> str:
    """A blob id: 64 lowercase hex digits."""
    if not _SHA256_RE.fullmatch(sha256):
        raise HubError(400, f"Invalid sha256 {sha256!r}.")
    return sha256
