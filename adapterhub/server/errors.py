"""The one exception of the local Hub server, :class:`HubError`, and its common constructors.

A ``HubError`` is an expected failure that the router turns into an HTTP answer: its status, a
Hub error code (sent as ``X-Error-Code``, which ``huggingface_hub`` maps to its own exceptions),
extra headers and extra body fields. It deliberately stays outside the library's
:class:`adapterhub.errors.AdapterHubError` hierarchy: it describes an HTTP response, not a user
error of the package manager.
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


def repo_not_found(repo_id: str) -> HubError:
    return HubError(404, f"Repository {repo_id!r} not found (or you are not allowed to see it).", "RepoNotFound")


def revision_not_found(repo_id: str, revision: str) -> HubError:
    return HubError(404, f"Revision {revision!r} not found in {repo_id!r}.", "RevisionNotFound")


def entry_not_found(repo_id: str, path: str) -> HubError:
    return HubError(404, f"Entry {path!r} not found in {repo_id!r}.", "EntryNotFound")
