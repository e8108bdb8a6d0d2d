"""Shared helpers of tests/integration (a uniquely named module: every test area has a conftest)."""

from __future__ import annotations

import copy
import hashlib
import json
import socket
from dataclasses import dataclass
from pathlib import Path

TOKEN = "tok-alice"
REPO = "alice/tiny-lora"
REGISTRY_NAME = "demo/tiny-lora"

@dataclass
class HubWorld:
    url: str
    index_dir: Path
    base: object  # the tiny BertModel every adapter here was made for
    v1: Path  # local copy of what was pushed as tag v1.0.0
    v2: Path  # local copy of the later commit on main
    commits: dict[str, str]

    def api(self):
        from huggingface_hub import HfApi

        return HfApi(endpoint=self.url, token=TOKEN)

    def fresh_base(self):
        return copy.deepcopy(self.base)


def file_list(directory: Path) -> list[dict]:
    return sorted(
        ({"path": p.relative_to(directory).as_posix(), "size": p.stat().st_size,
          "sha256": hashlib.sha256(p.read_bytes()).hexdigest()} for p in directory.rglob("*") if p.is_file()),
        key=lambda f: f["path"],
    )


def write_entry(index_dir: Path, name: str, repo_id: str, commit: str, tag: str, files: list[dict]) -> Path:
    """One registry entry, checked with the client's own validation (schema and extra rules)."""
    from adapterhub.client.authoring import validate_index_dir

    entry = {
        "schema_version": 1, "name": name, "namespace": name.split("/")[0], "task": "feature-extraction",
        "method": "lora", "base_model": {"repo_id": "testing/tiny-bert", "revision": None, "model_type": "bert"},
        "license": "apache-2.0", "description": "a tiny LoRA adapter for the integration tests", "tags": ["test"],
        "versions": {"1.0.0": {"source": {"type": "hf", "repo_id": repo_id, "tag": tag, "revision": commit},
                               "files": files}},
    }
    path = index_dir / f"{name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(entry, indent=2))
    _, problems = validate_index_dir(index_dir)
    assert not problems, problems
    return path


def forbid_network(monkeypatch) -> None:
    """From now on any socket connection fails the test (a network guard, not a mock of any client)."""

    def refuse(self, address, *args):
        raise AssertionError(f"network access to {address!r} while it must stay offline")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)


def hidden(model, inputs):
    import torch

    with torch.no_grad():
        return model(**inputs).last_hidden_state


def peft_output(base, adapter_dir: Path, inputs):
    from peft import PeftModel

    return hidden(PeftModel.from_pretrained(base, str(adapter_dir)).eval(), inputs)
