"""Fixtures for the publish tests: a local Hub in a subprocess, a tiny BERT base model published on
it and downloaded into a Hugging Face cache (as a user's base model would be), and CLI helpers."""

from __future__ import annotations

from pathlib import Path

import pytest
from publish_helpers import BASE_REPO, USERS


@pytest.fixture(scope="session")
def hub(tmp_path_factory):
    from adapterhub.server.testing import running_hub

    with running_hub(tmp_path_factory.mktemp("hub-root"), users=USERS) as server:
        yield server


@pytest.fixture(scope="session")
def base_model_dir(hub, tmp_path_factory) -> Path:
    """A tiny random BERT pushed to the Hub as alice/tiny-bert and downloaded into an HF cache:
    models loaded from this path carry it as name_or_path, so the repo id and commit are known."""
    import torch
    from huggingface_hub import HfApi, snapshot_download
    from transformers import BertConfig, BertModel

    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=120, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
        max_position_embeddings=64,
    )
    saved = tmp_path_factory.mktemp("tiny-bert-src")
    BertModel(config).save_pretrained(saved)
    api = HfApi(endpoint=hub.url, token=USERS["alice"])
    api.create_repo(BASE_REPO, exist_ok=True)
    api.upload_folder(repo_id=BASE_REPO, folder_path=saved, commit_message="tiny bert")
    cache = tmp_path_factory.mktemp("hf-cache")
    return Path(snapshot_download(BASE_REPO, endpoint=hub.url, token=USERS["alice"], cache_dir=cache))
