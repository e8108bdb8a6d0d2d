"""``adapterhub list``, ``info``, ``search`` and ``verify``."""

from __future__ import annotations

from typing import Any

import click

from .install import client_options
from .output import emit_json, human_size, info, json_option


def _record_json(record: Any) -> dict[str, Any]:
    return {
        "name": record.display_name, "names": record.names, "key": record.key, "revision": record.commit,
        "source": record.source, "method": record.data["method"], "path": str(record.directory),
        "size": sum(f["size"] for f in record.files), "files": record.files,
    }


@click.command("list")
@json_option
def list_cmd(as_json: bool) -> None:
    """List installed adapters."""
    from ..settings import get_settings
    from ..client.store import Store

    records = Store(get_settings().home).records()
    if as_json:
        emit_json({"installed": [_record_json(r) for r in records]})
        return
    if not records:
        info("No adapters installed.")
    for r in records:
        versions = ", ".join(f"{a['name']} {a['version']}" for a in r.names) or r.display_name
        origin = r.source.get("repo_id") or r.source.get("path")
        click.echo(f"{versions}  {origin}@{r.commit[:12]}  [{r.data['method']['name']}]  "
                   f"{human_size(sum(f['size'] for f in r.files))}  {r.directory}")


@click.command("info")
@click.argument("name")
@client_options
@json_option
def info_cmd(name: str, as_json: bool, settings: Any) -> None:
    """Show an adapter: its index entry (versions, files) and what of it is installed."""
    from ..client.index import load_index
    from ..client.store import Store
    from ..errors import ResolutionError

    index = load_index(settings)
    entry = index.get(name.split("@")[0])
    installed = Store(settings.home).find(name)
    if entry is None and not installed:
        raise ResolutionError(f"{name!r} is neither in the index ({index.source}) nor installed",
                              hint="`adapterhub search WORD` finds registry names")
    if as_json:
        emit_json({"entry": entry, "installed": [_record_json(r) for r in installed]})
        return
    if entry:
        click.echo(f"{entry['name']}  ({entry['task']}{', ' + entry['subtask'] if entry.get('subtask') else ''}; "
                   f"method {entry['method']})")
        if entry.get("description"):
            click.echo(f"  {entry['description']}")
        click.echo(f"  base model: {entry['base_model']['repo_id']}   license: {entry.get('license') or '-'}")
        for version in sorted(entry["versions"], key=_version_key, reverse=True):
            v = entry["versions"][version]
            size = sum(f["size"] for f in v["files"])
            flag = "  (yanked)" if v.get("yanked") else ""
            click.echo(f"  {version}: {v['source']['repo_id']}@{v['source']['revision'][:12]}  "
                       f"{len(v['files'])} files, {human_size(size)}{flag}")
    for r in installed:
        click.echo(f"  installed: {r.commit[:12]} [{r.data['method']['name']}] {r.directory}")


def _version_key(v: str) -> Any:
    from packaging.version import Version

    return Version(v)


@click.command("search")
@click.argument("query", required=False, default="")
@click.option("--task", help="Only this task (or subtask).")
@click.option("--method", help="Only this method (lora, ia3, bottleneck, ...).")
@click.option("--base-model", help="Only adapters for this base model (substring of its repo id).")
@client_options
@json_option
def search_cmd(query: str, task: str | None, method: str | None, base_model: str | None, as_json: bool,
               settings: Any) -> None:
    """Search the registry index (all words of QUERY must match name, task, tags or description)."""
    from ..client.index import load_index
    from ..client.resolve import select_version

    index = load_index(settings)
    found = index.search(query, task=task, method=method, base_model=base_model)
    suggestions = [] if found else index.suggest(query)
    rows = []
    for entry in found:
        try:
            latest = select_version(entry, None)
        except Exception:  # noqa: BLE001 - every version yanked: still list the entry
            latest = None
        rows.append({"name": entry["name"], "latest": latest, "task": entry["task"], "method": entry["method"],
                     "base_model": entry["base_model"]["repo_id"], "description": entry.get("description")})
    if as_json:
        emit_json({"results": rows, "suggestions": suggestions})
        return
    if not rows:
        filters = ", ".join(f"{k} {v}" for k, v in (("task", task), ("method", method), ("base model", base_model)) if v)
        wanted = " ".join(x for x in (repr(query) if query else "", f"({filters})" if filters else "") if x)
        info(f"No adapters found for {wanted or 'an empty query'} in {index.source}.")
        if suggestions:
            info("Close names: " + ", ".join(suggestions) + " (`adapterhub info NAME` shows one)")
    for row in rows:
        click.echo(f"{row['name']} {row['latest'] or '(all yanked)'}  [{row['method']}, {row['task']}]  "
                   f"{row['base_model']}  {row['description'] or ''}".rstrip())


@click.command("verify")
@click.argument("names", nargs=-1)
@json_option
def verify_cmd(names: tuple[str, ...], as_json: bool) -> None:
    """Re-hash installed adapters (all, or NAMES) and the blob store; exit 1 naming every bad file."""
    from ..client import Installer
    from ..errors import IntegrityError

    records, problems = Installer().verify(list(names) or None)
    if as_json:
        emit_json({"ok": not problems, "checked": [_record_json(r)["name"] for r in records], "problems": problems})
    if problems:
        raise IntegrityError(f"{len(problems)} problem(s) in the store", problems=problems,
                             hint="repair with `adapterhub install --force NAME`")
    if not as_json:
        info(f"OK: {len(records)} adapter(s) verified")


def register(cli: click.Group) -> None:
    cli.add_command(list_cmd)
    cli.add_command(info_cmd)
    cli.add_command(search_cmd)
    cli.add_command(verify_cmd)
