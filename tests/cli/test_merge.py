"""``adapterhub merge`` end to end against a local Hub (real huggingface_hub client): sources given as a
registry name, a Hub repo id and a local folder, installed and verified through the client; the
folder it writes records where every source came from; ``adapterhub push`` publishes it and it
installs back. The sources are PEFT's own (tests/fixtures/peft-0.21.2-weighted/gpt2), so the merged
factors are compared with what PEFT's add_weighted_adapter made from them."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from safetensors.torch import load_file
from support.fixtures import FIXTURES

from adapterhub.testing import run_cli

pytestmark = pytest.mark.slow

TOKEN = "tok-alice-merge"
SOURCES = FIXTURES / "peft-0.21.2-weighted" / "gpt2" / "sources"
BASE = FIXTURES / "base" / "tiny-gpt2"
PEFT_MERGED = FIXTURES / "peft-0.21.2-weighted" / "gpt2" / "merged.safetensors"


@pytest.fixture(scope="module")
def hub(tmp_path_factory):
    """A local Hub where alice published s0 (registry name alice/s0) and s1 (used by repo id)."""
    from adapterhub.server.testing import running_hub

    root = tmp_path_factory.mktemp("merge-hub")
    with running_hub(root / "hub", {"alice": TOKEN}) as server:
        index = root / "index"
        for name in ("s0", "s1"):
            pushed = run_cli("push", str(SOURCES / name), "--repo", f"alice/{name}", "--version", "1.0.0",
                             "--name", f"alice/{name}", "--base-model", str(BASE), "--endpoint", server.url,
                             "--index-dir", str(index), "--task", "text-generation", "--json",
                             "--entry-out", str(root / f"{name}.entry.json"), env={"HF_TOKEN": TOKEN})
            assert pushed.exit_code == 0, pushed.stderr
        yield server, index


def _env(hub, tmp_path):
    server, index = hub
    return {"HF_ENDPOINT": server.url, "ADAPTERHUB_INDEX": str(index), "HF_TOKEN": TOKEN}


def _released_files(server, repo: str) -> dict[str, str]:
    """path -> sha256 of a release, from the manifest the Hub serves (not from our client)."""
    from huggingface_hub import hf_hub_download

    manifest = json.loads(open(hf_hub_download(repo, "adapterhub.json", revision="v1.0.0", endpoint=server.url)).read())
    return {f["path"]: f["sha256"] for f in manifest["files"]}


def test_merge_registry_name_repo_id_and_folder_then_push_and_install(hub, tmp_path):
    server, _ = hub
    env = _env(hub, tmp_path)
    local = shutil.copytree(SOURCES / "s2", tmp_path / "s2")
    out = tmp_path / "merged"
    result = run_cli("merge", "alice/s0@1.0.0", "alice/s1", str(local), "--weights", "0.7,0.5,-0.3",
                     "--combination", "ties", "--density", "0.5", "--base", str(BASE), "--out", str(out), "--json",
                     env=env)
    assert result.exit_code == 0, result.stderr
    report = result.json()
    assert sorted(report["files"]) == ["README.md", "adapter_config.json", "adapter_model.safetensors", "merge.json"]
    assert sorted(p.name for p in out.iterdir()) == sorted(report["files"])

    # provenance: each source's name, version, commit and files' sha256, as the Hub and the folder have them
    provenance = json.loads((out / "merge.json").read_text())
    assert provenance == report["provenance"]
    assert provenance["combination"] == {"combination_type": "ties", "weights": [0.7, 0.5, -0.3], "density": 0.5,
                                         "majority_sign_method": "total"}
    s0, s1, s2 = provenance["sources"]
    assert (s0["name"], s0["version"], s0["weight"]) == ("alice/s0", "1.0.0", 0.7)
    assert s1["source"]["repo_id"] == "alice/s1" and s1["weight"] == 0.5
    assert s2["source"]["type"] == "local" and s2["weight"] == -0.3
    from huggingface_hub import HfApi

    api = HfApi(endpoint=server.url)
    for record, repo in ((s0, "alice/s0"), (s1, "alice/s1")):
        tag = {t.name: t.target_commit for t in api.list_repo_refs(repo).tags}["v1.0.0"]
        assert record["commit"] == tag
        released = _released_files(server, repo)
        listed = {f["path"]: f["sha256"] for f in record["files"]}
        assert {p: listed[p] for p in released} == released
    import hashlib

    assert {f["path"]: f["sha256"] for f in s2["files"]} == {
        p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in local.iterdir()}
    card = (out / "README.md").read_text()
    for record in (s0, s1, s2):
        assert record["commit"] in card and record["sha256"] in card
    assert "ties" in card and "0.5" in card

    # the merged factors are what PEFT's add_weighted_adapter made of the same three sources
    peft = load_file(str(PEFT_MERGED))
    saved = load_file(str(out / "adapter_model.safetensors"))
    compared = 0
    for key, tensor in peft.items():
        case, module_key = key.split("|")
        if case == "ties":
            mine = saved[f"base_model.model.{module_key}"]
            assert (mine - tensor).abs().max().item() <= 1e-6, module_key
            compared += 1
    assert compared == 12

    # push it (the folder is a publishable adapter), then install it back by name
    index = tmp_path / "index"
    pushed = run_cli("push", str(out), "--repo", "alice/merged", "--version", "0.1.0", "--name", "alice/merged",
                     "--base-model", str(BASE), "--endpoint", server.url, "--index-dir", str(index),
                     "--task", "text-generation", "--json", "--entry-out", str(tmp_path / "merged.entry.json"), env=env)
    assert pushed.exit_code == 0, pushed.stderr
    release = pushed.json()
    assert release["load_checked"] and release["method"] == "lora"
    assert "merge.json" in {f["path"] for f in release["files"]}
    from huggingface_hub import hf_hub_download

    published_card = open(hf_hub_download("alice/merged", "README.md", revision="v0.1.0", endpoint=server.url)).read()
    assert s0["commit"] in published_card and s2["sha256"] in published_card  # the provenance stays on the card
    env["ADAPTERHUB_INDEX"] = str(index)
    installed = run_cli("install", "alice/merged@0.1.0", "--json", env=env)
    assert installed.exit_code == 0, installed.stderr
    path = installed.json()["installed"][0]["path"]
    assert load_file(f"{path}/adapter_model.safetensors").keys() == saved.keys()
    for key, tensor in load_file(f"{path}/adapter_model.safetensors").items():
        assert torch.equal(tensor, saved[key])


def test_the_plan_comes_first_and_the_merge_is_reported(hub, tmp_path):
    env = _env(hub, tmp_path)
    result = run_cli("merge", str(SOURCES / "u0"), str(SOURCES / "u1"), str(SOURCES / "u2"), "--weights", "1,1,1",
                     "--svd-rank", "4", "--base", str(BASE), "--out", str(tmp_path / "m"), env=env)
    assert result.exit_code == 0, result.stderr
    err = result.stderr
    assert err.index("Plan") < err.index("Merge: ") < err.index("Merged 3 lora adapters (svd)")
    assert "wrote" in result.stdout and "adapterhub push" in result.stdout
    config = json.loads((tmp_path / "m" / "adapter_config.json").read_text())
    assert config["r"] == config["lora_alpha"] == 4 and config["use_rslora"] is False


@pytest.mark.parametrize(("args", "words"), [
    (["--weights", "0.7,0.3"], ["2 weights for 3 sources"]),
    (["--weights", "a,b,c"], ["--weights"]),
    (["--weights", "1,1,1", "--combination", "ties"], ["density"]),
    (["--weights", "1,1,1", "--combination", "svd", "--density", "0.5"], ["density"]),
    (["--weights", "1,1,1", "--combination", "blend"], ["combination_type"]),
])
def test_bad_options_fail_before_anything_is_installed(hub, tmp_path, args, words):
    env = _env(hub, tmp_path)
    out = tmp_path / "never"
    result = run_cli("merge", "alice/s0@1.0.0", "alice/s1", str(SOURCES / "s2"), *args, "--base", str(BASE),
                     "--out", str(out), env=env)
    assert result.exit_code == 2, result.stderr
    for word in words:
        assert word in result.stderr
    assert "Plan" not in result.stderr and not out.exists()
    assert run_cli("list", "--json", env=env).json() == {"installed": []}


def test_an_existing_folder_is_kept_unless_forced_and_a_failed_merge_leaves_nothing(hub, tmp_path):
    env = _env(hub, tmp_path)
    out = tmp_path / "taken"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    args = ["merge", str(SOURCES / "s0"), str(SOURCES / "u2"), "--weights", "1,1", "--base", str(BASE), "--out", str(out)]
    refused = run_cli(*args, "--combination", "ties", "--density", "0.5", env=env)  # unequal ranks
    assert refused.exit_code == 2 and "--out" in refused.stderr
    failed = run_cli(*args, "--combination", "ties", "--density", "0.5", "--force", env=env)
    assert failed.exit_code == 1 and "equal ranks" in failed.stderr
    assert [p.name for p in out.iterdir()] == ["keep.txt"]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".taken")]  # no staging left behind
    forced = run_cli(*args, "--combination", "cat", "--force", env=env)
    assert forced.exit_code == 0, forced.stderr
    assert not (out / "keep.txt").exists() and (out / "merge.json").is_file()


def test_dry_run_prints_the_plan_and_writes_nothing(hub, tmp_path):
    env = _env(hub, tmp_path)
    out = tmp_path / "m"
    result = run_cli("merge", "alice/s0@1.0.0", str(SOURCES / "s2"), "--weights", "0.5,0.5", "--combination", "svd",
                     "--base", str(BASE), "--out", str(out), "--dry-run", "--json", env=env)
    assert result.exit_code == 0, result.stderr
    report = result.json()
    assert report["dry_run"] is True and [a["kind"] for a in report["plan"]["adapters"]] == ["registry", "local"]
    assert not out.exists() and run_cli("list", "--json", env=env).json() == {"installed": []}
