"""A local Hub (subprocess, real huggingface_hub client) seeded with small adapters, and a registry
index describing them. The hub is shared by the module's tests; each test has its own store
(ADAPTERHUB_HOME from the root conftest). Tests that damage the server use their own repo."""

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


def make_adapter(directory: Path, seed: int, weights_size: int = 4096) -> Path:
    """A LoRA adapter directory in PEFT's on-disk layout (config + safetensors)."""
    import numpy as np
    from safetensors.numpy import save_file

    directory.mkdir(parents=True, exist_ok=True)
    config = {"peft_type": "LORA", "r": 2, "lora_alpha": 4, "target_modules": ["query", "value"],
              "base_model_name_or_path": "tiny-bert", "task_type": "FEATURE_EXTRACTION", "x-seed": seed}
    (directory / "adapter_config.json").write_text(json.dumps(config, indent=2))
    rng = np.random.default_rng(seed)
    n = max(1, weights_size // 4 // 2)
    save_file({"base_model.model.encoder.layer.0.attention.self.query.lora_A.weight": rng.standard_normal((2, n // 2)).astype("float32"),
               "base_model.model.encoder.layer.0.attention.self.query.lora_B.weight": rng.standard_normal((n // 2, 2)).astype("float32")},
              str(directory / "adapter_model.safetensors"))
    return directory


def file_list(directory: Path) -> list[dict]:
    return sorted(
        ({"path": p.relative_to(directory).as_posix(), "size": p.stat().st_size,
          "sha256": hashlib.sha256(p.read_bytes()).hexdigest()} for p in directory.rglob("*") if p.is_file()),
        key=lambda f: f["path"],
    )


def entry(name: str, versions: dict[str, dict], method: str = "lora", task: str = "sentiment-analysis") -> dict:
    return {
        "schema_version": 1, "name": name, "namespace": name.split("/")[0], "task": task, "method": method,
        "base_model": {"repo_id": "sentence-transformers/all-MiniLM-L6-v2", "revision": None, "model_type": "bert"},
        "license": "apache-2.0", "description": f"test adapter {name}", "tags": ["test"], "versions": versions,
    }


def version(repo_id: str, commit: str, files: list[dict], tag: str | None = None, **extra) -> dict:
    return {"source": {"type": "hf", "repo_id": repo_id, "tag": tag, "revision": commit}, "files": files, **extra}


def write_index_dir(root: Path, entries: list[dict]) -> Path:
    for e in entries:
        path = root / f"{e['name']}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(e, indent=2))
    return root


@dataclass
class Seeded:
    hub: object
    url: str
    index_dir: Path
    commits: dict[str, str]  # "lora-a@v1.0.0" -> sha
    adapters: dict[str, Path]  # local copies of what was uploaded
    root: Path

    def api(self):
        from huggingface_hub import HfApi

        return HfApi(endpoint=self.url, token=TOKEN)

    def push(self, repo: str, directory: Path, tag: str | None = None) -> str:
        api = self.api()
        api.create_repo(repo, exist_ok=True)
        commit = api.upload_folder(repo_id=repo, folder_path=directory).oid
        if tag:
            api.create_tag(repo, tag=tag, revision=commit)
        return commit


@pytest.fixture(scope="session")
def seeded(tmp_path_factory) -> Seeded:
    from adapterhub.server.testing import running_hub

    root = tmp_path_factory.mktemp("client-hub")
    with running_hub(root / "hub", {"alice": TOKEN}) as hub:
        s = Seeded(hub, hub.url, root / "index", {}, {}, root)
        for tag, seed in (("v1.0.0", 1), ("v1.1.0", 2), ("v1.2.0", 3), ("v2.0.0rc1", 4)):
            d = make_adapter(root / "src" / f"lora-a-{tag}", seed)
            s.adapters[f"lora-a@{tag}"] = d
            s.commits[f"lora-a@{tag}"] = s.push("alice/lora-a", d, tag)
        d = make_adapter(root / "src" / "nli", 9)
        s.adapters["nli"] = d
        s.commits["nli"] = s.push("alice/nli-lora", d, "v0.1.0")
        a = lambda t: version("alice/lora-a", s.commits[f"lora-a@{t}"], file_list(s.adapters[f"lora-a@{t}"]), t)  # noqa: E731
        write_index_dir(s.index_dir, [
            entry("sentiment/sst2", {"1.0.0": a("v1.0.0"), "1.1.0": a("v1.1.0"),
                                     "1.2.0": a("v1.2.0") | {"yanked": True, "yanked_reason": "bad metrics"},
                                     "2.0.0rc1": a("v2.0.0rc1")}),
            entry("nli/sst2", {"0.1.0": version("alice/nli-lora", s.commits["nli"], file_list(d), "v0.1.0")}, task="nli"),
            # A registry name that is also a repo id: the registry wins because it is in the index.
            entry("alice/lora-a", {"1.0.0": a("v1.0.0")}),
        ])
        yield s


@pytest.fixture
def client_env(seeded, monkeypatch):
    monkeypatch.setenv("HF_ENDPOINT", seeded.url)
    monkeypatch.setenv("ADAPTERHUB_INDEX", str(seeded.index_dir))
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("ADAPTERHUB_OFFLINE", raising=False)
    return seeded


def run_subprocess(*args: str, env: dict | None = None, **kwargs) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "adapterhub", *args], env={**os.environ, **(env or {})},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kwargs)
