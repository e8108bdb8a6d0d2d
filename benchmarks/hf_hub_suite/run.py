"""Run huggingface_hub's own test suite against a local ``adapterhub hub serve``.

What it does, so a newcomer can repeat it:

1. downloads the huggingface_hub sdist of the installed version from PyPI into a temporary folder
   (``pip download --no-binary :all: --no-deps huggingface_hub==X``; ``--sdist`` uses a local copy)
   and unpacks its ``tests/`` folder (the sdist ships the tests, not their conftest.py);
2. starts ``adapterhub hub serve`` on 127.0.0.1 with the suite's users (``__DUMMY_HUB_USER__``,
   ``DVUser``, ``EnterpriseAdmin``) and organisations (``valid_org_hub``, ``EnterpriseOrgPrivate``)
   from a ``--config`` file, and points the suite's staging endpoint (``ENDPOINT_STAGING`` in ``testing_constants.py``) and ``HF_ENDPOINT``
   at it;
3. runs pytest with ``suite_conftest.py`` as the suite's conftest.py; tests that ``scope.py``
   puts out of scope are skipped, with their reason;
4. prints pass counts by test class for the in-scope tests that reached the server (made at least
   one request), then the out-of-scope classes and why, then the failures.

Usage (needs ``pip install pytest-mock jedi``, which the suite imports)::

    python benchmarks/hf_hub_suite/run.py                  # the whole suite (6 to 8 minutes on 2 cores)
    python benchmarks/hf_hub_suite/run.py test_hf_api.py -k Discussions
    python benchmarks/hf_hub_suite/run.py --keep /tmp/hfsuite --json results.json

The run uses git-LFS uploads (``HF_HUB_DISABLE_XET=1``), as huggingface_hub's CI does in its
"without hf_xet" job: Xet storage is out of scope. Nothing leaves 127.0.0.1 except the sdist
download.
"""

from __future__ import annotations

import argparse
import collections
import importlib.metadata
import importlib.util
import json
import os
import queue
import shutil
import signal
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from scope import FILES  # noqa: E402

#: The users, tokens and organisations of the suite's testing_constants.py and of its tests
#: (whoami expects the full names; EnterpriseOrgPrivate makes new repos private by default).
CONFIG = """
[users.__DUMMY_HUB_USER__]
token = "hf_HubCITokenXXXXXXXXXXXXXXXXXXXXX"
fullname = "Dummy User"

[users.DVUser]
token = "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"

[users.EnterpriseAdmin]
token = "hf_enterprise_admin_token"

[orgs.valid_org_hub]
fullname = "Dummy Hub Org"
members = { __DUMMY_HUB_USER__ = "admin" }

[orgs.EnterpriseOrgPrivate]
members = { EnterpriseAdmin = "admin" }
private_by_default = true
"""
STAGING_LINE = 'ENDPOINT_STAGING = "https://hub-ci.huggingface.co"'
GOAL = 0.95


def fetch_sdist(version: str, dest: Path, sdist: Path | None) -> Path:
    if sdist is not None:
        return sdist
    print(f"downloading the huggingface_hub {version} sdist from PyPI ...", flush=True)
    subprocess.run(
        [sys.executable, "-m", "pip", "download", "--quiet", "--no-binary", ":all:", "--no-deps",
         f"huggingface_hub=={version}", "-d", str(dest)],
        check=True,
    )
    return next(dest.glob("huggingface_hub-*.tar.gz"))


def unpack_tests(sdist: Path, work: Path) -> Path:
    """Extract only ``*/tests/*`` into ``work/tests`` (the package itself is the installed one)."""
    tests = work / "tests"
    with tarfile.open(sdist) as tar:
        members = [m for m in tar.getmembers() if m.name.split("/")[1:2] == ["tests"] and (m.isfile() or m.isdir())]
        for member in members:
            member.name = "/".join(member.name.split("/")[1:])
        tar.extractall(work, members=members, filter="data")
    (tests / "__init__.py").write_text("")  # the tests import each other relatively
    shutil.copy(HERE / "suite_conftest.py", tests / "conftest.py")
    return tests


