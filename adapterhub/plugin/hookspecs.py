"""The hooks a plugin can implement. The built-in plugins use exactly these, nothing private."""

from __future__ import annotations

from pluggy import HookimplMarker, HookspecMarker

hookspec = HookspecMarker("adapterhub")
hookimpl = HookimplMarker("adapterhub")


@hookspec
def register_methods(register):
    """Register :class:`adapterhub.plugin.AdapterMethod` instances: call ``register(method)`` once per method.

    :param register: callable taking one ``AdapterMethod``; the host records which plugin registered it.
    """


@hookspec
def register_commands(cli):
    """Add click commands or groups to the ``adapterhub`` command line.

    :param cli: the root ``click.Group``.
    """
