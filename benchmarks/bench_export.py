"""``adapterhub export`` vs PEFT's ``merge_and_unload()`` + ``save_pretrained()``: peak memory and time.

Builds, in a temporary folder, a GPT-2-shaped checkpoint (24 layers, 1024 wide, vocabulary 50257:
~355M parameters, ~1.4 GB in float32) saved in 300 MB shards, and an r=16 LoRA on every attention
and MLP matrix, made with PEFT. Then, each in its own process, timed and with its peak RSS taken
from the kernel (``wait4``):

* ``baseline``: a Python that imports what ``adapterhub export`` imports, and stops;
* ``adapterhub export LORA --base BASE --out OUT --max-shard-size 300MB`` (the real CLI);
* PEFT: ``from_pretrained`` + ``PeftModel.from_pretrained`` + ``merge_and_unload()`` +
  ``save_pretrained(max_shard_size="300MB")``.

Both outputs are then compared tensor by tensor (they must agree to 1e-5). The base is read once
beforehand so both sides find it in the page cache. Everything is deleted at the end.
Goals: peak RSS <= baseline + 1.5 x (largest shard + adapter), <= 0.5 x PEFT's; time <= PEFT's.
Run: python benchmarks/bench_export.py [--runs N] [--keep]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

BUILD = textwrap.dedent("""
    import sys, torch, warnings
    warnings.filterwarnings("ignore")
    from peft import LoraConfig, get_peft_model
    from transformers import GPT2Config, GPT2LMHeadModel
    root = sys.argv[1]
    torch.manual_seed(0)
    config = GPT2Config(n_layer=24, n_embd=1024, n_head=16, vocab_size=50257, n_positions=1024)
    model = GPT2LMHeadModel(config).eval()
    model.save_pretrained(root + "/base", max_shard_size="300MB")
    peft_model = get_peft_model(model, LoraConfig(r=16, lora_alpha=32, target_modules=["c_attn", "c_proj", "c_fc"]))
    with torch.no_grad():
        for name, param in peft_model.named_parameters():
            if "lora_B" in name:
                param.normal_(0, 0.02)
    peft_model.save_pretrained(root + "/lora")
""")

BASELINE = textwrap.dedent("""
    import torch, transformers, safetensors.torch, tqdm.auto
    from transformers import AutoConfig, GPT2LMHeadModel
    import adapterhub.cli, adapterhub.cli.export, adapterhub.publish.export.api, adapterhub.client.api
    from adapterhub.plugin.registry import get_methods
    get_methods()
""")

PEFT = textwrap.dedent("""
    import sys, warnings
    warnings.filterwarnings("ignore")
    from peft import PeftModel
    from transformers import GPT2LMHeadModel
    base, lora, out = sys.argv[1:4]
    model = GPT2LMHeadModel.from_pretrained(base)
    merged = PeftModel.from_pretrained(model, lora).merge_and_unload()
    merged.save_pretrained(out, max_shard_size="300MB")
""")

COMPARE = textwrap.dedent("""
    import json, sys, torch
    from pathlib import Path
    from safetensors import safe_open
    def index(folder):
        folder = Path(folder)
        weight_map = json.loads((folder / "model.safetensors.index.json").read_text())["weight_map"]
        return {k: folder / v for k, v in weight_map.items()}
    ours, theirs = index(sys.argv[1]), index(sys.argv[2])
    assert ours.keys() == theirs.keys(), sorted(set(ours) ^ set(theirs))
    worst = 0.0
    for name in ours:
        with safe_open(str(ours[name]), "pt") as a, safe_open(str(theirs[name]), "pt") as b:
            worst = max(worst, (a.get_tensor(name).float() - b.get_tensor(name).float()).abs().max().item())
    print(worst)