def point_at(tests: Path, url: str) -> None:
    constants = tests / "testing_constants.py"
    text = constants.read_text()
    if STAGING_LINE not in text:
        raise SystemExit(f"{constants}: no line {STAGING_LINE!r} to point at the local Hub")
    constants.write_text(text.replace(STAGING_LINE, f'ENDPOINT_STAGING = "{url}"'))


def write_pytest_ini(work: Path) -> None:
    markers = ["api", "transfer", "inference", "xet", "no_xet", "production", "deprecated", "git_lfs"]
    lines = ["[pytest]", "markers ="] + [f"    {m}: huggingface_hub suite marker" for m in markers]
    lines += ["filterwarnings =", "    ignore::DeprecationWarning", "    ignore::FutureWarning"]
    (work / "pytest.ini").write_text("\n".join(lines) + "\n")


def start_hub(work: Path, log_path: Path) -> tuple[subprocess.Popen[str], str]:
    config = work / "hub.toml"
    config.write_text(CONFIG)
    env = {k: v for k, v in os.environ.items() if not k.startswith("ADAPTERHUB_HUB_")}
    cmd = [sys.executable, "-m", "adapterhub", "hub", "serve", "--root", str(work / "hub"), "--port", "0",
           "--config", str(config)]
    log = open(log_path, "w")  # noqa: SIM115  (the server writes to it for its whole life)
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=log, stdin=subprocess.DEVNULL, text=True, env=env)
    lines: queue.Queue[str] = queue.Queue()
    assert proc.stdout is not None
    threading.Thread(target=lambda: [lines.put(line) for line in proc.stdout], daemon=True).start()  # type: ignore[union-attr]
    try:
        line = lines.get(timeout=60)
    except queue.Empty:
        proc.kill()
        raise SystemExit("the hub did not start within 60 s; see " + str(log_path)) from None
    if not line.startswith("Serving on "):
        proc.kill()
        raise SystemExit(f"the hub did not start: {line!r}; see {log_path}")
    return proc, line.removeprefix("Serving on ").strip()


def stop_hub(proc: subprocess.Popen[str]) -> None:
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def run_pytest(work: Path, url: str, selection: list[str], extra: list[str], log_path: Path) -> Path:
    results = work / "results.json"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "HUGGING"))}
    env.update(
        HF_ENDPOINT=url,
        HF_HOME=str(work / "hf_home"),
        HF_HUB_DISABLE_XET="1",
        NO_COLOR="1",  # the CLI output tests compare plain text
        HF_SUITE_ACCESS_LOG=str(log_path),
        HF_SUITE_RESULTS=str(results),
        PYTHONPATH=os.pathsep.join([str(HERE), env.get("PYTHONPATH", "")]).rstrip(os.pathsep),
    )
    if not selection:  # every test file but those out of scope as a whole (they need other services)
        selection = sorted(p.name for p in (work / "tests").glob("test_*.py") if p.name not in FILES)
    targets = [f"tests/{s}" for s in selection]
    cmd = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "--no-header", "-rN",
           "--continue-on-collection-errors", *targets, *extra]
    print("$ " + " ".join(cmd), flush=True)
    subprocess.run(cmd, cwd=work, env=env, check=False)
    if not results.is_file():
        raise SystemExit("pytest wrote no results (collection failed?)")
    return results


