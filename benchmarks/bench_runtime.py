"""adapterhub runtime vs PEFT, measured in the same process on the same tiny BERT (hidden 256, 4 layers).

Prints medians and the ratio adapterhub / PEFT (below 1 means adapterhub is faster).
Run: python benchmarks/bench_runtime.py
"""

from __future__ import annotations

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
    import torch
    from peft import LoraConfig, PeftModel

    from adapterhub import AdapterModel
    from adapterhub.testing import save_peft_adapter, tiny_bert

    torch.set_num_threads(1)
    base = tiny_bert(hidden_size=256, num_layers=4, vocab_size=1000)
    config = LoraConfig(r=8, lora_alpha=16, target_modules=["query", "key", "value", "dense"])
    root = Path(tempfile.mkdtemp(prefix="bench-runtime-"))
    paths = [save_peft_adapter(base, config, root / f"a{i}", seed=i) for i in range(16)]

    rows = []

    def apply_peft():
        PeftModel.from_pretrained(copy.deepcopy(base), str(paths[0]), adapter_name="a0")

    def apply_ours():
        AdapterModel(copy.deepcopy(base)).load_adapter(paths[0], name="a0")

    copy_cost = _time(lambda: copy.deepcopy(base))
    rows.append(("apply 1st adapter", _time(apply_ours) - copy_cost, _time(apply_peft) - copy_cost))

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

    print(f"model: BertModel hidden 256, 4 layers; LoRA r=8 on query/key/value/dense; torch threads=1")
    print(f"{'operation':<34}{'adapterhub':>12}{'peft':>12}{'ratio':>8}")
    for label, ours, theirs in rows:
        print(f"{label:<34}{ours * 1e3:>10.2f}ms{theirs * 1e3:>10.2f}ms{ours / theirs:>8.2f}")


if __name__ == "__main__":
    main()
