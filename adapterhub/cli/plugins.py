"""``adapterhub methods`` and ``adapterhub plugins``."""

from __future__ import annotations

import click

from .output import emit_json, json_option


@click.command("methods")
@click.option("--all", "all_types", is_flag=True,
              help="List every PEFT adapter type instead: whether it loads, stacks, merges and serves per-row batches.")
@click.option("--markdown", is_flag=True, help="With --all: print the table as Markdown (the README's).")
@json_option
def methods_command(all_types: bool, markdown: bool, as_json: bool) -> None:
    """List the adapter methods and the plugin that provides each."""
    if all_types:
        _all_types(markdown, as_json)
        return
    if markdown:
        raise click.UsageError("--markdown goes with --all")
    from ..plugin.manager import plugin_distribution
    from ..plugin.registry import registered_methods

    rows = []
    for name, reg in sorted(registered_methods().items()):
        dist, version = plugin_distribution(reg.plugin)
        refusal = getattr(reg.method, "refusal", None)
        rows.append(
            {
                "method": name,
                "plugin": reg.plugin,
                "distribution": f"{dist} {version}",
                "peft_types": list(reg.method.peft_types),
                "formats": list(reg.method.formats),
                "description": reg.method.description,
                "refused": refusal() if callable(refusal) else None,
                **reg.method.capabilities(),
            }
        )
    if as_json:
        emit_json(rows)
        return
    width = max((len(r["method"]) for r in rows), default=6)
    flags = {"mergeable": "mergeable", "supports_stack": "stack", "supports_mixed_batch": "mixed_batch",
             "supports_average": "average", "trainable": "trainable"}
    for r in rows:
        if r["refused"]:
            click.echo(f"{r['method']:<{width}}  {r['plugin']}  [refused: {r['refused']}]")
            continue
        caps = ",".join(label for key, label in flags.items() if r[key])
        click.echo(f"{r['method']:<{width}}  {r['plugin']}  [{caps}]  {r['description']}")


def _all_types(markdown: bool, as_json: bool) -> None:
    from ..toolkit.peft.coverage import coverage, markdown_table

    rows = coverage()
    if as_json:
        emit_json([r.to_dict() for r in rows])
    elif markdown:
        click.echo(markdown_table(rows), nl=False)
    else:
        def yes(flag: bool) -> str:
            return "yes" if flag else "no"

        click.echo(f"{'PEFT type':<24} {'method':<24} loads stacks merges per-row")
        for r in rows:
            line = (f"{r.peft_type:<24} {r.method or '-':<24} {yes(r.loads):<5} {yes(r.stacks):<6} "
                    f"{yes(r.merges):<6} {yes(r.per_row)}")
            click.echo(line + (f"  ({r.reason})" if r.reason else ""))


@click.command("plugins")
@click.option("--all", "show_all", is_flag=True, help="Include the built-in plugins.")
@json_option
def plugins_command(show_all: bool, as_json: bool) -> None:
    """List installed plugins (third-party by default), and any that failed to load."""
    from ..plugin.manager import failed_plugins, load_plugins, plugin_distribution, pm

    load_plugins()
    rows = []
    for name, plugin in pm.list_name_plugin():
        builtin = name.startswith("adapterhub.default_plugins.")
        if builtin and not show_all:
            continue
        dist, version = plugin_distribution(name)
        hooks = sorted(h.name for h in pm.get_hookcallers(plugin) or [])
        rows.append({"name": name, "distribution": dist, "version": version, "hooks": hooks, "builtin": builtin})
    for name, error in sorted(failed_plugins.items()):
        rows.append({"name": name, "error": error})
    if as_json:
        emit_json(rows)
        return
    if not rows:
        click.echo("No third-party plugins installed (use --all to include built-ins).")
    for r in rows:
        if "error" in r:
            click.echo(f"{r['name']}  FAILED: {r['error']}")
        else:
            click.echo(f"{r['name']}  ({r['distribution']} {r['version']})  hooks: {', '.join(r['hooks'])}")


def register(cli: click.Group) -> None:
    cli.add_command(methods_command)
    cli.add_command(plugins_command)
