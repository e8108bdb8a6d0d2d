"""adapterhub.server.testing: running_hub starts the installed package, whatever the working directory holds."""

from __future__ import annotations

from adapterhub.server.testing import running_hub


def test_running_hub_ignores_an_adapterhub_folder_in_the_working_directory(tmp_path, monkeypatch):
    shadow = tmp_path / "cwd" / "adapterhub"
    shadow.mkdir(parents=True)
    (shadow / "__init__.py").write_text("raise ImportError('the folder in the working directory was imported')\n")
    monkeypatch.chdir(shadow.parent)
    with running_hub(tmp_path / "root", {"alice": "token"}) as hub:
        assert hub.url.startswith("http://127.0.0.1:")
