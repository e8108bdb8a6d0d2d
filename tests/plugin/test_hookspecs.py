"""adapterhub.plugin.hookspecs: every hook is documented in the README."""

from __future__ import annotations


def test_every_hook_is_documented_in_the_readme():
    import inspect
    from pathlib import Path

    from adapterhub.plugin import hookspecs

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    hooks = [
        (name, fn)
        for name, fn in vars(hookspecs).items()
        if callable(fn) and hasattr(fn, "adapterhub_spec")
    ]
    assert hooks, "no hookspecs found"
    for name, fn in hooks:
        signature = f"{name}({', '.join(inspect.signature(fn).parameters)})"
        assert signature in readme, f"hook {signature} is not documented in README.md"
