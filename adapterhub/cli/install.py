"""``adapterhub install``, ``uninstall`` and ``sync``: thin wrappers over :mod:`adapterhub.client`."""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from .output import emit_json, human_size, info, json_option


def client_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """--endpoint/--index/--offline, turned into a ``settings`` keyword argument."""

    @click.option("--endpoint", metavar="URL", help="Hub endpoint (default: $HF_ENDPOINT, else huggingface.co).")
    @click.option("--index", "index", metavar="PATH|URL",
                  help="Registry index: a dir, index.json, http(s) URL or hf://ns/repo/path[@rev] (default: "
                  "$ADAPTERHUB_INDEX, else the bundled one). An http(s) URL is downloaded again on every run "
                  "(no ETag check); hf:// goes through the huggingface_hub cache (ETag); --offline uses the last copy.")
    @click.option("--offline", is_flag=True, default=None, help="Never touch the network (also: HF_HUB_OFFLINE=1, ADAPTERHUB_OFFLINE=1).")
    @functools.wraps(func)
    def wrapper(*args: Any, endpoint: str | None, index: str | None, offline: bool | None, **kwargs: Any) -> Any:
        from ..settings import get_settings

        kwargs["settings"] = get_settings(endpoint=endpoint, index=index, offline=offline)
        return func(*args, **kwargs)

    return wrapper


def print_plan(plan: Any) -> None:
    """The plan, on stderr: every file with its size and whether the store already has it."""
    if plan.index_source:
        info(f"Plan (index: {plan.index_source}):")
    else:
        info("Plan:")
    for item in plan.items:
        r = item.resolved
        origin = f"{r.repo_id}@{r.commit[:12]}" if r.repo_id else str(r.local_path)
        state = "already installed" if item.installed else f"{human_size(item.download_bytes)} to download"
        info(f"  {r.label}  <-  {origin}  ({len(r.files)} files, {human_size(item.total_bytes)}; {state})")
        for note in r.notes:
            info(f"    warning: {note}")
        if not item.installed:
            width = max(len(f["path"]) for f in r.files)
            for f in r.files:
                present = f["path"] in item.present
                info(f"    {f['path']:<{width}}  {human_size(f['size']):>9}  {'present' if present else 'download'}")
    info(f"Total: {human_size(plan.total_bytes)}, to download: {human_size(plan.download_bytes)}")


def _report(results: list[Any]) -> None:
    for result in results:
        verb = {"present": "Already installed", "installed": "Installed", "reinstalled": "Reinstalled"}[result.action]
        method = result.record.data["method"]["name"]
        info(f"{verb} {result.record.display_name if not result.name else result.name + ' ' + result.version} "
             f"[{method}] -> {result.path}")
        for note in result.notes:
            info(f"  note: {note}")


def _run(installer: Any, plan: Any, *, dry_run: bool, force: bool, lock: str | None, as_json: bool,
         quiet: bool) -> None:
    if not quiet or dry_run:
        print_plan(plan)
    if dry_run:
        if as_json:
            emit_json({"dry_run": True, "plan": plan.to_json()})
        return
    results = installer.execute(plan, force=force)
    lock_path = None
    if lock:
        from ..client.lockfile import lock_entry, write_lock

        lock_path = Path(lock).resolve()
        write_lock(lock_path, [lock_entry(r, lock_path.parent) for r in results])
        info(f"Wrote {lock}")
    if not quiet:
        _report(results)
    if as_json:
        emit_json({"dry_run": False, "plan": plan.to_json(), "installed": [r.to_json() for r in results],
                   "lock": str(lock_path) if lock_path else None})


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
    from ..client import Installer
    from ..errors import UsageError

    if revision and len(sources) != 1:
        raise UsageError("--revision applies to exactly one SOURCE")
    if lock and locked:
        raise UsageError("--lock and --locked cannot be combined", hint="--locked installs from an existing lock")
    installer = Installer(settings, progress=not (quiet or as_json))
    if locked:
        plan = installer.plan_locked(locked, list(sources) or None)
    else:
        plan = installer.plan(list(sources), revision=revision, pre=pre)
    _run(installer, plan, dry_run=dry_run, force=force, lock=lock, as_json=as_json, quiet=quiet)


@click.command("sync")
@click.argument("lock_file", type=click.Path(dir_okay=False))
@click.option("--dry-run", is_flag=True, help="Print the plan and stop.")
@click.option("--force", is_flag=True, help="Re-download installed copies.")
@click.option("-q", "--quiet", is_flag=True, help="No plan, no progress bars.")
@client_options
@json_option
def sync_cmd(lock_file: str, dry_run: bool, force: bool, quiet: bool, as_json: bool, settings: Any) -> None:
    """Install exactly what LOCK_FILE pins (offline when the store has it); fail loudly on drift."""
    from ..client import Installer

    installer = Installer(settings, progress=not (quiet or as_json))
    plan = installer.plan_locked(lock_file)
    _run(installer, plan, dry_run=dry_run, force=force, lock=None, as_json=as_json, quiet=quiet)


@click.command("uninstall")
@click.argument("names", nargs=-1, required=True)
@json_option
def uninstall_cmd(names: tuple[str, ...], as_json: bool) -> None:
    """Remove installed adapters (registry name, name@version or repo id). Blobs stay until `cache prune`."""
    from ..client import Installer

    removed = Installer().uninstall(list(names))
    for record in removed:
        info(f"Uninstalled {record.display_name} ({record.commit[:12]})")
    if as_json:
        emit_json({"uninstalled": [{"name": r.display_name, "key": r.key, "revision": r.commit} for r in removed]})


def register(cli: click.Group) -> None:
    cli.add_command(install_cmd)
    cli.add_command(uninstall_cmd)
    cli.add_command(sync_cmd)
