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
