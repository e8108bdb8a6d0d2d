"""adapterhub.plugin.registry: which methods the plugins registered, attribution, detection."""

from __future__ import annotations

import pytest

from adapterhub.errors import AdapterFormatError, NoMethodClaimsError, PluginError, UnknownMethodError
from adapterhub.plugin import hookimpl
from adapterhub.plugin import registry as methods_mod


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


