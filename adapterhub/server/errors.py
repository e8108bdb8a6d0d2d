"""The one exception of the local Hub server, :class:`HubError`, and its common constructors.

A ``HubError`` is an expected failure that the router turns into an HTTP answer: its status, a
Hub error code (sent as ``X-Error-Code``, which ``huggingface_hub`` maps to its own exceptions),
extra headers and extra body fields. It deliberately stays outside the library's
:class:`adapterhub.errors.AdapterHubError` hierarchy: it describes an HTTP response, not a user
error of the package manager.

The constructors below use the Hub's own wording where clients match on it: ``huggingface_hub``
appends the server's message to its own unless its text already contains it, so "Repository not
found" or "Entry not found" read once, and "Invalid rev id" or "Reference ... already exists" are
what scripts written against the Hub look for.
"""

from __future__ import annotations

from typing import Any


class HubError(Exception):
    """An expected failure with its HTTP status and Hub error code (sent as ``X-Error-Code``)."""

    def __init__(
        self,
        status: int,
        message: str,
        code: str | None = None,
        *,
        headers: dict[str, str] | None = None,
        body: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code
        self.headers = headers or {}
        self.body = body or {}


def repo_not_found(repo_id: str | None = None) -> HubError:
    """A missing repo, or one the caller may not see: the two answers are identical on purpose."""
    return HubError(404, "Repository not found", "RepoNotFound")


def revision_not_found(repo_id: str, revision: str) -> HubError:
    return HubError(404, f"Invalid rev id: {revision}", "RevisionNotFound")


def entry_not_found(repo_id: str, path: str) -> HubError:
    return HubError(404, "Entry not found", "EntryNotFound")


def gated(repo_type: str, repo_id: str, base_url: str) -> HubError:
    """A gated repo whose files the caller has no accepted access request for."""
    kind = repo_type.rstrip("s")
    prefix = "" if repo_type == "models" else f"{repo_type}/"
    return HubError(
        403,
        f"Access to {kind} {repo_id} is restricted and you are not in the authorized list. "
        f"Visit {base_url}/{prefix}{repo_id} to ask for access.",
        "GatedRepo",
    )


def forbidden(message: str) -> HubError:
    return HubError(403, message)


def invalid_path(path: str, why: str) -> HubError:
    """A file path the Hub refuses in a commit (422, as on the Hub)."""
    return HubError(422, f"Invalid path {path!r}: {why}")
