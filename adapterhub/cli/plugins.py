"""``adapterhub methods`` and ``adapterhub plugins``."""

from __future__ import annotations

import click

from .output import emit_json, json_option


@click.command("methods")
@json_option
def methods_command(as_json: bool) -> None:
    """List the adapter methods and the plugin that provides each."""
    from ..plugin.manager import plugin_distribution
    from ..plugin.registry import registered_methods

    rows = []
    for name, reg in sorted(registered_methods().items()):
        dist, version = plugin_distribution(reg.plugin)
        rows.append(
            {
                "method": name,
                "plugin": reg.plugin,
                "distribution": f"{dist} {version}",
                "peft_types": list(reg.method.peft_types),
                "formats": list(reg.method.formats),
                "description": reg.method.description,
                **reg.method.capabilities(),
            }
        )
    if as_json:
        emit_json(rows)
        return
    width = max((len(r["method"]) for r in rows), default=6)
    for r in rows:
        caps = ",".join(k for k in ("mergeable", "supports_mixed_batch", "trainable") if r[k])
        click.echo(f"{r['method']:<{width}}  {r['plugin']}  [{caps}]  {r['description']}")


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
