"""``adapterhub hub serve``: a local Hub that huggingface_hub, PEFT and transformers talk to unchanged."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import click

from .output import json_option


def register(cli: click.Group) -> None:
    cli.add_command(hub)


@click.group()
def hub() -> None:
    """Run a Hugging Face Hub compatible server for a team or for tests."""


@hub.command()
@click.option(
    "--root", required=True, type=click.Path(file_okay=False, path_type=Path), help="Directory holding all repos."
)
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to bind (0.0.0.0 for a team).")
@click.option("--port", default=0, type=click.IntRange(0, 65535), show_default=True, help="0 picks a free port.")
@click.option(
    "--user",
    "users",
    multiple=True,
    metavar="NAME:TOKEN",
    help="A user allowed to write to its own namespace (repeatable; or set ADAPTERHUB_HUB_USERS=a:t1,b:t2).",
)
@click.option(
    "--lfs-threshold",
    type=click.IntRange(min=1),
    default=None,
    help="Ask files of at least this many bytes to use git-LFS (clients need HF_HUB_DISABLE_XET=1). "
    "Default: every file travels in the commit. Env: ADAPTERHUB_HUB_LFS_THRESHOLD.",
)
@click.option("--quiet", is_flag=True, help="No access log on stderr.")
@json_option
def serve(
    root: Path, host: str, port: int, users: tuple[str, ...], lfs_threshold: int | None, quiet: bool, as_json: bool
) -> None:
    """Serve the repos under --root until SIGTERM or Ctrl-C.

    Prints one line, "Serving on http://HOST:PORT", once it accepts connections. Point clients at it
    with HF_ENDPOINT=http://HOST:PORT and a user's token in HF_TOKEN. With --json the line is
    {"url": ..., "root": ...} instead.
    """
    from ..hub.auth import USERS_ENV, parse_users
    from ..hub.server import build_server, lfs_threshold_from_env, serve_forever

    try:
        table = parse_users(os.environ.get(USERS_ENV))
        table.update(parse_users(list(users)))
        threshold = lfs_threshold if lfs_threshold is not None else lfs_threshold_from_env()
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    try:
        server = build_server(root, table, host=host, port=port, lfs_threshold=threshold, quiet=quiet)
    except OSError as exc:
        raise click.ClickException(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None

    def announce(line: str) -> None:
        if as_json:
            line = json.dumps({"url": line.removeprefix("Serving on "), "root": str(root.resolve())})
        click.echo(line)
        sys.stdout.flush()  # whoever started us waits for this line

    serve_forever(server, announce)
