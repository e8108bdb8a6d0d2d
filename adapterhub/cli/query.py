"""``adapterhub list``, ``info``, ``search`` and ``verify``: thin wrappers over :class:`adapterhub.client.Client`."""

from __future__ import annotations

from typing import Any

import click

from .options import client_options
from .output import emit_json, human_size, info, json_option


def _record_json(record: Any) -> dict[str, Any]:
    """An install (:class:`adapterhub.client.InstallRecord`) as ``list``/``info --json`` print it."""
    return {
        "name": record.display_name, "names": [{"name": a.name, "version": a.version} for a in record.names],
        "key": record.key, "revision": record.commit, "source": record.source.to_dict(),
        "method": record.method.to_lock(), "path": str(record.directory), "size": record.size,
        "files": [f.to_dict() for f in record.files],
    }


@click.command("list")
@json_option
def list_cmd(as_json: bool) -> None:
    """List installed adapters."""
    from ..client import Client

    records = Client().installed()
    if as_json:
        emit_json({"installed": [_record_json(r) for r in records]})
        return
    if not records:
        info("No adapters installed.")
    for r in records:
        versions = ", ".join(f"{a.name} {a.version}" for a in r.names) or r.display_name
        origin = r.source.repo_id or r.source.path
        click.echo(f"{versions}  {origin}@{r.commit[:12]}  [{r.method.name}]  {human_size(r.size)}  {r.directory}")


@click.command("info")
@click.argument("name")
@client_options
@json_option
def info_cmd(name: str, as_json: bool, settings: Any) -> None:
    """Show an adapter: its index entry (versions, files) and what of it is installed."""
    from ..client import Client

    found = Client(settings).info(name)
    entry = found.entry
    if as_json:
        emit_json({"entry": entry.to_dict() if entry else None, "installed": [_record_json(r) for r in found.installed]})
        return
    if entry:
        click.echo(f"{entry.name}  ({entry.task}{', ' + entry.subtask if entry.subtask else ''}; method {entry.method})")
        if entry.description:
            click.echo(f"  {entry.description}")
        click.echo(f"  base model: {entry.base_model.repo_id}   license: {entry.license or '-'}")
        for version in sorted(entry.versions, key=_version_key, reverse=True):
            v = entry.versions[version]
            size = sum(f.size for f in v.files)
            flag = "  (yanked)" if v.yanked else ""
            click.echo(f"  {version}: {v.repo_id}@{v.revision[:12]}  {len(v.files)} files, {human_size(size)}{flag}")
    for r in found.installed:
        click.echo(f"  installed: {r.commit[:12]} [{r.method.name}] {r.directory}")


def _version_key(v: str) -> Any:
    from packaging.version import Version

    return Version(v)


@click.command("search")
@click.argument("words", nargs=-1)
@click.option("--task", help="Only this task (or subtask).")
@click.option("--method", help="Only this method (lora, ia3, bottleneck, ...).")
@click.option("--base-model", help="Only adapters for this base model (substring of its repo id).")
@client_options
@json_option
def search_cmd(words: tuple[str, ...], task: str | None, method: str | None, base_model: str | None, as_json: bool,
               settings: Any) -> None:
    """Search the registry index: every one of WORDS must match the name, task, tags or description
    (`adapterhub search minilm sentiment`; quoting them as one argument works too)."""
    from ..client import Client

    query = " ".join(words)
    found = Client(settings).search(query, task=task, method=method, base_model=base_model)
    rows = [hit.to_json() for hit in found.hits]
    if as_json:
        emit_json({"results": rows, "suggestions": list(found.suggestions)})
        return
    if not rows:
        filters = ", ".join(f"{k} {v}" for k, v in (("task", task), ("method", method), ("base model", base_model)) if v)
        wanted = " ".join(x for x in (repr(query) if query else "", f"({filters})" if filters else "") if x)
        info(f"No adapters found for {wanted or 'an empty query'} in {found.index_source}.")
        if found.suggestions:
            info("Close names: " + ", ".join(found.suggestions) + " (`adapterhub info NAME` shows one)")
    for row in rows:
        click.echo(f"{row['name']} {row['latest'] or '(all yanked)'}  [{row['method']}, {row['task']}]  "
                   f"{row['base_model']}  {row['description'] or ''}".rstrip())


@click.command("verify")
@click.argument("names", nargs=-1)
@json_option
def verify_cmd(names: tuple[str, ...], as_json: bool) -> None:
    """Re-hash installed adapters (all, or NAMES) and the blob store; exit 1 naming every bad file."""
    from ..client import Client
    from ..errors import IntegrityError

    report = Client().verify(list(names) or None)
    if as_json:
        emit_json({"ok": report.ok, "checked": [r.display_name for r in report.checked], "problems": list(report.problems)})
    if report.problems:
        raise IntegrityError(f"{len(report.problems)} problem(s) in the store", problems=list(report.problems),
                             hint="repair with `adapterhub install --force NAME`")
    if not as_json:
        info(f"OK: {len(report.checked)} adapter(s) verified")


def register(cli: click.Group) -> None:
    cli.add_command(list_cmd)
    cli.add_command(info_cmd)
    cli.add_command(search_cmd)
    cli.add_command(verify_cmd)
