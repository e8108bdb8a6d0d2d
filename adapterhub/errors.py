"""One error hierarchy for the library and one exit-code enum for the CLI.

The library raises these; only ``adapterhub.cli`` turns them into messages and exit
codes. Builtin bases are mixed in so that existing ``except KeyError`` /
``except ValueError`` clauses in user code keep working.
"""

from __future__ import annotations

import enum


class ExitCode(enum.IntEnum):
    """Process exit codes of the ``adapterhub`` command."""

    #: Success.
    OK = 0
    #: A user-facing failure: not found, hash mismatch, incompatible base, ...
    ERROR = 1
    #: Bad command line (click's own usage errors also exit 2).
    USAGE = 2
    #: Interrupted (Ctrl-C, SIGINT): 128 + 2, as shells report it.
    INTERRUPTED = 130


class AdapterHubError(Exception):
    """Base class: shown to users as ``error: <message>`` plus an optional hint, no traceback."""

    exit_code: ExitCode = ExitCode.ERROR

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        if self.hint:
            return f"{self.message}\nhint: {self.hint}"
        return self.message


class InterruptedByUser(AdapterHubError):
    """A long command stopped by Ctrl-C after cleaning up after itself (exit status 130)."""

    exit_code = ExitCode.INTERRUPTED


class UsageError(AdapterHubError, ValueError):
    """A request that cannot be understood (bad reference syntax, bad option combination)."""

    exit_code = ExitCode.USAGE


# --- plugins and methods -------------------------------------------------------------------


class PluginError(AdapterHubError):
    """A plugin failed to load or registered something invalid."""


class UnknownMethodError(PluginError, KeyError):
    """No registered method has this name."""

    def __str__(self) -> str:  # KeyError would repr() the message
        return AdapterHubError.__str__(self)


class NoMethodClaimsError(PluginError):
    """No registered method recognises the adapter files in a directory."""


class UnsupportedOperationError(PluginError):
    """A method cannot do what was asked (merge a bottleneck adapter, BatchSplit a prompt, ...)."""


class CompositionError(UnsupportedOperationError):
    """A composition block that a method cannot take part in, or a malformed block."""


class MissingDependencyError(AdapterHubError, ImportError):
    """An optional dependency a feature needs is not installed (bitsandbytes for QLoRA, ...)."""


# --- adapter files and models --------------------------------------------------------------


class AdapterFormatError(AdapterHubError, ValueError):
    """An adapter directory whose config or weights cannot be read."""


class PickleRefusedError(AdapterFormatError):
    """Pickled weights were found and ``allow_pickle`` was not given."""


class IncompatibleBaseModelError(AdapterHubError, ValueError):
    """The adapter does not fit the model: missing modules, wrong shapes, other model_type."""


class AdapterNotLoadedError(AdapterHubError, KeyError):
    """The named adapter is not loaded on this model."""

    def __str__(self) -> str:
        return AdapterHubError.__str__(self)


class AdapterExistsError(AdapterHubError, ValueError):
    """An adapter of that name is already loaded on this model."""


# --- registry, download, store, lock ---------------------------------------------------------


class RegistryIndexError(AdapterHubError, ValueError):
    """A registry index entry or file is invalid (schema violation, bad path, ...)."""


class ResolutionError(AdapterHubError, LookupError):
    """A name, version spec or repo id that resolves to nothing, or to more than one thing."""


class IntegrityError(AdapterHubError):
    """Downloaded or stored bytes do not match their recorded size or sha256."""

    def __init__(self, message: str, *, problems: list[str] | None = None, hint: str | None = None):
        super().__init__(message, hint=hint)
        self.problems = list(problems or [])

    def __str__(self) -> str:
        lines = [self.message, *(f"  {p}" for p in self.problems)]
        if self.hint:
            lines.append(f"hint: {self.hint}")
        return "\n".join(lines)


class UnsafePathError(IntegrityError):
    """A path from a manifest, index or server that would escape the store."""


class OfflineError(AdapterHubError, ConnectionError):
    """The network is needed but offline mode is on, and the store does not have what is needed."""


class DownloadError(AdapterHubError, ConnectionError):
    """The Hub could not be reached or refused the download."""


class LockfileError(AdapterHubError):
    """A lock file that is missing, malformed, or no longer matches what it pins."""


class PublishError(AdapterHubError):
    """An adapter that cannot be published as asked (validation problems, version conflicts, auth)."""

    def __init__(self, message: str, *, problems: list[str] | None = None, hint: str | None = None):
        super().__init__(message, hint=hint)
        self.problems = list(problems or [])

    def __str__(self) -> str:
        lines = [self.message, *(f"  - {p}" for p in self.problems)]
        if self.hint:
            lines.append(f"hint: {self.hint}")
        return "\n".join(lines)


class PublishArgumentsError(PublishError, UsageError):
    """Push arguments that are malformed (a version that is not X.Y.Z, a repo id without a
    namespace, ...): a usage error, exit code 2, listing every bad argument."""
