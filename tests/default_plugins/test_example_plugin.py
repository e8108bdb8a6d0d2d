"""A third-party plugin distribution, installed for real (pip into a private target dir, found through
importlib.metadata entry points in a subprocess), plus the broken-plugin paths."""

from __future__ import annotations

import importlib.metadata
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from adapterhub.testing import fresh_plugins

EXAMPLE = Path(__file__).resolve().parent.parent / "example_plugin"
ADAPTERHUB_BIN = Path(sys.executable).parent / "adapterhub"


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    target = tmp_path_factory.mktemp("site")
    build = tmp_path_factory.mktemp("build")
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
         "--no-index", "--target", str(target), str(EXAMPLE)],
        check=True, capture_output=True, env={**os.environ, "TMPDIR": str(build)},
    )
    return target


def _env(target: Path, **extra: str) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(target), **extra}


def test_methods_lists_the_installed_plugin(installed):
    out = subprocess.run([str(ADAPTERHUB_BIN), "methods", "--json"], capture_output=True, text=True,
                         env=_env(installed), check=True)
    rows = {r["method"]: r for r in json.loads(out.stdout)}
    assert rows["example-scale"]["plugin"] == "example_scale"
    assert "adapterhub-example-scale 0.1.0" == rows["example-scale"]["distribution"]
    assert {"lora", "qlora", "ia3"} <= set(rows)


def test_adapter_model_uses_the_plugin_method(installed, tmp_path):
    script = textwrap.dedent(f"""
        import json, torch
        from safetensors.torch import save_file
        from adapterhub import AdapterModel
        from adapterhub.testing import tiny_gpt2, tiny_inputs
        d = {str(tmp_path / 'scale')!r}
        import os; os.makedirs(d)
        json.dump({{"example_scale": {{"module": "lm_head"}}}}, open(d + "/adapter_config.json", "w"))
        save_file({{"scale": torch.full((128,), 2.0)}}, d + "/scale.safetensors")
        model = tiny_gpt2()
        inputs = tiny_inputs()
        base = model(**inputs).logits
        am = AdapterModel(model)
        am.load_adapter(d, name="s")
        am.set_adapter("s")
        assert am.adapters["s"].method == "example-scale"
        assert torch.allclose(am(**inputs).logits, 2 * base)
        am.delete_adapter("s")
        assert torch.equal(am(**inputs).logits, base)
        print("ok")
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=_env(installed))
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().endswith("ok")


def _broken_entry_point():
    return importlib.metadata.EntryPoint(
        name="broken_example", value="adapterhub_no_such_module_xyz", group="adapterhub"
    )


def test_broken_plugin_warns_and_names_itself():
    from adapterhub.plugin import manager as plugins

    with fresh_plugins():
        plugins.load_plugins()
        with pytest.warns(plugins.PluginLoadWarning, match="broken_example"):
            plugins.load_entry_point(_broken_entry_point())
        assert "broken_example" in plugins.failed_plugins


def test_strict_mode_raises_a_plugin_error_naming_it():
    from adapterhub.errors import PluginError
    from adapterhub.plugin import manager as plugins

    with fresh_plugins(ADAPTERHUB_STRICT_PLUGINS="1"):
        plugins.load_plugins()
        with pytest.raises(PluginError, match="broken_example") as info:
            plugins.load_entry_point(_broken_entry_point())
        assert isinstance(info.value.__cause__, ModuleNotFoundError)
