"""Install by registry name, version spec, repo id, tag and sha, against a real local Hub."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from .conftest import file_list, run_cli


def _installed(result) -> list[dict]:
    assert result.exit_code == 0, result.stderr
    return result.json()["installed"]


def test_install_by_name_picks_newest_non_yanked_release(client_env):
    out = _installed(run_cli("install", "sentiment/sst2", "--json"))
    assert [(a["name"], a["version"]) for a in out] == [("sentiment/sst2", "1.1.0")]
    path = Path(out[0]["path"])
    source = client_env.adapters["lora-a@v1.1.0"]
    assert file_list(path) == file_list(source)  # bytes identical to what was published
    assert out[0]["source"] == {"type": "hf", "repo_id": "alice/lora-a", "revision": client_env.commits["lora-a@v1.1.0"]}
    assert out[0]["method"]["name"] == "lora"


@pytest.mark.parametrize(
    ("request_", "expected"),
    [("sentiment/sst2@1.0.0", "1.0.0"), ("sentiment/sst2@>=1,<2", "1.1.0"), ("sentiment/sst2@~=1.0", "1.1.0"),
     ("sentiment/sst2@==1.2.0", "1.2.0"), ("sentiment/sst2@>=2.0.0rc1", "2.0.0rc1"),
     # npm/cargo ranges and pip's NAME==VERSION: ^1 := >=1,<2 (1.2.0 is yanked), ~1.0 := >=1.0,<1.1
     ("sentiment/sst2@^1", "1.1.0"), ("sentiment/sst2@^1.0.0", "1.1.0"), ("sentiment/sst2@~1.0", "1.0.0"),
     ("sentiment/sst2==1.0.0", "1.0.0"), ("sst2==1.1.0", None)],
)
def test_install_by_version_spec(client_env, request_, expected):
    result = run_cli("install", request_, "--json")
    if expected is None:  # a bare name that two entries share stays ambiguous, whatever the spec
        assert result.exit_code == 1 and "ambiguous" in result.stderr
        return
    out = _installed(result)
    assert out[0]["version"] == expected
    assert file_list(Path(out[0]["path"])) == file_list(client_env.adapters[f"lora-a@v{expected}"])
    if expected == "1.2.0":
        assert "yanked" in result.stderr  # an exact pin of a yanked version is allowed, loudly


def test_pre_releases_only_when_asked(client_env):
    assert _installed(run_cli("install", "sentiment/sst2", "--pre", "--json"))[0]["version"] == "2.0.0rc1"


def test_dry_run_prints_plan_and_installs_nothing(client_env):
    result = run_cli("install", "sentiment/sst2@1.0.0", "--dry-run", "--json")
    assert result.exit_code == 0, result.stderr
    plan = result.json()["plan"]["adapters"][0]
    expected = file_list(client_env.adapters["lora-a@v1.0.0"])
    assert [(f["path"], f["size"], f["sha256"]) for f in plan["files"]] == [(f["path"], f["size"], f["sha256"]) for f in expected]
    assert plan["download_bytes"] == sum(f["size"] for f in expected)
    assert "adapter_model.safetensors" in result.stderr and "Total:" in result.stderr
    assert run_cli("list", "--json").json()["installed"] == []


def test_install_by_repo_id_tag_and_sha(client_env):
    out = _installed(run_cli("install", "alice/nli-lora", "--json"))[0]
    assert out["source"]["revision"] == client_env.commits["nli"]
    assert file_list(Path(out["path"])) == file_list(client_env.adapters["nli"])
    # The computed sha256 of every file is recorded even though the Hub gave only git ids.
    assert {f["path"]: f["sha256"] for f in out["files"]} == {f["path"]: f["sha256"] for f in file_list(client_env.adapters["nli"])}

    tagged = _installed(run_cli("install", "alice/nli-lora@v0.1.0", "--json"))[0]
    assert tagged["source"]["revision"] == client_env.commits["nli"] and tagged["action"] == "present"

    sha = client_env.commits["lora-a@v1.1.0"]
    by_sha = _installed(run_cli("install", f"hf://alice/lora-a@{sha}", "--json"))[0]
    assert by_sha["source"]["revision"] == sha
    assert file_list(Path(by_sha["path"])) == file_list(client_env.adapters["lora-a@v1.1.0"])
    by_tag = _installed(run_cli("install", "hf://alice/lora-a@v1.2.0", "--json"))[0]
    assert by_tag["source"]["revision"] == client_env.commits["lora-a@v1.2.0"]


def test_registry_name_wins_over_repo_id_only_when_indexed(client_env):
    out = _installed(run_cli("install", "alice/lora-a", "--json"))[0]
    assert out["version"] == "1.0.0"  # the index entry alice/lora-a has only 1.0.0; the repo's main is newer
    assert out["source"]["revision"] == client_env.commits["lora-a@v1.0.0"]


def test_unknown_version_lists_candidates(client_env):
    result = run_cli("install", "sentiment/sst2@9.9")
    assert result.exit_code == 1
    assert "no version 9.9" in result.stderr
    for v in ("1.0.0", "1.1.0", "1.2.0 (yanked)", "2.0.0rc1 (pre-release)"):
        assert v in result.stderr
    result = run_cli("install", "sentiment/sst2@>=3")
    assert result.exit_code == 1 and "1.1.0" in result.stderr


def test_ambiguous_and_unknown_names_list_candidates(client_env, tmp_path, monkeypatch):
    result = run_cli("install", "sst2")
    assert result.exit_code == 1 and "ambiguous" in result.stderr
    assert "nli/sst2" in result.stderr and "sentiment/sst2" in result.stderr

    result = run_cli("install", "sentiment/sst3@>=1")
    assert result.exit_code == 1 and "sentiment/sst2" in result.stderr

    # A registry name that is also a directory here: never a silent pick.
    monkeypatch.chdir(tmp_path)
    (tmp_path / "sentiment" / "sst2").mkdir(parents=True)
    result = run_cli("install", "sentiment/sst2")
    assert result.exit_code == 1 and "ambiguous" in result.stderr and "./sentiment/sst2" in result.stderr


def test_unknown_repo_and_revision_errors(client_env):
    result = run_cli("install", "alice/no-such-repo")
    assert result.exit_code == 1 and "not found" in result.stderr
    result = run_cli("install", "alice/nli-lora@nope")
    assert result.exit_code == 1 and "tag v0.1.0" in result.stderr and "branch main" in result.stderr
    assert run_cli("install", "not a name!").exit_code == 2


def test_ensure_installed_and_local_dir(client_env, tmp_path):
    from adapterhub.client import ensure_installed

    path = ensure_installed("sentiment/sst2", revision="1.0.0")
    assert file_list(path) == file_list(client_env.adapters["lora-a@v1.0.0"])
    assert ensure_installed("sentiment/sst2@1.0.0") == path  # second call: already there, re-verified

    local = ensure_installed(str(client_env.adapters["nli"]))
    assert file_list(local) == file_list(client_env.adapters["nli"])
    assert local.is_relative_to(Path(__import__("os").environ["ADAPTERHUB_HOME"]))


def test_local_dir_with_symlink_out_is_refused(client_env, tmp_path):
    adapter = tmp_path / "evil"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text(json.dumps({"peft_type": "LORA"}))
    secret = tmp_path / "secret.txt"
    secret.write_text("secret")
    (adapter / "adapter_model.safetensors").symlink_to(secret)
    result = run_cli("install", f"{adapter}")
    assert result.exit_code == 1 and "outside the adapter directory" in result.stderr
    assert run_cli("list", "--json").json()["installed"] == []


def test_unknown_method_is_recorded_not_fatal(client_env, tmp_path):
    adapter = tmp_path / "mystery"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text(json.dumps({"peft_type": "SOMETHING_NEW"}))
    (adapter / "weights.bin.safetensors").write_bytes(b"\0" * 16)
    result = run_cli("install", str(adapter), "--json")
    out = _installed(result)[0]
    assert out["method"] == {"name": "unknown"}
    assert any("unknown" in n for n in out["notes"])
    assert hashlib.sha256(b"\0" * 16).hexdigest() in {f["sha256"] for f in out["files"]}
