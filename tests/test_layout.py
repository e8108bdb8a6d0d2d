"""adapterhub.layout: one rule for which files make up an adapter folder, used by every caller."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from adapterhub.layout import PICKLE_SUFFIXES, adapter_files, is_pickle, links_leaving, skipped_files


def _folder(root: Path) -> Path:
    """A LoRA folder plus everything that is not part of an adapter."""
    root.mkdir(parents=True)
    (root / "adapter_config.json").write_text(json.dumps({"peft_type": "LORA", "r": 2, "target_modules": ["q"]}))
    (root / "adapter_model.safetensors").write_bytes(b"\0" * 8)
    (root / "head").mkdir()
    (root / "head" / "model_head.safetensors").write_bytes(b"\1" * 8)
    for junk in (".gitattributes", ".git/config", ".cache/huggingface/x.lock", "__pycache__/m.pyc",
                 "head/__pycache__/n.pyc", "head/.DS_Store"):
        (root / junk).parent.mkdir(parents=True, exist_ok=True)
        (root / junk).write_text("junk")
    (root / "adapterhub.json").write_text("{}")  # the manifest of an earlier release
    return root


def test_adapter_files_skips_hidden_caches_and_pycache(tmp_path):
    root = _folder(tmp_path / "a")
    assert adapter_files(root) == [
        "adapter_config.json", "adapter_model.safetensors", "adapterhub.json", "head/model_head.safetensors"]
    assert adapter_files(root, for_publish=True) == [
        "adapter_config.json", "adapter_model.safetensors", "head/model_head.safetensors"]
    assert skipped_files(root, for_publish=True) == [
        ".cache/huggingface/x.lock", ".git/config", ".gitattributes", "__pycache__/m.pyc", "adapterhub.json",
        "head/.DS_Store", "head/__pycache__/n.pyc"]


def test_symlinks(tmp_path):
    root = _folder(tmp_path / "a")
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_text("secret")
    os.symlink(outside, root / "linked-dir")  # a folder link: never descended into
    os.symlink(outside / "secret.txt", root / "token.txt")  # a file link: a file of the adapter ...
    os.symlink(root / "adapter_config.json", root / "config-alias.json")  # ... inside or not
    assert "linked-dir/secret.txt" not in adapter_files(root)
    assert {"token.txt", "config-alias.json"} <= set(adapter_files(root))
    assert links_leaving(root) == ["linked-dir", "token.txt"]  # and those leaving are reported


def test_every_caller_agrees_on_the_files(tmp_path):
    """Install (resolve), method detection, the manifest and publish validation list the same files."""
    from adapterhub.client.resolve import local_files
    from adapterhub.plugin.registry import folder_files
    from adapterhub.publish.manifest import record_files
    from adapterhub.publish.validate import publishable_files

    root = _folder(tmp_path / "a")
    (root / "adapterhub.json").unlink()
    expected = adapter_files(root)
    assert [f.path for f in local_files(root)] == expected
    assert sorted(folder_files(root)) == expected
    assert [f.path for f in record_files(root)] == expected
    assert publishable_files(root)[0] == expected


@pytest.mark.parametrize("name", [f"weights{s}" for s in PICKLE_SUFFIXES] + ["sub/adapter_model.CKPT", "a.PT"])
def test_pickle_suffixes(name):
    assert is_pickle(name) and is_pickle(Path(name))


@pytest.mark.parametrize("name", ["adapter_model.safetensors", "adapter_config.json", "bin", "x.binary", "README.md"])
def test_not_pickles(name):
    assert not is_pickle(name)


def test_one_pickle_list_everywhere():
    from adapterhub.toolkit import weights

    assert set(PICKLE_SUFFIXES) == {".bin", ".pt", ".pth", ".ckpt", ".pkl", ".pickle"}
    assert weights.PICKLE_SUFFIXES is PICKLE_SUFFIXES


def test_layout_is_pure_stdlib():
    code = "import sys, adapterhub.layout; print(sorted(m for m in ('torch', 'transformers', 'peft') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
