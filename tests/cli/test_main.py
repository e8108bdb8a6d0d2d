"""adapterhub.cli's entry point: error mapping, exit codes, lazy plugin commands, import cost."""

from __future__ import annotations

import subprocess
import sys

from adapterhub.plugin import hookimpl


def _run(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)


def test_import_and_help_do_not_import_torch():
    code = (
        "import sys, adapterhub\n"
        "from adapterhub.cli import cli\n"
        "from click.testing import CliRunner\n"
        "r = CliRunner().invoke(cli, ['--help'])\n"
        "assert r.exit_code == 0, r.output\n"
        "heavy = [m for m in ('torch', 'transformers', 'peft') if m in sys.modules]\n"
        "print(','.join(heavy) or 'none')\n"
    )
    result = _run(code)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "none"


def test_cli_maps_library_errors_to_exit_code_and_message(tmp_path):
    code = (
        "from adapterhub.cli import main\n"
        "from adapterhub.cli import cli\n"
        "import click\n"
        "from adapterhub.errors import AdapterFormatError\n"
        "@cli.command('boom')\n"
        "def boom():\n"
        "    raise AdapterFormatError('x/adapter_config.json: missing', hint='write one')\n"
        "main(['boom'])\n"
    )
    result = _run(code)
    assert result.returncode == 1
    assert "error: x/adapter_config.json: missing" in result.stderr
    assert "hint: write one" in result.stderr
    assert "Traceback" not in result.stderr
    usage = _run("from adapterhub.cli import main\nmain(['no-such-command'])\n")
    assert usage.returncode == 2


def test_plugin_commands_are_added_lazily_through_the_hook(fresh_plugins):
    import click
    from click.testing import CliRunner

    from adapterhub.cli import cli

    class CommandsPlugin:
        @hookimpl
        def register_commands(self, cli):
            @cli.command("hello-plugin")
            def hello():
                click.echo("hello from a plugin command")

    fresh_plugins.load_plugins()
    fresh_plugins.pm.register(CommandsPlugin(), name="commands-plugin")
    cli._plugins_added = False
    try:
        result = CliRunner().invoke(cli, ["hello-plugin"])
        assert result.exit_code == 0, result.output
        assert result.output.strip() == "hello from a plugin command"
        listing = CliRunner().invoke(cli, ["--help"])
        assert "hello-plugin" in listing.output
    finally:
        cli.commands.pop("hello-plugin", None)
        cli._plugins_added = False


