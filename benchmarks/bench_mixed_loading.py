"""The loading and switching section of ``bench_mixed_batch.py``: apply the 1st adapter, load the 2nd,
16th and 64th, switch the active adapter, each against PEFT doing the same in the same run.

* apply: a fresh base wrapped and the 1st adapter loaded (``AdapterModel(base).load_adapter``) vs
  ``PeftModel.from_pretrained`` (the base is deep-copied outside the timing, for both); and, timed
  again with PEFT's ``LoraModel._create_and_replace`` wrapped, how much of each is PEFT building its
  LoRA layers: what any apply that uses PEFT's layers cannot go below.
* k-th load: with k-1 adapters loaded, ``load_adapter`` of one more (timed), then deleted again
  (untimed), so every sample sees k-1 adapters; PEFT's ``load_adapter`` / ``delete_adapter`` alike.
* switch: ``set_adapter`` to another loaded adapter, with 16 and with 64 loaded, vs PEFT's.
"""

from __future__ import annotations

import contextlib
import copy
import statistics
import time
from pathlib import Path


def _timed(fn, before=None, after=None, repeats: int = 5) -> float:
    """Median seconds of ``fn()``; ``before``/``after`` run untimed around every sample."""
    samples = []
    for _ in range(repeats + 1):  # the first is a warm-up
        if before is not None:
            before()
        start = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - start)
        if after is not None:
            after()
    return statistics.median(samples[1:])


@contextlib.contextmanager
def _timing_layer_construction():
    """Seconds spent in PEFT's ``LoraModel._create_and_replace`` (its LoRA layers being built), one
    entry per call, while inside."""
    from peft.tuners.lora import LoraModel

    spent: list[float] = []
    original = LoraModel._create_and_replace

    def timed(self, *args, **kwargs):
        start = time.perf_counter()
        try:
            return original(self, *args, **kwargs)
        finally:
            spent.append(time.perf_counter() - start)

    LoraModel._create_and_replace = timed
    try:
        yield spent
    finally:
        LoraModel._create_and_replace = original


def loading(base, paths: list[Path], repeats: int) -> list[tuple[str, str]]:
    from peft import PeftModel

    from adapterhub import AdapterModel

    repeats = max(3, repeats // 3)
    rows: list[tuple[str, str]] = []
    counts = [k for k in (2, 16, 64) if k <= len(paths)]

    # apply the 1st adapter
    fresh: dict = {}

    def copy_bases():
        fresh["am"], fresh["peft"] = copy.deepcopy(base), copy.deepcopy(base)

    def apply_ours():
        AdapterModel(fresh["am"]).load_adapter(paths[0], name="a0")

    def apply_peft():
        PeftModel.from_pretrained(fresh["peft"], str(paths[0]), adapter_name="a0")

    ours = _timed(apply_ours, copy_bases, repeats=repeats)
    theirs = _timed(apply_peft, copy_bases, repeats=repeats)
    rows.append(("apply the 1st adapter", f"adapterhub {ours * 1e3:8.1f} ms  peft {theirs * 1e3:8.1f} ms | "
                                          f"adapterhub/PEFT {ours / theirs:5.2f}x (goal <= 0.5x)"))
    # what neither can skip while the layers are PEFT's: PEFT building its LoRA layers
    built: dict[str, float] = {}
    with _timing_layer_construction() as spent:
        for key, apply in (("ours", apply_ours), ("peft", apply_peft)):
            samples = []
            for _ in range(repeats + 1):  # the first is a warm-up
                copy_bases()
                spent.clear()
                apply()
                samples.append(sum(spent))
            built[key] = statistics.median(samples[1:])
    ours_built, peft_built = built["ours"], built["peft"]
    rows.append(("  of which PEFT building its LoRA layers", f"adapterhub {ours_built * 1e3:8.1f} ms  peft "
                 f"{peft_built * 1e3:8.1f} ms | {peft_built / theirs:4.0%} of PEFT's apply: the floor of any "
                 f"apply that uses PEFT's layers is {ours_built / theirs:4.2f}x PEFT"))

    # the k-th load, and switching
    am = AdapterModel(copy.deepcopy(base))
    am.load_adapter(paths[0], name="a0")
    pm = PeftModel.from_pretrained(copy.deepcopy(base), str(paths[0]), adapter_name="a0")
    loaded = 1
    per_count: dict[int, tuple[float, float]] = {}
    switch: dict[int, tuple[float, float]] = {}
    for k in counts:
        while loaded < k - 1:
            am.load_adapter(paths[loaded], name=f"a{loaded}")
            pm.load_adapter(str(paths[loaded]), adapter_name=f"a{loaded}")
            loaded += 1
        path, name = paths[k - 1], f"a{k - 1}"
        ours = _timed(lambda: am.load_adapter(path, name=name), after=lambda: am.delete_adapter(name),
                      repeats=repeats)
        theirs = _timed(lambda: pm.load_adapter(str(path), adapter_name=name),
                        after=lambda: pm.delete_adapter(name), repeats=repeats)
        per_count[k] = (ours, theirs)
        if k >= 16:
            am.load_adapter(path, name=name)
            pm.load_adapter(str(path), adapter_name=name)
            loaded += 1
            targets = [f"a{i}" for i in range(k)]
            turn = {"am": 0, "pm": 0}

            def switch_ours():
                turn["am"] = (turn["am"] + 7) % k
                am.set_adapter(targets[turn["am"]])

            def switch_peft():
                turn["pm"] = (turn["pm"] + 7) % k
                pm.set_adapter(targets[turn["pm"]])

            switch[k] = (_timed(switch_ours, repeats=repeats * 4), _timed(switch_peft, repeats=repeats * 4))
    second = per_count[2][0] if 2 in per_count else None
    for k, (ours, theirs) in per_count.items():
        vs_second = "" if second is None or k == 2 else f"  vs the 2nd {ours / second:5.2f}x (goal <= 1.2x)"
        ordinal = {2: "2nd"}.get(k, f"{k}th")
        rows.append((f"load the {ordinal} adapter",
                     f"adapterhub {ours * 1e3:8.1f} ms  peft {theirs * 1e3:8.1f} ms | adapterhub/PEFT "
                     f"{ours / theirs:5.2f}x{vs_second}  (PEFT's {ordinal} vs its 2nd "
                     f"{theirs / per_count[2][1] if 2 in per_count else float('nan'):5.2f}x)"))
    for k, (ours, theirs) in switch.items():
        rows.append((f"switch the active adapter, {k} loaded",
                     f"adapterhub {ours * 1e6:8.1f} us  peft {theirs * 1e6:8.1f} us | adapterhub/PEFT "
                     f"{ours / theirs:5.2f}x (goal <= 0.2x)"))
    return rows
