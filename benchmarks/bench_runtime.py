"""adapterhub runtime vs PEFT, measured in the same process on the same tiny BERT (hidden 256, 4 layers).

Every row is measured in ``--runs`` full passes (default 5) and the median of the passes is printed,
with the ratio adapterhub / PEFT (below 1 means adapterhub is faster). Both sides do the same work:
the same adapter files, the same fresh copy of the base, the same number of loads before the timed one.
Run: python benchmarks/bench_runtime.py [--runs N]
"""

from __future__ import annotations

import argparse
import copy
import statistics
import tempfile
import time
import warnings
from pathlib import Path

warnings.filterwarnings("ignore")


def _time(fn, repeats: int = 5) -> float:
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5, help="full passes; each row prints the median (default 5)")
    args = parser.parse_args()
    import torch
    from peft import LoraConfig

    from adapterhub.testing import save_peft_adapter, tiny_bert

    torch.set_num_threads(1)
    base = tiny_bert(hidden_size=256, num_layers=4, vocab_size=1000)
    config = LoraConfig(r=8, lora_alpha=16, target_modules=["query", "key", "value", "dense"])
    root = Path(tempfile.mkdtemp(prefix="bench-runtime-"))
    paths = [save_peft_adapter(base, config, root / f"a{i}", seed=i) for i in range(16)]

    passes = [_one_pass(base, paths) for _ in range(args.runs)]
    print(f"model: BertModel hidden 256, 4 layers; LoRA r=8 on query/key/value/dense; torch threads=1; "
          f"median of {args.runs} passes")
    print(f"{'operation':<34}{'adapterhub':>12}{'peft':>12}{'ratio':>8}")
    for i, (label, _, _) in enumerate(passes[0]):
        ours = statistics.median(p[i][1] for p in passes)
        theirs = statistics.median(p[i][2] for p in passes)
        print(f"{label:<34}{ours * 1e3:>10.2f}ms{theirs * 1e3:>10.2f}ms{ours / theirs:>8.2f}")


def _one_pass(base, paths) -> list[tuple[str, float, float]]:
    """One measurement of every row: (label, adapterhub seconds, PEFT seconds)."""
    from peft import PeftModel

    from adapterhub import AdapterModel

    rows = []

    # a fresh copy of the base for every sample, made outside the timed region; the two sides alternate
    # so that load from other processes on the machine hits both alike
    def apply_ours() -> float:
        model = copy.deepcopy(base)
        start = time.perf_counter()
        AdapterModel(model).load_adapter(paths[0], name="a0")
        return time.perf_counter() - start

    def apply_peft() -> float:
        model = copy.deepcopy(base)
        start = time.perf_counter()
        PeftModel.from_pretrained(model, str(paths[0]), adapter_name="a0")
        return time.perf_counter() - start

    samples = [(apply_ours(), apply_peft()) for _ in range(5)]
    rows.append(("apply 1st adapter", statistics.median(o for o, _ in samples), statistics.median(p for _, p in samples)))

    # loading the 2nd and the 16th adapter (time of that single load)
    def nth_load(n: int) -> tuple[float, float]:
        ours, theirs = [], []
        for _ in range(3):
            am = AdapterModel(copy.deepcopy(base))
            for i in range(n - 1):
                am.load_adapter(paths[i], name=f"a{i}")
            t = time.perf_counter()
            am.load_adapter(paths[n - 1], name=f"a{n - 1}")
            ours.append(time.perf_counter() - t)
            pm = PeftModel.from_pretrained(copy.deepcopy(base), str(paths[0]), adapter_name="a0")
            for i in range(1, n - 1):
                pm.load_adapter(str(paths[i]), adapter_name=f"a{i}")
            t = time.perf_counter()
            pm.load_adapter(str(paths[n - 1]), adapter_name=f"a{n - 1}")
            theirs.append(time.perf_counter() - t)
        return statistics.median(ours), statistics.median(theirs)

    rows.append(("load 2nd adapter", *nth_load(2)))
    rows.append(("load 16th adapter", *nth_load(16)))

    am = AdapterModel(copy.deepcopy(base))
    pm = PeftModel.from_pretrained(copy.deepcopy(base), str(paths[0]), adapter_name="a0")
    for i in range(4):
        am.load_adapter(paths[i], name=f"a{i}")
        if i:
            pm.load_adapter(str(paths[i]), adapter_name=f"a{i}")
    names = [f"a{i}" for i in range(4)]
    cycle = iter(range(10**9))
    rows.append((
        "switch active adapter (4 loaded)",
        _time(lambda: am.set_adapter(names[next(cycle) % 4]), 20),
        _time(lambda: pm.set_adapter(names[next(cycle) % 4]), 20),
    ))

    def mau_ours():
        m = AdapterModel(copy.deepcopy(base))
        m.load_adapter(paths[0], name="a0")
        m.set_adapter("a0")
        t = time.perf_counter()
        m.merge_and_unload()
        return time.perf_counter() - t

    def mau_peft():
        p = PeftModel.from_pretrained(copy.deepcopy(base), str(paths[0]))
        t = time.perf_counter()
        p.merge_and_unload()
        return time.perf_counter() - t

    rows.append((
        "merge_and_unload",
        statistics.median(mau_ours() for _ in range(5)),
        statistics.median(mau_peft() for _ in range(5)),
    ))
    return rows


if __name__ == "__main__":
    main()
