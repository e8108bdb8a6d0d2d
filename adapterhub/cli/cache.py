"""``adapterhub cache dir|prune``."""

from __future__ import annotations

import click

from .output import emit_json, human_size, info, json_option


@click.group("cache")
def cache_group() -> None:
    """Inspect and clean the adapter store ($ADAPTERHUB_HOME)."""


@cache_group.command("dir")
@json_option
def cache_dir(as_json: bool) -> None:
    """Print the store directory."""
    from ..client import Client

    home = Client().settings.home
    if as_json:
        emit_json({"dir": str(home)})
    else:
        click.echo(str(home))


@cache_group.command("prune")
@json_option
def cache_prune(as_json: bool) -> None:
    """Delete blobs no install uses, orphaned partial installs and stale downloads."""
    from ..client import Client

    removed = Client().prune()
    if as_json:
        emit_json(removed)
    else:
        info(f"Removed {removed['blobs']} blob(s) ({human_size(removed['bytes'])}), {removed['orphans']} orphaned "
             f"install(s), {removed['staging']} staging dir(s)")


def register(cli: click.Group) -> None:
    cli.add_command(cache_group)