def summarise(results: dict[str, dict], show_failures: bool) -> dict:
    by_class: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    out_of_scope: dict[str, tuple[str, int]] = {}
    local_only = collections.Counter()
    failures, local_failures = [], []
    for nodeid, rec in results.items():
        if rec.get("collection_error"):
            local_failures.append((nodeid, "collection error: " + rec["collection_error"]))
            continue
        parts = nodeid.split("::")
        klass = "::".join(parts[:2]) if len(parts) > 2 else parts[0]
        klass = klass.removeprefix("tests/")
        if rec["scope"] != "in":
            reason, n = out_of_scope.get(klass, (rec["scope"], 0))
            out_of_scope[klass] = (reason, n + 1)
            continue
        if not rec["reached"] or rec["outcome"] == "skipped":
            local_only[rec["outcome"] or "not run"] += 1
            if rec["outcome"] == "failed":
                local_failures.append((nodeid, rec.get("error", "")))
            continue
        outcome = "passed" if rec["outcome"] == "passed" else "failed"
        by_class[klass][outcome] += 1
        if outcome == "failed":
            failures.append((nodeid, rec.get("error", "")))
    total_pass = sum(c["passed"] for c in by_class.values())
    total = sum(c["passed"] + c["failed"] for c in by_class.values())
    print("\nIn scope, reached the server: passed / total by test class")
    width = max((len(k) for k in by_class), default=10)
    for klass in sorted(by_class):
        c = by_class[klass]
        mark = "" if not c["failed"] else f"   ({c['failed']} failed)"
        print(f"  {klass:<{width}}  {c['passed']:>4} / {c['passed'] + c['failed']:<4}{mark}")
    rate = total_pass / total if total else 0.0
    print(f"  {'TOTAL':<{width}}  {total_pass:>4} / {total:<4}  = {rate:.1%}  (goal {GOAL:.0%})")
    print(f"\nIn scope but not reaching the server (local-only or skipped by the suite itself): "
          f"{sum(local_only.values())} ({dict(local_only)})")
    print("\nOut of scope, whole files (not collected)")
    for name, reason in sorted(FILES.items()):
        print(f"  {name:<{width}}  {reason}")
    print("\nOut of scope, by test class (tests, reason)")
    for klass in sorted(out_of_scope):
        reason, n = out_of_scope[klass]
        print(f"  {klass:<{width}}  {n:>4}  {reason}")
    for title, items in (("Failures (in scope, reached the server)", failures),
                         ("Failures that never reached the server (not counted)", local_failures)):
        if items and show_failures:
            print(f"\n{title}")
            for nodeid, error in items:
                last = [line for line in error.strip().splitlines() if line.strip()][-1:] or [""]
                print(f"  {nodeid}\n      {last[0][:300]}")
    return {"passed": total_pass, "total": total, "rate": rate, "by_class": {k: dict(v) for k, v in by_class.items()},
            "out_of_scope": {k: {"reason": r, "tests": n} for k, (r, n) in out_of_scope.items()},
            "failures": [f[0] for f in failures]}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("selection", nargs="*", help="test files (or file::class) under tests/; default: all")
    parser.add_argument("-k", dest="keyword", help="pytest -k expression")
    parser.add_argument("--sdist", type=Path, help="a huggingface_hub-X.tar.gz already downloaded")
    parser.add_argument("--keep", type=Path, help="work in this folder and keep it (default: a temporary one)")
    parser.add_argument("--json", type=Path, help="also write the summary here")
    parser.add_argument("--quiet-failures", action="store_true", help="do not list the failing tests")
    args, extra = parser.parse_known_args()
    if args.keyword:
        extra += ["-k", args.keyword]
    missing = [name for name in ("pytest_mock", "jedi") if importlib.util.find_spec(name) is None]
    if missing:
        raise SystemExit(f"the suite needs {', '.join(missing)}: pip install pytest-mock jedi")
    version = importlib.metadata.version("huggingface_hub")
    work = args.keep or Path(tempfile.mkdtemp(prefix="hf-hub-suite-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        sdist = fetch_sdist(version, work, args.sdist)
        if (work / "tests").exists():
            shutil.rmtree(work / "tests")
        tests = unpack_tests(sdist, work)
        shutil.rmtree(work / "hub", ignore_errors=True)
        write_pytest_ini(work)
        log_path = work / "hub-access.log"
        proc, url = start_hub(work, log_path)
        try:
            point_at(tests, url)
            print(f"huggingface_hub {version} tests from {sdist.name}, local Hub at {url}", flush=True)
            started = time.monotonic()
            results_path = run_pytest(work, url, args.selection, extra, log_path)
        finally:
            stop_hub(proc)
        summary = summarise(json.loads(results_path.read_text()), not args.quiet_failures)
        summary["seconds"] = round(time.monotonic() - started)
        summary["huggingface_hub"] = version
        if args.json:
            args.json.write_text(json.dumps(summary, indent=1))
        return 0
    finally:
        if args.keep is None:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