""")


def measure(argv: list[str], env: dict[str, str]) -> tuple[float, float, str]:
    """(seconds, peak RSS in MB, stdout) of one child process; reaping it with ``wait4`` gives that
    child's own peak RSS (``RUSAGE_CHILDREN`` would be the maximum over every child so far)."""
    start = time.perf_counter()
    with tempfile.TemporaryFile("w+") as out_file, tempfile.TemporaryFile("w+") as err_file:
        proc = subprocess.Popen(argv, env=env, stdout=out_file, stderr=err_file, text=True)
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        seconds = time.perf_counter() - start
        out_file.seek(0)
        err_file.seek(0)
        out, err = out_file.read(), err_file.read()
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(argv[:5])} failed (exit {proc.returncode}):\n{err[-3000:]}")
    return seconds, usage.ru_maxrss / 1024, out


def size_mb(path: Path) -> float:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) / 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=1, help="runs of each side; the median is printed (default 1)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder")
    args = parser.parse_args()
    py = sys.executable
    root = Path(tempfile.mkdtemp(prefix="bench-export-"))
    env = {**os.environ, "ADAPTERHUB_HOME": str(root / "home"), "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false",
           "HF_HUB_DISABLE_PROGRESS_BARS": "1"}
    try:
        print(f"building the base and the LoRA in {root} ...", flush=True)
        measure([py, "-c", BUILD, str(root)], env)
        base, lora = root / "base", root / "lora"
        shards = sorted(base.glob("*.safetensors"))
        largest = max(p.stat().st_size for p in shards) / 1e6
        adapter = size_mb(lora)
        for shard in shards:  # into the page cache, for both sides alike
            with open(shard, "rb") as fh:
                while fh.read(1 << 24):
                    pass
        baseline = statistics.median(measure([py, "-c", BASELINE], env)[1] for _ in range(args.runs))
        ours, theirs = [], []
        for i in range(args.runs):
            for folder in (root / "out-ours", root / "out-peft"):
                shutil.rmtree(folder, ignore_errors=True)
            ours.append(measure([py, "-m", "adapterhub", "export", str(lora), "--base", str(base), "--out",
                                 str(root / "out-ours"), "--max-shard-size", "300MB", "-q"], env))
            theirs.append(measure([py, "-c", PEFT, str(base), str(lora), str(root / "out-peft")], env))
        worst = float(measure([py, "-c", COMPARE, str(root / "out-ours"), str(root / "out-peft")], env)[2])
        t_ours, t_peft = statistics.median(r[0] for r in ours), statistics.median(r[0] for r in theirs)
        m_ours, m_peft = statistics.median(r[1] for r in ours), statistics.median(r[1] for r in theirs)
        budget = baseline + 1.5 * (largest + adapter)
        print(f"base: GPT-2 shape, 24 layers x 1024, {size_mb(base):.0f} MB in {len(shards)} shards "
              f"(largest {largest:.0f} MB); LoRA r=16 on c_attn/c_proj/c_fc: {adapter:.1f} MB; "
              f"median of {args.runs} run(s); both outputs agree to {worst:.2e}")
        print(f"{'':<26}{'peak RSS':>12}{'time':>10}")
        print(f"{'baseline (imports only)':<26}{baseline:>9.0f} MB")
        print(f"{'adapterhub export':<26}{m_ours:>9.0f} MB{t_ours:>9.1f}s")
        print(f"{'PEFT merge+save':<26}{m_peft:>9.0f} MB{t_peft:>9.1f}s")
        print("goals:")
        print(f"  peak RSS <= baseline + 1.5 x (shard + adapter) = {budget:.0f} MB: {m_ours:.0f} MB "
              f"{'ok' if m_ours <= budget else 'MISSED'}")
        print(f"  peak RSS <= 0.5 x PEFT's = {0.5 * m_peft:.0f} MB: ratio {m_ours / m_peft:.2f} "
              f"{'ok' if m_ours <= 0.5 * m_peft else 'MISSED'}")
        print(f"  time <= PEFT's: ratio {t_ours / t_peft:.2f} {'ok' if t_ours <= t_peft else 'MISSED'}")
        if worst > 1e-5:
            raise SystemExit(f"the outputs differ by {worst}")
    finally:
        if args.keep:
            print(f"kept {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
