"""What the local Hub accepts as a name: repo types, user, organisation and repo names, file
paths in a repo, branch and tag names, commit ids and blob ids.

Names follow the Hub's rule (huggingface_hub's ``validate_repo_id``), and are case-insensitive
like on the Hub: ``alice/Foo`` and ``alice/foo`` are one repo, stored under :func:`name_key`.
Every check raises a :class:`~.errors.HubError` naming what was refused and returns its argument
unchanged when it is fine. File paths never reach the file system (blobs are stored by content),
but they do reach clients' disks, so a path that would climb out of a folder there is refused.
"""

from __future__ import annotations

import re

from .errors import HubError, invalid_path

#: URL plural of each repo type -> the singular ``huggingface_hub`` uses in ``repo_type=``.
REPO_TYPES = {"models": "model", "datasets": "dataset", "spaces": "space"}
#: The singular (or None, for models) -> the URL plural.
TYPE_PLURAL = {None: "models", "model": "models", "dataset": "datasets", "space": "spaces"}

#: The Hub's rule: letters, digits, ``_``, ``-``, ``.``; starts and ends with a letter, digit or
#: ``_``; at most 96 characters; no ``--`` or ``..``; not ending in ``.git``.
_NAME_RE = re.compile(r"^[A-Za-z0-9_](?:[A-Za-z0-9_.-]{0,94}[A-Za-z0-9_])?$")
NAME_RULE = (
    "letters, digits, '-', '_' and '.' (at most 96), starting and ending with a letter, digit or '_', "
    "without '--' or '..'"
)
_COMMIT_RE = re.compile(r"^[0-9a-f]{40}$")
_COMMIT_PREFIX_RE = re.compile(r"^[0-9a-fA-F]{5,39}$")
_SHA256_RE = re.compile(r"[0-9a-f]{64}")
_PR_REF_RE = re.compile(r"^refs/pr/([1-9][0-9]{0,8})$")
_WINDOWS_ESCAPE_RE = re.compile(r"^(?:\.\.(?:[\\/]|$)|[\\/]|[A-Za-z]:)")


def is_valid_name(part: str) -> bool:
    return bool(_NAME_RE.match(part)) and ".." not in part and "--" not in part and not part.endswith(".git")


def check_name(part: str, what: str) -> str:
    """A user, organisation or repo name by the Hub's rule (400 otherwise)."""
    if not is_valid_name(part):
        raise HubError(400, f"Invalid {what} {part!r}: use {NAME_RULE}.")
    return part


def name_key(name: str) -> str:
    """The case-insensitive key of a name or ``ns/name`` id."""
    return name.lower()


def is_commit_id(text: str) -> bool:
    """A full 40-hex commit id."""
    return bool(_COMMIT_RE.match(text))


def is_commit_prefix(text: str) -> bool:
    """An abbreviated commit id (5 to 39 hex digits), as ``git`` and the Hub accept."""
    return bool(_COMMIT_PREFIX_RE.match(text))


def pr_number(ref: str) -> int | None:
    """``refs/pr/7`` -> 7; None for anything else."""
    match = _PR_REF_RE.match(ref)
    return int(match.group(1)) if match else None


def check_repo_path(path: str) -> str:
    """A file path a commit may write (422 otherwise, as on the Hub).

    Refused: empty, absolute, empty/``.``/``..`` segments, a ``.git`` folder, NUL, and paths that
    start by climbing or from a root once read the Windows way (``..\\x``, ``\\x``, ``C:x``).
    Other backslashes are ordinary characters in a file name, which the Hub stores.
    """
    if not path:
        raise invalid_path(path, "the path is empty")
    if "\0" in path or "\n" in path or "\r" in path:
        raise invalid_path(path, "control characters are not allowed")
    if path.startswith("/"):
        raise invalid_path(path, "paths in a repo are relative")
    segments = path.split("/")
    if any(seg in ("", ".", "..") for seg in segments):
        raise invalid_path(path, "empty, '.' and '..' segments are not allowed")
    if ".git" in segments:
        raise invalid_path(path, "files under a '.git' folder are not allowed")
    if _WINDOWS_ESCAPE_RE.match(path):
        raise invalid_path(path, "the path would leave the repo's folder on Windows")
    return path


def check_ref_name(name: str) -> str:
    """A branch or tag name git would accept, and that cannot be mistaken for a commit id."""
    if (
        not name
        or name.startswith(("/", "-", "refs/", "."))
        or name.endswith(("/", ".lock", "."))
        or ".." in name
        or "//" in name
        or "@{" in name
        or re.search(r"[\x00-\x20~^:?*\[\\\x7f]", name)
        or is_commit_id(name)
    ):
        raise HubError(400, f"Invalid reference name {name!r}: not a valid git branch or tag name.")
    return name


def check_sha256(sha256: str) -> str:
    """A blob id: 64 lowercase hex digits."""
    if not isinstance(sha256, str) or not _SHA256_RE.fullmatch(sha256):
        raise HubError(400, f"Invalid sha256 {sha256!r}.")
    return sha256
