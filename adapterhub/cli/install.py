"""``adapterhub install``, ``uninstall`` and ``sync``: thin wrappers over :class:`adapterhub.client.Client`."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import click

from .options import client_options
from .output import emit_json, human_size, info, json_option

if TYPE_CHECKING:  # pragma: no cover
    from ..client import InstallReport, Plan


def print_plan(plan: Plan) -> None:
    """The plan, on stderr: every file with its size and whether the store already has it."""
    if plan.index_source:
        info(f"Plan (index: {plan.index_source}):")
    else:
        info("Plan:")
    for item in plan.items:
        r = item.resolved
        origin = f"{r.repo_id}@{r.commit[:12]}" if r.repo_id else str(r.local_path)
        state = "already installed" if item.installed else f"{human_size(item.missing_bytes)} to {item.action}"
        info(f"  {r.label}  <-  {origin}  ({len(r.files)} files, {human_size(item.total_bytes)}; {state})")
        for note in r.notes:
            info(f"    warning: {note}")
        if not item.installed:
            width = max(len(f.path) for f in r.files)
            for f in r.files:
                present = f.path in item.present
                info(f"    {f.path:<{width}}  {human_size(f.size):>9}  {'present' if present else item.action}")
    moves = [f"to download: {human_size(plan.download_bytes)}"] if plan.download_bytes or not plan.copy_bytes else []
    moves += [f"to copy: {human_size(plan.copy_bytes)}"] if plan.copy_bytes else []
    info(f"Total: {human_size(plan.total_bytes)}, " + ", ".join(moves))


def _show(report: InstallReport, *, lock: str | None, quiet: bool, as_json: bool) -> None:
    if report.lock:
        info(f"Wrote {lock}")
    if not quiet:
        for result in report.results:
            verb = {"present": "Already installed", "installed": "Installed", "reinstalled": "Reinstalled"}[result.action]
            label = result.record.display_name if not result.name else f"{result.name} {result.version}"
            info(f"{verb} {label} [{result.record.method.name}] -> {result.path}")
            for note in result.notes:
                info(f"  note: {note}")
    if as_json:
        emit_json(report.to_json())


@click.command("install")
@click.argument("sources", nargs=-1)
@click.option("--revision", help="Hub revision (branch, tag or commit) for a single repo-id SOURCE.")
@click.option("--pre", is_flag=True, help="Allow pre-release versions of registry adapters.")
@click.option("--lock", "lock", metavar="FILE", help="Write (or update) a lock file pinning what was installed.")
@click.option("--locked", metavar="FILE", help="Install exactly what FILE pins (all of it, or just SOURCES); fail on drift.")
@click.option("--dry-run", is_flag=True, help="Print the plan and stop.")
@click.option("--force", is_flag=True, help="Re-download and replace an installed copy (repairs a corrupted one).")
@click.option("-q", "--quiet", is_flag=True, help="No plan, no progress bars.")
@client_options
@json_option
def install_cmd(sources: tuple[str, ...], revision: str | None, pre: bool, lock: str | None, locked: str | None,
                dry_run: bool, force: bool, quiet: bool, as_json: bool, settings: Any) -> None:
    """Install adapters: registry names (NAME, NAME@1.2.0, 'NAME@>=1,<2'), Hub repos (org/repo,
    org/repo@v1, hf://org/repo@<sha>) or local directories (./dir).

    Every file is verified (sha256) before it is made visible in the store.
    """
    from ..client import Client

    client = Client(settings, progress=not (quiet or as_json))
    report = client.install(list(sources), revision=revision, pre=pre, lock=lock, locked=locked, dry_run=dry_run,
                            force=force, on_plan=None if quiet and not dry_run else print_plan)
    _show(report, lock=lock, quiet=quiet, as_json=as_json)


@click.command("sync")
@click.argument("lock_file", type=click.Path(dir_okay=False))
@click.option("--dry-run", is_flag=True, help="Print the plan and stop.")
@click.option("--force", is_flag=True, help="Re-download installed copies.")
@click.option("-q", "--quiet", is_flag=True, help="No plan, no progress bars.")
@client_options
@json_option
def sync_cmd(lock_file: str, dry_run: bool, force: bool, quiet: bool, as_json: bool, settings: Any) -> None:
    """Install exactly what LOCK_FILE pins (offline when the store has it); fail loudly on drift."""
    from ..client import Client

    client = Client(settings, progress=not (quiet or as_json))
    report = client.sync(lock_file, dry_run=dry_run, force=force, on_plan=None if quiet and not dry_run else print_plan)
    _show(report, lock=None, quiet=quiet, as_json=as_json)


@click.command("uninstall")
@click.argument("names", nargs=-1, required=True)
@json_option
def uninstall_cmd(names: tuple[str, ...], as_json: bool) -> None:
    """Remove installed adapters (registry name, name@version or repo id). Blobs stay until `cache prune`."""
    from ..client import Client

    removed = Client().uninstall(list(names))
    for record in removed:
        info(f"Uninstalled {record.display_name} ({record.commit[:12]})")
    if as_json:
        emit_json({"uninstalled": [{"name": r.display_name, "key": r.key, "revision": r.commit} for r in removed]})


def register(cli: click.Group) -> None:
    cli.add_command(install_cmd)
    cli.add_command(uninstall_cmd)
    cli.add_command(sync_cmd)
