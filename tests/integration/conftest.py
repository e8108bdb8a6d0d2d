"""A local Hub (subprocess, real huggingface_hub client) holding a LoRA adapter saved by real PEFT,
and a registry index entry for it, for loading adapters end to end through ``AdapterModel``."""

from __future__ import annotations

import warnings

import pytest
from integration_support import REGISTRY_NAME, REPO, TOKEN, HubWorld, file_list, write_entry

warnings.filterwarnings("ignore", message=".*Already found a `peft_config`.*")


@pytest.fixture(scope="session")
def world(tmp_path_factory) -> HubWorld:
    from peft import LoraConfig

    from adapterhub.server.testing import running_hub
    from adapterhub.testing import save_peft_adapter, tiny_bert

    root = tmp_path_factory.mktemp("integration")
    base = tiny_bert(seed=3)
    config = LoraConfig(r=4, lora_alpha=8, target_modules=["query", "value", "dense"])
    v1 = save_peft_adapter(base, config, root / "src" / "v1", seed=1)
    v2 = save_peft_adapter(base, config, root / "src" / "v2", seed=2)
    with running_hub(root / "hub", {"alice": TOKEN}) as hub:
        w = HubWorld(hub.url, root / "index", base, v1, v2, {})
        api = w.api()
        api.create_repo(REPO)
        w.commits["v1"] = api.upload_folder(repo_id=REPO, folder_path=v1).oid
        api.create_tag(REPO, tag="v1.0.0", revision=w.commits["v1"])
        w.commits["v2"] = api.upload_folder(repo_id=REPO, folder_path=v2).oid  # newer, on main only
        write_entry(w.index_dir, REGISTRY_NAME, REPO, w.commits["v1"], "v1.0.0", file_list(v1))
        yield w


@pytest.fixture
def hub_env(world, monkeypatch):
    """The client's settings are read at call time: point them at the local Hub and index."""
    monkeypatch.setenv("HF_ENDPOINT", world.url)
    monkeypatch.setenv("ADAPTERHUB_INDEX", str(world.index_dir))
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("ADAPTERHUB_OFFLINE", raising=False)
    return world


@pytest.fixture(scope="session")
def inputs():
    from adapterhub.testing import tiny_inputs

    return tiny_inputs()
