"""The ``adapterhub`` command: a thin click layer over the library.

Each ``adapterhub/cli/<group>.py`` module defines its commands and a ``register(cli)`` function.
Errors are turned into messages and exit codes in one place, :func:`main`.
"""

from __future__ import annotations

import atexit
import contextlib
import importlib
import logging
import os
import sys
import threading
import traceback
from typing import Any, NoReturn

import click

from .. import __version__
from ..errors import AdapterHubError, ExitCode

# Which module defines each built-in command, in help order. Modules are imported only when their
# command runs (or for --help), so `adapterhub install` never pays for the hub server or the runtime.
_COMMANDS = {
    "install": "install",
    "uninstall": "install",
    "sync": "install",
    "list": "query",
    "info": "query",
    "search": "query",
    "verify": "query",
    "cache": "cache",
    "index": "index",
    "merge": "merge",
    "train": "train",
    "push": "publish",
    "convert": "publish",
    "export": "export",
    "hub": "hub",
    "methods": "plugins",
    "plugins": "plugins",
    "demo": "demo",
}


class LazyGroup(click.Group):
    """A click group that imports a command's module on first use.

    Third-party commands (the ``register_commands`` hook) are added only when a name is not a
    built-in or when every command is listed, so a broken plugin cannot slow down or break
    built-in commands.
    """

    _plugins_added = False

    def _load_module(self, module: str) -> None:
        importlib.import_module(f"{__name__}.{module}").register(self)

    def _add_plugin_commands(self) -> None:
        if self._plugins_added:
            return
        self._plugins_added = True
        from ..plugin.manager import load_plugins, pm

        load_plugins()
        pm.hook.register_commands(cli=self)

    def list_commands(self, ctx: click.Context) -> list[str]:
        self._add_plugin_commands()
        extra = sorted(set(self.commands) - set(_COMMANDS))
        return list(_COMMANDS) + extra

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in self.commands:
            if cmd_name in _COMMANDS:
                self._load_module(_COMMANDS[cmd_name])
            else:
                self._add_plugin_commands()
        return self.commands.get(cmd_name)

    def resolve_command(self, ctx: click.Context, args: list[str]) -> Any:
        # click suggests close matches among the commands already loaded, which for a lazy group is
        # none: suggest among every command name instead ("instal" -> "Did you mean 'install'?").
        try:
            return super().resolve_command(ctx, args)
        except click.exceptions.NoSuchCommand as exc:
            raise click.exceptions.NoSuchCommand(
                exc.command_name, possibilities=self.list_commands(ctx), ctx=ctx
            ) from None


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="adapterhub")
def cli() -> None:
    """adapterhub: install, verify, stack, merge and publish PEFT adapters."""


class _WarningLines(logging.Handler):
    """The client's warnings (a retry, a capped Retry-After) as ``warning: ...`` lines on the stderr
    of the moment (click's, under a test runner)."""

    def emit(self, record: logging.LogRecord) -> None:
        click.echo(f"warning: {record.getMessage()}", err=True)


def _show_client_warnings() -> None:
    logger = logging.getLogger("adapterhub.client")
    if not any(isinstance(h, _WarningLines) for h in logger.handlers):
        logger.addHandler(_WarningLines(logging.WARNING))
        logger.setLevel(logging.WARNING)


def _interrupted(*, newline: bool) -> int:
    """Ctrl-C: a short line, no traceback, and the shell's exit status for SIGINT (130). Downloads
    stop at once; what they fetched stays, out of the store's sight, for the next run to resume."""
    click.echo(("\n" if newline else "") + "interrupted", err=True)
    return ExitCode.INTERRUPTED


def _run(argv: list[str] | None) -> int:
    """Run one command; its exit code, library errors printed as ``error: ...``."""
    from .output import show_warnings_as_lines

    show_warnings_as_lines()
    _show_client_warnings()
    try:
        cli.main(args=argv, prog_name="adapterhub", standalone_mode=False)
    except click.exceptions.Exit as exc:
        return exc.exit_code
    except KeyboardInterrupt:
        return _interrupted(newline=True)
    except click.Abort as exc:
        if isinstance(exc.__cause__, KeyboardInterrupt):  # click turned Ctrl-C into Abort (after a newline)
            return _interrupted(newline=False)
        click.echo("Aborted.", err=True)
        return ExitCode.ERROR
    except click.ClickException as exc:
        exc.show()
        return ExitCode.USAGE if isinstance(exc, click.UsageError) else ExitCode.ERROR
    except AdapterHubError as exc:
        if os.environ.get("ADAPTERHUB_DEBUG"):
            traceback.print_exc()
        click.echo(f"error: {exc}", err=True)
        return exc.exit_code
    return ExitCode.OK


def _leave(code: int) -> NoReturn:
    """End the ``adapterhub`` process. Once torch is loaded the interpreter's own teardown takes about
    a second, which Ctrl-C (or stopping ``hub serve``) should not wait for: when no other thread
    needs joining, run the exit handlers, flush, and end the process at once."""
    if "torch" in sys.modules and all(t.daemon for t in threading.enumerate() if t is not threading.main_thread()):
        atexit._run_exitfuncs()
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(Exception):
                stream.flush()
        os._exit(code)
    sys.exit(code)


def main(argv: list[str] | None = None) -> None:
    """Entry point: run the CLI and map library errors to ``error: ...`` and an exit code.

    ``argv=None`` is the real process (the ``adapterhub`` script, ``python -m adapterhub``), which
    may end without the interpreter's teardown (:func:`_leave`); with a list (tests) it raises SystemExit.
    """
    code = _run(argv)
    if argv is None:
        _leave(code)
    sys.exit(code)
