"""A small local Hub (real huggingface_hub client) with one published adapter and a registry index
naming it, plus the real `adapterhub` entry point run in-process or as a subprocess."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from adapterhub.testing import CliResult, run_cli  # noqa: F401 (test modules import them from here)

TOKEN = "tok-alice"
NAME = "sentiment/tiny-lora"
REPO = "alice/tiny-lora"


def make_adapter(directory: Path) -> Path:
    """A LoRA adapter folder in PEFT's layout (config + safetensors), a few KB."""
    import numpy as np
    from safetensors.numpy import save_file

    directory.mkdir(parents=True, exist_ok=True)
    config = {"peft_type": "LORA", "r": 2, "lora_alpha": 4, "target_modules": ["query"],
              "base_model_name_or_path": "tiny-bert", "task_type": "FEATURE_EXTRACTION"}
    (directory / "adapter_config.json").write_text(json.dumps(config, indent=2))
    rng = np.random.default_rng(0)
    save_file({"base_model.model.encoder.layer.0.attention.self.query.lora_A.weight": rng.standard_normal((2, 32)).astype("float32"),
               "base_model.model.encoder.layer.0.attention.self.query.lora_B.weight": rng.standard_normal((32, 2)).astype("float32")},
              str(directory / "adapter_model.safetensors"))
    return directory


def file_list(directory: Path) -> list[dict]:
    return sorted(
        ({"path": p.relative_to(directory).as_posix(), "size": p.stat().st_size,
          "sha256": hashlib.sha256(p.read_bytes()).hexdigest()} for p in directory.rglob("*") if p.is_file()),
        key=lambda f: f["path"],
    )


@dataclass
class Hub:
    url: str
    index_dir: Path


@pytest.fixture(scope="session")
def cli_hub(tmp_path_factory) -> Hub:
    from huggingface_hub import HfApi

    from adapterhub.server.testing import running_hub

    root = tmp_path_factory.mktemp("cli-hub")
    with running_hub(root / "hub", {"alice": TOKEN}) as hub:
        adapter = make_adapter(root / "src")
        api = HfApi(endpoint=hub.url, token=TOKEN)
        api.create_repo(REPO)
        commit = api.upload_folder(repo_id=REPO, folder_path=adapter).oid
        entry = {
            "schema_version": 1, "name": NAME, "namespace": "sentiment", "task": "sentiment-analysis",
            "method": "lora", "license": "apache-2.0", "description": "tiny test adapter", "tags": ["test"],
            "base_model": {"repo_id": "hf-internal-testing/tiny-bert", "revision": None, "model_type": "bert"},
            "versions": {"1.0.0": {"source": {"type": "hf", "repo_id": REPO, "tag": None, "revision": commit},
                                   "files": file_list(adapter)}},
        }
        index_file = root / "index" / f"{NAME}.json"
        index_file.parent.mkdir(parents=True)
        index_file.write_text(json.dumps(entry))
        yield Hub(hub.url, root / "index")


@pytest.fixture
def hub_env(cli_hub, monkeypatch) -> Hub:
    monkeypatch.setenv("HF_ENDPOINT", cli_hub.url)
    monkeypatch.setenv("ADAPTERHUB_INDEX", str(cli_hub.index_dir))
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("ADAPTERHUB_OFFLINE", raising=False)
    return cli_hub


def run_subprocess(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "adapterhub", *args], env=dict(os.environ), capture_output=True,
                          text=True, timeout=timeout)
