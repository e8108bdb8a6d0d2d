"""Regressions for what a newcomer hit using the CLI: every failure is `error:` + `hint:`, the right
exit code, no traceback, nothing half-installed, no hang on a dead Hub, no bar garbage in a pipe."""

from __future__ import annotations

import socket
import threading
import time
from pathlib import Path

import pytest

from .conftest import NAME, make_adapter, run_cli, run_subprocess


def _clean_failure(result, code: int = 1) -> None:
    assert result.exit_code == code, (result.stdout, result.stderr)
    assert "Traceback" not in result.stderr


def _installed_names() -> list[str]:
    return [a["name"] for a in run_cli("list", "--json").json()["installed"]]


def test_refused_endpoint_fails_fast_and_names_it(hub_env):
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    start = time.monotonic()
    result = run_cli("install", "--endpoint", f"http://127.0.0.1:{port}", "alice/anything")
    _clean_failure(result)
    assert f"cannot reach the Hub at http://127.0.0.1:{port}" in result.stderr
    assert "hint:" in result.stderr
    assert time.monotonic() - start < 10


def test_silent_endpoint_times_out_instead_of_hanging(hub_env, monkeypatch):
    from adapterhub.client import remote

    monkeypatch.setattr(remote, "_API_TIMEOUT_S", 1.0)
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)  # accepts connections, never answers
    accepted = []
    threading.Thread(target=lambda: accepted.append(server.accept()), daemon=True).start()
    try:
        start = time.monotonic()
        result = run_cli("install", "--endpoint", f"http://127.0.0.1:{server.getsockname()[1]}", "alice/anything")
    finally:
        server.close()
    _clean_failure(result)
    assert "timed out" in result.stderr and "http://127.0.0.1:" in result.stderr
    assert time.monotonic() - start < 15


def test_no_progress_bar_garbage_when_stderr_is_not_a_terminal(hub_env):
    result = run_subprocess("install", NAME)
    assert result.returncode == 0, result.stderr
    assert "\r" not in result.stderr and "B/s" not in result.stderr
    assert f"Installed {NAME} 1.0.0" in result.stderr


def test_typo_in_registry_name_suggests_the_real_one(hub_env):
    result = run_cli("install", "sentiment/tiny-lroa")
    _clean_failure(result)
    assert "no such registry name" in result.stderr and f"not found on {hub_env.url}" in result.stderr
    assert f"did you mean {NAME}" in result.stderr


def test_folder_that_is_not_an_adapter_is_refused(hub_env, tmp_path):
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "todo.txt").write_text("not an adapter")
    result = run_cli("install", str(tmp_path / "notes"))
    _clean_failure(result)
    assert "not an adapter folder" in result.stderr and "adapter_config.json" in result.stderr
    assert _installed_names() == []


def test_force_reinstall_repairs_a_corrupted_file(hub_env):
    out = run_cli("install", NAME, "--json")
    assert out.exit_code == 0, out.stderr
    config = Path(out.json()["installed"][0]["path"]) / "adapter_config.json"
    good = config.read_bytes()
    config.chmod(0o644)
    with open(config, "ab") as fh:  # appending changes the size (and, via the hardlink, the blob)
        fh.write(b"\n")
    broken = run_cli("verify")
    _clean_failure(broken)
    assert "adapter_config.json: size" in broken.stderr and "install --force" in broken.stderr
    assert run_cli("install", "--force", NAME, "-q").exit_code == 0
    repaired = run_cli("verify")
    assert repaired.exit_code == 0, repaired.stderr
    assert config.read_bytes() == good


def test_verify_reports_an_unreadable_install_record(hub_env):
    out = run_cli("install", NAME, "--json")
    assert out.exit_code == 0, out.stderr
    record = Path(out.json()["installed"][0]["path"]).with_suffix(".json")
    record.write_text('{"truncated')
    result = run_cli("verify", "--json")
    _clean_failure(result)
    report = result.json()
    assert report["ok"] is False
    assert any(str(record) in p and "unreadable" in p for p in report["problems"])
    assert run_cli("install", "--force", NAME, "-q").exit_code == 0
    assert run_cli("verify").exit_code == 0


@pytest.mark.parametrize(("argv", "suggestion"), [(["instal", "x"], "'install'"), (["cache", "prun"], "'prune'")])
def test_mistyped_command_is_a_usage_error_with_a_suggestion(argv, suggestion):
    result = run_cli(*argv)
    _clean_failure(result, code=2)
    assert "No such command" in result.stderr and suggestion in result.stderr


def test_push_of_a_missing_folder_is_a_usage_error_before_any_token_check(monkeypatch, tmp_path):
    monkeypatch.delenv("HF_TOKEN", raising=False)
    result = run_cli("push", str(tmp_path / "missing"), "--repo", "alice/x", "--version", "0.1.0")
    _clean_failure(result, code=2)
    assert "does not exist" in result.stderr and "token" not in result.stderr


def test_valid_adapter_folder_still_installs(hub_env, tmp_path):
    result = run_cli("install", str(make_adapter(tmp_path / "mine")), "--json")
    assert result.exit_code == 0, result.stderr
    assert result.json()["installed"][0]["method"]["name"] == "lora"


def test_a_malformed_push_argument_is_a_usage_error(monkeypatch, tmp_path):
    monkeypatch.delenv("HF_TOKEN", raising=False)
    result = run_cli("push", str(tmp_path), "--repo", "alice/x", "--version", "1.0")
    _clean_failure(result, code=2)
    assert "error: cannot push: bad arguments" in result.stderr and "--version '1.0'" in result.stderr
    assert "expected a version X.Y.Z" in result.stderr


def test_a_hub_without_users_warns_that_it_is_read_only(tmp_path):
    from adapterhub.server.testing import RunningHub

    hub = RunningHub(tmp_path / "root", {}).start()
    try:
        assert "this Hub is read-only, nobody can push to it" in hub.stderr_text()
    finally:
        hub.close()
    hub = RunningHub(tmp_path / "root", {"alice": "tok"}).start()
    try:
        assert "read-only" not in hub.stderr_text()
    finally:
        hub.close()


def test_the_plan_for_a_local_folder_says_copy_not_download(tmp_path):
    folder = make_adapter(tmp_path / "mine")
    result = run_cli("install", str(folder), "--dry-run")
    assert result.exit_code == 0, result.stderr
    assert "download" not in result.stderr
    assert "to copy)" in result.stderr and "adapter_model.safetensors" in result.stderr
    lines = [line for line in result.stderr.splitlines() if "adapter_config.json" in line]
    assert lines and lines[0].rstrip().endswith("copy")
    assert "Total:" in result.stderr and "to copy:" in result.stderr
    plan = run_cli("install", str(folder), "--dry-run", "--json").json()["plan"]
    assert plan["download_bytes"] == 0 and plan["copy_bytes"] == plan["total_bytes"] > 0
