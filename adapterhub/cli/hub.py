"""``adapterhub hub serve``: a local Hub that huggingface_hub, PEFT and transformers talk to unchanged."""

from __future__ import annotations

import json
import os
import secrets
import sys
import threading
from pathlib import Path
from typing import Any

import click

from .output import info, json_option


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
    help="A user allowed to write to its own namespace (repeatable). A token on the command line is "
    "visible to `ps` and shell history: outside demos, set ADAPTERHUB_HUB_USERS=a:t1,b:t2 instead.",
)
@click.option(
    "--lfs-threshold",
    type=click.IntRange(min=1),
    default=None,
    help="Ask files of at least this many bytes to use git-LFS (clients need HF_HUB_DISABLE_XET=1). "
    "Default: every file travels in the commit. Env: ADAPTERHUB_HUB_LFS_THRESHOLD.",
)
@click.option("--quiet", is_flag=True, help="No access log on stderr.")
@click.option(
    "--demo",
    is_flag=True,
    help="Also publish the bundled demo adapters (as user adapterhub-demo) before announcing, so "
    "`HF_ENDPOINT=URL adapterhub install sentiment/minilm-vader` works against this Hub. "
    "Idempotent: a restart on the same --root finds them already published.",
)
@json_option
def serve(
    root: Path,
    host: str,
    port: int,
    users: tuple[str, ...],
    lfs_threshold: int | None,
    quiet: bool,
    demo: bool,
    as_json: bool,
) -> None:
    """Serve the repos under --root until SIGTERM or Ctrl-C.

    Prints one line, "Serving on http://HOST:PORT", once it accepts connections (with --demo: once
    the demo adapters are published as well). Point clients at it with HF_ENDPOINT=http://HOST:PORT
    and a user's token in HF_TOKEN. With --json the line is {"url": ..., "root": ...} instead, plus
    "demo": [the published releases] with --demo.
    """
    from ..server.auth import USERS_ENV, parse_users
    from ..server.serving import build_server, lfs_threshold_from_env, serve_forever

    try:
        table = parse_users(os.environ.get(USERS_ENV))
        table.update(parse_users(list(users)))
        threshold = lfs_threshold if lfs_threshold is not None else lfs_threshold_from_env()
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    if not table:
        info("warning: no users (--user NAME:TOKEN or ADAPTERHUB_HUB_USERS=NAME:TOKEN): this Hub is read-only, "
             "nobody can push to it" + (" (the demo adapters are published by an internal user)" if demo else ""))
    demo_token = ""
    if demo:
        from ..demo.tasks import DEMO_ORG

        # The demo publisher's token lives only in this process's memory: new on every start,
        # never printed. A token given for that user (--user adapterhub-demo:TOKEN) is used instead.
        demo_token = table.setdefault(DEMO_ORG, secrets.token_urlsafe(32))
    try:
        server = build_server(root, table, host=host, port=port, lfs_threshold=threshold, quiet=quiet)
    except OSError as exc:
        raise click.ClickException(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None

    def announce(line: str, published: list[dict[str, Any]] | None = None) -> None:
        if as_json:
            data: dict[str, Any] = {"url": line.removeprefix("Serving on "), "root": str(root.resolve())}
            if published is not None:
                data["demo"] = published
            line = json.dumps(data)
        click.echo(line)
        sys.stdout.flush()  # whoever started us waits for this line

    if not demo:
        serve_forever(server, announce)
        return
    failures: list[BaseException] = []

    def seed_then_announce(line: str) -> None:
        # The publishing client needs the server answering, and serve_forever must own the main
        # thread (signals): publish from a helper thread, announce only once that is done.
        def seed() -> None:
            try:
                published = _seed_demo(line.removeprefix("Serving on "), demo_token)
            except BaseException as exc:  # reported by the main thread once the server stopped
                failures.append(exc)
                server.shutdown()  # safe: this is not the serving thread
                return
            announce(line, published)

        threading.Thread(target=seed, name="adapterhub-demo-seed", daemon=True).start()

    serve_forever(server, seed_then_announce)
    if failures:
        from ..errors import AdapterHubError

        failure = failures[0]
        if isinstance(failure, (AdapterHubError, click.ClickException)):
            raise failure
        raise AdapterHubError(
            f"publishing the demo adapters to this Hub failed: {type(failure).__name__}: {failure}",
            hint="the lines above show the failing push; try again with a fresh --root",
        ) from failure


def _seed_demo(url: str, token: str) -> list[dict[str, Any]]:
    """Publish the bundled demo adapters to the Hub at ``url``; a short summary on stderr."""
    from ..demo.publish import seed_hub
    from ..demo.tasks import DEMO_VERSION

    published = seed_hub(url, token, say=info)
    for item in published:
        info(f"Demo adapter {item['name']} {DEMO_VERSION}: {item['repo_id']}@{item['tag']} commit {item['commit']}")
    names = " ".join(item["name"] for item in published)
    info(f"Install through the bundled index: HF_ENDPOINT={url} adapterhub install {names}")
    return [
        {"name": item["name"], "version": DEMO_VERSION, "repo_id": item["repo_id"], "tag": item["tag"],
         "revision": item["commit"]}
        for item in published
    ]
