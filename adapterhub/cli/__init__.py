"""The ``adapterhub`` command: a thin click layer over the library.

Each ``adapterhub/cli/<group>.py`` module defines its commands and a ``register(cli)`` function.
Errors are turned into messages and exit codes in one place, :func:`main`.
"""

from __future__ import annotations

import importlib
import os
import sys
import traceback
from pathlib import Path

import click

from .. import __version__
from ..errors import AdapterHubError, ExitCode

# Command modules, in help order. A module listed here that does not exist yet is skipped, so
# command groups can land independently.
_COMMAND_MODULES = ("install", "query", "cache", "index", "publish", "hub", "plugins", "demo")


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="adapterhub")
def cli() -> None:
    """adapterhub: install, verify, stack, merge and publish PEFT adapters."""


def _register_commands() -> None:
    here = Path(__file__).parent
    for name in _COMMAND_MODULES:
        if (here / f"{name}.py").is_file():
            importlib.import_module(f"{__name__}.{name}").register(cli)
    # Third-party commands. Loading plugins imports only their modules, never torch.
    from ..plugins import load_plugins, pm

    load_plugins()
    pm.hook.register_commands(cli=cli)


_register_commands()


def main(argv: list[str] | None = None) -> None:
    """Entry point: run the CLI and map library errors to ``error: ...`` and an exit code."""
    try:
        cli.main(args=argv, prog_name="adapterhub", standalone_mode=False)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.Abort:
        click.echo("Aborted.", err=True)
        sys.exit(ExitCode.ERROR)
    except click.ClickException as exc:
        exc.show()
        sys.exit(ExitCode.USAGE if isinstance(exc, click.UsageError) else ExitCode.ERROR)
    except AdapterHubError as exc:
        if os.environ.get("ADAPTERHUB_DEBUG"):
            traceback.print_exc()
        click.echo(f"error: {exc}", err=True)
        sys.exit(exc.exit_code)
    sys.exit(ExitCode.OK)
