"""The pieces every other part rides on: composition blocks, the plugin loader, the method
registry, detection errors, the CLI error mapping and the import cost."""

from __future__ import annotations

import importlib.metadata
import json
import subprocess
import sys

import pytest

from adapterhub import Average, BatchSplit, Parallel, Stack
from adapterhub.plugin import hookimpl
from adapterhub.composition import as_block, block_from_dict
from adapterhub.errors import (
    AdapterFormatError,
    CompositionError,
    NoMethodClaimsError,
    PluginError,
    UnknownMethodError,
)
from adapterhub.plugin import manager as plugins_mod
from adapterhub.plugin import registry as methods_mod


# --- composition ---------------------------------------------------------------------------


def test_blocks_round_trip_through_dict():
    setup = BatchSplit(Stack("a", "b"), Average("c", "d", weights=[3, 1]), "e", batch_sizes=[1, 2, 1])
    data = json.loads(json.dumps(setup.to_dict()))
    assert block_from_dict(data) == setup
    assert setup.names() == ["a", "b", "c", "d", "e"]


def test_average_normalises_weights_like_adapters():
    avg = Average("a", "b", weights=[3, 1])
    assert avg.weights == [0.75, 0.25]
    assert Average("a", "b").weights == [0.5, 0.5]
    with pytest.raises(CompositionError, match="sum to 0"):
        Average("a", "b", weights=[1, -1])
    with pytest.raises(CompositionError, match="2 adapters but 3 weights"):
        Average("a", "b", weights=[1, 1, 1])


def test_batch_split_validates_sizes():
    assert BatchSplit("a", "b", batch_sizes=2).batch_sizes == [2, 2]
    with pytest.raises(CompositionError, match="one non-negative size per adapter"):
        BatchSplit("a", "b", batch_sizes=[1])


def test_as_block_accepts_names_lists_and_blocks():
    assert as_block("a") == Stack("a")
    assert as_block(["a", "b"]) == Stack("a", "b")
    assert as_block(Parallel("a", "b")) == Parallel("a", "b")
    assert as_block(None) is None
    with pytest.raises(CompositionError):
        as_block(3)
    with pytest.raises(CompositionError, match="at least one adapter"):
        Stack()


# --- plugin loading --------------------------------------------------------------------------


@pytest.fixture
def fresh_plugins(monkeypatch):
    """A plugin manager with only the built-ins, restored afterwards."""
    methods_mod.reset()
    monkeypatch.setenv("ADAPTERHUB_LOAD_PLUGINS", "")
    yield plugins_mod
    methods_mod.reset()


@pytest.fixture
def fake_module(tmp_path, monkeypatch):
    """Write a plugin module to disk so that importing it (ep.load()) runs its body."""
    monkeypatch.syspath_prepend(str(tmp_path))

    def write(name, body):
        (tmp_path / f"{name}.py").write_text(body)
        monkeypatch.delitem(sys.modules, name, raising=False)

    return write


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


def test_builtins_register_through_the_public_hook(fresh_plugins):
    registered = methods_mod.registered_methods()
    for name, reg in registered.items():
        assert reg.plugin.startswith("adapterhub.default_plugins."), (name, reg.plugin)
        assert reg.method.name == name


def test_duplicate_method_name_is_an_error_naming_both_plugins(fresh_plugins):
    fresh_plugins.load_plugins()
    registered = methods_mod.registered_methods()
    if not registered:
        pytest.skip("no built-in methods registered yet")
    taken = next(iter(registered.values()))
    clone = type("Clone", (type(taken.method),), {})()

    class Dup:
        @hookimpl
        def register_methods(self, register):
            register(clone)

    fresh_plugins.pm.register(Dup(), name="dup-plugin")
    methods_mod._cache = None
    with pytest.raises(PluginError, match="registered by both"):
        methods_mod.registered_methods()


def test_unknown_method_lists_known_ones(fresh_plugins):
    with pytest.raises(UnknownMethodError, match="no-such-method") as info:
        methods_mod.get_method("no-such-method")
    assert "known methods" in str(info.value)


def test_detect_errors_name_the_file(fresh_plugins, tmp_path):
    with pytest.raises(AdapterFormatError, match="adapter_config.json: missing"):
        methods_mod.detect_method(tmp_path)
    (tmp_path / "adapter_config.json").write_text("{not json")
    with pytest.raises(AdapterFormatError, match="adapter_config.json: not valid JSON"):
        methods_mod.detect_method(tmp_path)
    (tmp_path / "adapter_config.json").write_text('{"peft_type": "NOT_A_REAL_TYPE"}')
    with pytest.raises(NoMethodClaimsError, match="NOT_A_REAL_TYPE"):
        methods_mod.detect_method(tmp_path)


# --- CLI and import cost -----------------------------------------------------------------------


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


def test_every_hook_is_documented_in_the_readme():
    import inspect
    from pathlib import Path

    from adapterhub.plugin import hookspecs

    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    hooks = [
        (name, fn)
        for name, fn in vars(hookspecs).items()
        if callable(fn) and hasattr(fn, "adapterhub_spec")
    ]
    assert hooks, "no hookspecs found"
    for name, fn in hooks:
        signature = f"{name}({', '.join(inspect.signature(fn).parameters)})"
        assert signature in readme, f"hook {signature} is not documented in README.md"
