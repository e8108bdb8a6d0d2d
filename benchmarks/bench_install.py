"""Benchmark the client against a local Hub (real huggingface_hub client, subprocesses, cold caches).

1. cold install of 8 small adapters (`adapterhub install`, by registry name) vs sequential
   `snapshot_download` of the same 8 repos;
2. warm no-op install (everything already in the store, re-verified) vs `python -c 'import huggingface_hub'`;
3. sha256 throughput of adapterhub.client.sha256_file vs `sha256sum` on a ~200 MB file.

Each run uses fresh stores/caches against the same server; request counts come from the server's
access log. Run: /work/venv/bin/python benchmarks/bench_install.py [--runs 3]  (prints per-run
timings, then the median of each timing and each ratio)
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TOKEN = "tok-bench"
N_ADAPTERS = 8


_BYTECODE: dict[str, str] = {}  # set in main(): where every subprocess caches its bytecode


def _env(**extra: str) -> dict[str, str]:
    env = {**os.environ, "HF_HUB_DISABLE_TELEMETRY": "1", "HF_HUB_DISABLE_XET": "1", "HF_HUB_DISABLE_PROGRESS_BARS": "1"}
    env.pop("HF_TOKEN", None)
    if _BYTECODE:
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        env.update(_BYTECODE)
    env.update(extra)
    return env


def _timed(cmd: list[str], env: dict[str, str], repeat: int = 1) -> float:
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        subprocess.run(cmd, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        best = min(best, time.perf_counter() - start)
    return best


def _files(directory: Path) -> list[dict]:
    return sorted(({"path": p.name, "size": p.stat().st_size, "sha256": hashlib.sha256(p.read_bytes()).hexdigest()}
                   for p in directory.iterdir()), key=lambda f: f["path"])


def _requests(hub: object, since: int) -> tuple[int, str, int]:
    """(requests in the server's access log after line ``since``, a per-method summary, new offset)."""
    lines = [ln for ln in hub.stderr_text().splitlines() if re.search(r'"(GET|HEAD|POST|PUT) ', ln)]  # type: ignore[attr-defined]
    new = lines[since:]
    counts: dict[str, int] = {}
    for ln in new:
        method = re.search(r'"(GET|HEAD|POST|PUT) ', ln).group(1)  # type: ignore[union-attr]
        counts[method] = counts.get(method, 0) + 1
    return len(new), " ".join(f"{m}={n}" for m, n in sorted(counts.items())), len(lines)


def _setup(hub: object, work: Path) -> tuple[list[str], list[str], Path]:
    from huggingface_hub import HfApi

    api = HfApi(endpoint=hub.url, token=TOKEN)  # type: ignore[attr-defined]
    index = work / "index" / "bench"
    index.mkdir(parents=True)
    repos = []
    for i in range(N_ADAPTERS):
        src = work / "src" / f"a{i}"
        src.mkdir(parents=True)
        (src / "adapter_config.json").write_text(json.dumps({"peft_type": "LORA", "r": 8, "target_modules": ["q", "v"], "x-i": i}))
        (src / "adapter_model.safetensors").write_bytes(os.urandom(256 * 1024))
        (src / "README.md").write_text(f"# adapter {i}\n")
        repo = f"bench/adapter-{i}"
        api.create_repo(repo)
        commit = api.upload_folder(repo_id=repo, folder_path=src).oid
        repos.append(repo)
        entry = {"schema_version": 1, "name": f"bench/a{i}", "namespace": "bench", "task": "sentiment-analysis",
                 "method": "lora", "base_model": {"repo_id": "x/y"},
                 "versions": {"1.0.0": {"source": {"type": "hf", "repo_id": repo, "revision": commit}, "files": _files(src)}}}
        (index / f"a{i}.json").write_text(json.dumps(entry))
    return [f"bench/a{i}" for i in range(N_ADAPTERS)], repos, index.parent


def _one_run(hub: object, work: Path, run: int, names: list[str], repos: list[str], index: Path) -> dict[str, float]:
    py = sys.executable
    url = hub.url  # type: ignore[attr-defined]
    home = work / f"home{run}"
    env = _env(HF_ENDPOINT=url, ADAPTERHUB_HOME=str(home), ADAPTERHUB_INDEX=str(index), HF_HOME=str(work / f"hf1-{run}"))
    _, _, mark = _requests(hub, 0)
    t_install = _timed([py, "-m", "adapterhub", "install", "-q", *names], env)
    n_install, kinds_install, mark = _requests(hub, mark)
    cache = str(work / f"hf2-{run}")
    script = ("import sys; from huggingface_hub import snapshot_download\n"
              "for r in sys.argv[1:]: snapshot_download(r, endpoint=%r, cache_dir=%r)" % (url, cache))
    t_snapshot = _timed([py, "-c", script, *repos], _env(HF_HOME=cache))
    n_snapshot, kinds_snapshot, mark = _requests(hub, mark)
    t_warm = _timed([py, "-m", "adapterhub", "install", "-q", *names], env, repeat=3)
    n_warm, _, mark = _requests(hub, mark)
    t_import = _timed([py, "-c", "import huggingface_hub"], _env(), repeat=3)
    t_warm_offline = _timed([py, "-m", "adapterhub", "install", "-q", *names], {**env, "HF_HUB_OFFLINE": "1"}, repeat=3)
    print(f"run {run}: cold install {t_install:.3f} s ({n_install} requests: {kinds_install}) | "
          f"snapshot_download {t_snapshot:.3f} s ({n_snapshot} requests: {kinds_snapshot}) | "
          f"ratio install/snapshot = {t_install / t_snapshot:.2f}")
    print(f"run {run}: warm no-op {t_warm:.3f} s ({n_warm // 3} requests/run), offline {t_warm_offline:.3f} s | "
          f"import huggingface_hub {t_import:.3f} s | ratio warm/import = {t_warm / t_import:.2f}", flush=True)
    return {"install": t_install, "snapshot": t_snapshot, "ratio_install": t_install / t_snapshot,
            "warm": t_warm, "warm_offline": t_warm_offline, "import": t_import, "ratio_warm": t_warm / t_import}


def _sha256_throughput(work: Path) -> None:
    big = work / "big.bin"
    with open(big, "wb") as fh:
        for _ in range(200):
            fh.write(os.urandom(1024 * 1024))
    size_mb = big.stat().st_size / 1e6
    from adapterhub.client import sha256_file

    ours = float("inf")
    for _ in range(3):
        start = time.perf_counter()
        digest = sha256_file(big)
        ours = min(ours, time.perf_counter() - start)
    theirs = float("inf")
    for _ in range(3):
        start = time.perf_counter()
        out = subprocess.run(["sha256sum", str(big)], check=True, capture_output=True, text=True).stdout
        theirs = min(theirs, time.perf_counter() - start)
    assert out.split()[0] == digest
    print(f"sha256 of {size_mb:.0f} MB: sha256_file {size_mb / ours:7.0f} MB/s, sha256sum {size_mb / theirs:7.0f} MB/s   "
          f"ratio ours/sha256sum throughput = {theirs / ours:.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3, help="repetitions; medians are reported (default 3)")
    parser.add_argument("--no-sha256", action="store_true", help="skip the sha256 throughput check")
    parser.add_argument("--no-bytecode-cache", action="store_true",
                        help="compile every module on every run (as PYTHONDONTWRITEBYTECODE=1 does); by default "
                        "both sides use a bytecode cache in the temp dir, as an installed package would")
    args = parser.parse_args()
    from adapterhub.server.testing import running_hub

    work = Path(tempfile.mkdtemp(prefix="adapterhub-bench-"))
    if not args.no_bytecode_cache:
        # PYTHONPYCACHEPREFIX keeps the cache out of the source tree; one priming import fills it.
        _BYTECODE["PYTHONPYCACHEPREFIX"] = str(work / "pycache")
        subprocess.run([sys.executable, "-c", "import adapterhub.cli, adapterhub.client.install, adapterhub.client.remote, "
                        "adapterhub.methods, huggingface_hub.utils, huggingface_hub._snapshot_download, jsonschema, "
                        "tqdm.auto; from adapterhub.plugin import get_methods; get_methods()"], env=_env(), check=True)
    mode = "without bytecode cache" if args.no_bytecode_cache else "with a bytecode cache (PYTHONPYCACHEPREFIX)"
    print(f"both sides run as subprocesses {mode}", flush=True)
    try:
        with running_hub(work / "hub", {"bench": TOKEN}) as hub:
            names, repos, index = _setup(hub, work)
            runs = [_one_run(hub, work, i + 1, names, repos, index) for i in range(args.runs)]
        med = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
        print(f"\nmedian of {len(runs)} runs:")
        print(f"  cold install of {N_ADAPTERS} adapters (verified, store):  {med['install']:6.3f} s")
        print(f"  sequential snapshot_download of the same repos:       {med['snapshot']:6.3f} s")
        print(f"  RATIO cold install / snapshot_download:               {med['ratio_install']:6.2f}")
        print(f"  warm no-op install (re-verifies every file):          {med['warm']:6.3f} s")
        print(f"  warm no-op install, HF_HUB_OFFLINE=1:                 {med['warm_offline']:6.3f} s")
        print(f"  python -c 'import huggingface_hub':                   {med['import']:6.3f} s")
        print(f"  RATIO warm no-op / import huggingface_hub:            {med['ratio_warm']:6.2f}")
        if not args.no_sha256:
            _sha256_throughput(work)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
