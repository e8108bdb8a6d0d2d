"""A push goes through git-LFS even when the user's huggingface_hub has Xet on (its default): the
local Hub stores safetensors as LFS files and speaks git-LFS, not Xet (:mod:`adapterhub.client.remote`)."""

from __future__ import annotations

from huggingface_hub import constants

from adapterhub.client import remote
from adapterhub.settings import get_settings

from .conftest import TOKEN, make_adapter


def test_push_uploads_lfs_files_with_xet_on(client_env, tmp_path, monkeypatch):
    monkeypatch.setattr(constants, "HF_HUB_DISABLE_XET", False)
    settings = get_settings().with_overrides(token=TOKEN)
    hub = remote.HubRepo(settings, "alice/pushed-with-xet-on", TOKEN)
    hub.create(private=False)
    commit = hub.upload(make_adapter(tmp_path / "release", seed=9), message="m", description="d")
    assert hub.tree(commit)["adapter_model.safetensors"].expected_from == "hub-lfs"
    assert constants.HF_HUB_DISABLE_XET is False  # the user's setting is back
