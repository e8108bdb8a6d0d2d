"""adapterhub.plugin.manager: loading built-in and entry-point plugins, failures, strict mode."""

from __future__ import annotations

import importlib.metadata

import pytest

from adapterhub.errors import PluginError
from adapterhub.plugin import manager as plugins_mod


def _entry_point(name, module_name):
    return importlib.metadata.EntryPoint(name=name, value=module_name, group="adapterhub")


def test_broken_plugin_warns_once_names_itself_and_is_skipped(fresh_plugins, fake_module, capsys):
    fake_module("adapterhub_broken_plugin", "raise RuntimeError('kaboom at import')")
    fresh_plugins.load_plugins()
    with pytest.warns(plugins_mod.PluginLoadWarning, match="adapterhub-broken.*kaboom") as caught:
        fresh_plugins.load_entry_point(_entry_point("adapterhub-broken", "adapterhub_broken_plugin"))
    assert len([w for w in caught if issubclass(w.category, plugins_mod.PluginLoadWarning)]) == 1
    assert "adapterhub-broken" in fresh_plugins.failed_plugins
    assert capsys.readouterr().err == ""  # the warning is the one message, not a second print
    assert fresh_plugins.pm.get_plugin("adapterhub-broken") is None


def test_strict_mode_reraises_plugin_errors(fresh_plugins, fake_module, monkeypatch):
    fake_module("adapterhub_broken_plugin2", "raise RuntimeError('kaboom again')")
    monkeypatch.setenv("ADAPTERHUB_STRICT_PLUGINS", "1")
    with pytest.raises(PluginError, match="adapterhub-broken2.*kaboom again") as info:
        fresh_plugins.load_entry_point(_entry_point("adapterhub-broken2", "adapterhub_broken_plugin2"))
    assert isinstance(info.value.__cause__, RuntimeError)


def test_hook_typo_is_caught_and_rolled_back(fresh_plugins, fake_module):
    fake_module(
        "adapterhub_typo_plugin",
        "from adapterhub.plugin import hookimpl\n@hookimpl\ndef register_method(register):\n    pass\n",
    )
    with pytest.warns(plugins_mod.PluginLoadWarning, match="register_method"):
        fresh_plugins.load_entry_point(_entry_point("adapterhub-typo", "adapterhub_typo_plugin"))
    assert fresh_plugins.pm.get_plugin("adapterhub-typo") is None


