"""Benchmark the client against a local Hub (real huggingface_hub client, subprocesses, cold caches).

1. cold install of 8 small adapters (`adapterhub install`, by registry name) vs sequential
   `snapshot_download` of the same 8 repos;
2. warm no-op install (everything already in the store, re-verified) vs `python -c 'import huggingface_hub'`;
3. sha256 throughput of adapterhub.client.sha256_file vs `sha256sum` on a ~200 MB file.

Run: /work/venv/bin/python benchmarks/bench_install.py  (prints timings and ratios)
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TOKEN = "tok-bench"
N_ADAPTERS = 8


def _env(**extra: str) -> dict[str, str]:
    env = {**os.environ, "HF_HUB_DISABLE_TELEMETRY": "1", "HF_HUB_DISABLE_XET": "1", "HF_HUB_DISABLE_PROGRESS_BARS": "1"}
    env.pop("HF_TOKEN", None)
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


def main() -> None:
    from huggingface_hub import HfApi

    from adapterhub.hub.testing import running_hub

    work = Path(tempfile.mkdtemp(prefix="adapterhub-bench-"))
    try:
        with running_hub(work / "hub", {"bench": TOKEN}) as hub:
            api = HfApi(endpoint=hub.url, token=TOKEN)
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
            names = [f"bench/a{i}" for i in range(N_ADAPTERS)]
            py = sys.executable

            home = work / "home"
            env = _env(HF_ENDPOINT=hub.url, ADAPTERHUB_HOME=str(home), ADAPTERHUB_INDEX=str(index.parent), HF_HOME=str(work / "hf1"))
            t_install = _timed([py, "-m", "adapterhub", "install", "-q", *names], env)
            script = ("import sys; from huggingface_hub import snapshot_download\n"
                      "for r in sys.argv[1:]: snapshot_download(r, endpoint=%r, cache_dir=%r)" % (hub.url, str(work / "hf2")))
            t_snapshot = _timed([py, "-c", script, *repos], _env(HF_HOME=str(work / "hf2")))

            t_warm = _timed([py, "-m", "adapterhub", "install", "-q", *names], env, repeat=3)
            t_import = _timed([py, "-c", "import huggingface_hub"], _env(), repeat=3)
            t_warm_offline = _timed([py, "-m", "adapterhub", "install", "-q", *names], {**env, "HF_HUB_OFFLINE": "1"}, repeat=3)

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

        print(f"cold install of {N_ADAPTERS} adapters (verified, store):  {t_install:6.2f} s")
        print(f"sequential snapshot_download of the same repos:       {t_snapshot:6.2f} s   "
              f"ratio install/snapshot = {t_install / t_snapshot:.2f}")
        print(f"warm no-op install (re-verifies every file):          {t_warm:6.3f} s")
        print(f"warm no-op install, HF_HUB_OFFLINE=1:                 {t_warm_offline:6.3f} s")
        print(f"python -c 'import huggingface_hub':                   {t_import:6.3f} s   "
              f"ratio warm/import = {t_warm / t_import:.2f}")
        print(f"sha256 of {size_mb:.0f} MB: sha256_file {size_mb / ours:7.0f} MB/s, sha256sum {size_mb / theirs:7.0f} MB/s   "
              f"ratio ours/sha256sum throughput = {theirs / ours:.2f}")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
