"""``adapterhub hub serve`` (a local Hub that huggingface_hub, PEFT and transformers talk to unchanged) and ``adapterhub hub gc``."""

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
    "--org",
    "orgs",
    multiple=True,
    metavar="NAME:MEMBER[=ROLE],...",
    help="An organisation and its members (roles: read, write, admin; default write), repeatable. "
    "Members write to the organisation's namespace. Env: ADAPTERHUB_HUB_ORGS=team:a,b;other:c.",
)
@click.option(
    "--config",
    "config",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    help="A TOML file with [users.NAME] (token, fullname, email) and [orgs.NAME] (members, fullname, "
    "private_by_default) tables.",
)
@click.option(
    "--lfs-threshold",
    type=click.IntRange(min=1),
    default=None,
    help="Files of at least this many bytes are LFS files (default: 10 MiB, as on the Hub; the repo's "
    ".gitattributes patterns apply too). Env: ADAPTERHUB_HUB_LFS_THRESHOLD.",
)
@click.option(
    "--inline-uploads",
    is_flag=True,
    help="Let every file travel inside the commit, so clients with Xet on (huggingface_hub's default) "
    "upload without HF_HUB_DISABLE_XET=1. Files are still stored as LFS files by the rule.",
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
    orgs: tuple[str, ...],
    config: Path | None,
    lfs_threshold: int | None,
    inline_uploads: bool,
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
    from ..server.auth import ORGS_ENV, USERS_ENV, build_accounts, load_config, parse_orgs, parse_users
    from ..server.serving import build_server, lfs_threshold_from_env, serve_forever

    try:
        table: dict[str, Any] = {}
        org_table: dict[str, Any] = {}
        if config is not None:
            table, org_table = load_config(config)
        table.update(parse_users(os.environ.get(USERS_ENV)))
        table.update(parse_users(list(users)))
        org_table.update(parse_orgs(os.environ.get(ORGS_ENV)))
        org_table.update(parse_orgs(list(orgs)))
        threshold = lfs_threshold if lfs_threshold is not None else lfs_threshold_from_env()
        demo_token = ""
        if demo:
            from ..demo.tasks import DEMO_ORG

            # The demo publisher's token lives only in this process's memory: new on every start,
            # never printed. A token given for that user (--user adapterhub-demo:TOKEN) is used instead.
            demo_token = table.setdefault(DEMO_ORG, secrets.token_urlsafe(32))
            demo_token = demo_token if isinstance(demo_token, str) else demo_token["token"]
        accounts = build_accounts(table, org_table)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    humans = [name for name in table if not (demo and name == _demo_org())]
    if not humans:
        info("warning: no users (--user NAME:TOKEN or ADAPTERHUB_HUB_USERS=NAME:TOKEN): this Hub is read-only, "
             "nobody can push to it" + (" (the demo adapters are published by an internal user)" if demo else ""))
    try:
        server = build_server(
            root, accounts, host=host, port=port, lfs_threshold=threshold, inline_uploads=inline_uploads, quiet=quiet
        )
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


@hub.command()
@click.option(
    "--root", required=True, type=click.Path(file_okay=False, exists=True, path_type=Path), help="The Hub's --root."
)
@click.option(
    "--min-age",
    "min_age_s",
    default=3600.0,
    show_default=True,
    type=click.FloatRange(min=0),
    help="Keep unreferenced blobs younger than this many seconds (uploads in progress may need them).",
)
@click.option("--dry-run", is_flag=True, help="Report what would be deleted; delete nothing.")
@json_option
def gc(root: Path, min_age_s: float, dry_run: bool, as_json: bool) -> None:
    """Delete stored file contents that no repo references any more.

    Contents stay after a repo is deleted, after LFS files are deleted from a repo, and after
    interrupted uploads. Safe while the server runs: contents younger than --min-age are kept.
    """
    from dataclasses import asdict

    from ..server.blobs import collect_garbage

    report = collect_garbage(root, min_age_s=min_age_s, dry_run=dry_run)
    if as_json:
        click.echo(json.dumps(asdict(report)))
        return
    verb = "would delete" if dry_run else "deleted"
    click.echo(
        f"{verb} {report.blobs_removed} unreferenced blob(s) ({report.bytes_freed} bytes) and "
        f"{report.tmp_removed} leftover upload(s); kept {report.blobs_kept} referenced and "
        f"{report.recent_kept} recent blob(s)"
    )


def _demo_org() -> str:
    from ..demo.tasks import DEMO_ORG

    return DEMO_ORG
