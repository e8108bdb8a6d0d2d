"""Output helpers shared by commands: data to stdout, messages and progress to stderr."""

from __future__ import annotations

import json
from typing import Any

import click


def emit_json(data: Any) -> None:
    """Print ``data`` as JSON on stdout (the only thing on stdout under ``--json``)."""
    click.echo(json.dumps(data, indent=2, sort_keys=True, default=str))


def info(message: str) -> None:
    """A human-facing progress or status line, on stderr so stdout stays parseable."""
    click.echo(message, err=True)


def human_size(n: int) -> str:
    size = float(n)
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1000 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000
    return f"{n} B"


json_option = click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON on stdout.")


def show_warnings_as_lines() -> None:
    """Print adapterhub's own warnings (a plugin that failed to load, ...) as ``warning: ...`` lines
    on stderr, like errors, instead of Python's ``file:line: Category: ...`` with a source line.
    Other libraries' warnings keep Python's format."""
    import warnings

    if getattr(warnings.showwarning, "_adapterhub", False):
        return
    original = warnings.showwarning

    def show(message, category, filename, lineno, file=None, line=None):  # type: ignore[no-untyped-def]
        if category.__module__.startswith("adapterhub."):
            click.echo(f"warning: {message}", err=True)
        else:
            original(message, category, filename, lineno, file, line)

    show._adapterhub = True  # type: ignore[attr-defined]
    warnings.showwarning = show
