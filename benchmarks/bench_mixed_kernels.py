"""The kernels section of ``bench_mixed_batch.py``: the LoRA term of one GPT-2-small layer (c_attn,
attn.c_proj, mlp.c_fc, mlp.c_proj; r=8) for every row of a batch whose rows use different adapters,
computed three ways, in the two regimes of the issue:

* embedding_bag: the stacks read as tables of rows, ``h = sum_i x_i A[slot, i]`` and
  ``delta = sum_r h_r B[slot, r]`` as two weighted bag sums (what the runtime uses for a decode step:
  each row's factors are read once, nothing is copied);
* gather + bmm: each row's A and B gathered from the stacks, one ``bmm`` each (what the runtime uses
  for more than one token per row);
* segment-sorted ``grouped_mm``: rows sorted by adapter, ``torch.nn.functional.grouped_mm`` per
  segment, unsorted again (needs as many groups as adapters, and an int32 offsets tensor);
* a loop over the distinct adapters (PEFT's ``_mixed_batch_forward``): index rows, two matmuls, index_add.

and the base layers' own matmuls for scale (what the LoRA term adds to).
"""

from __future__ import annotations

import statistics
import time

SHAPES = [(768, 2304), (768, 768), (768, 3072), (3072, 768)]  # (in, out) of the four adapted layers
RANK = 8


def median_interleaved(contenders: dict, repeats: int) -> dict[str, float]:
    """Median seconds per contender; one sample of each in turn, ``repeats`` rounds after a warm-up
    (load from other processes hits them alike). ``bench_mixed_batch.py`` times with it too."""
    for fn in contenders.values():
        fn()
    samples: dict[str, list[float]] = {k: [] for k in contenders}
    for _ in range(repeats):
        for key, fn in contenders.items():
            start = time.perf_counter()
            fn()
            samples[key].append(time.perf_counter() - start)
    return {k: statistics.median(v) for k, v in samples.items()}


def kernels(repeats: int) -> list[tuple[str, str]]:
    import torch

    gen = torch.Generator().manual_seed(0)
    rows_out = []
    for label, batch, tokens, adapters in (("decode (64 rows x 1 token, 64 adapters)", 64, 1, 64),
                                           ("prefill (32 rows x 16 tokens, 32 adapters)", 32, 16, 32)):
        stacks = [(torch.randn(adapters + 1, i, RANK, generator=gen), torch.randn(adapters + 1, RANK, o, generator=gen),
                   torch.randn(i, o, generator=gen)) for i, o in SHAPES]
        xs = [torch.randn(batch, tokens, i, generator=gen) for i, _ in SHAPES]
        slots = torch.arange(batch) % adapters + 1

        def base():
            for x, (_, _, w) in zip(xs, stacks, strict=True):
                x @ w

        def gather_bmm():  # as row_kernels.LoraStacks.after: 2-D row gathers of A and B, two bmm
            for x, (a, b, _), (i, o) in zip(xs, stacks, SHAPES, strict=True):
                rows_a = a.view(adapters + 1, -1).index_select(0, slots).view(batch, i, RANK)
                rows_b = b.view(adapters + 1, -1).index_select(0, slots).view(batch, RANK, o)
                torch.bmm(torch.bmm(x, rows_a), rows_b)

        per_token = slots.repeat_interleave(tokens)
        bags = {w: ((per_token.unsqueeze(1) * w + torch.arange(w)).reshape(-1),
                    torch.arange(0, batch * tokens * w, w)) for w in {RANK, *(i for i, _ in SHAPES)}}

        def embedding_bag():  # as row_kernels.LoraStacks.after for one token per row (bags made once per batch)
            for x, (a, b, _), (i, o) in zip(xs, stacks, SHAPES, strict=True):
                h = torch.nn.functional.embedding_bag(bags[i][0], a.view(-1, RANK), bags[i][1], mode="sum",
                                                      per_sample_weights=x.reshape(-1))
                torch.nn.functional.embedding_bag(bags[RANK][0], b.view(-1, o), bags[RANK][1], mode="sum",
                                                  per_sample_weights=h.reshape(-1))

        order = torch.argsort(slots, stable=True)
        counts = torch.bincount(slots, minlength=adapters + 1)
        offsets = torch.cumsum(counts, 0).to(torch.int32)

        def grouped():
            for x, (a, b, _) in zip(xs, stacks, strict=True):
                flat = x.index_select(0, order).reshape(-1, x.shape[-1])
                offs = offsets * tokens
                h = torch.nn.functional.grouped_mm(flat, a, offs=offs)
                y = torch.nn.functional.grouped_mm(h, b, offs=offs)
                torch.empty_like(y.view(batch, tokens, -1)).index_copy_(0, order, y.view(batch, tokens, -1))

        distinct = slots.unique().tolist()

        def loop():
            for x, (a, b, _) in zip(xs, stacks, strict=True):
                out = torch.zeros(batch, tokens, b.shape[-1])
                for slot in distinct:
                    idx = (slots == slot).nonzero().flatten()
                    out.index_add_(0, idx, x.index_select(0, idx) @ a[slot] @ b[slot])

        times = median_interleaved({"base matmuls": base, "embedding_bag": embedding_bag, "gather + bmm": gather_bmm,
                          "grouped_mm (sorted)": grouped, "loop over adapters": loop}, repeats)
        floor = sum(4 * (RANK * (i + o)) * min(batch, adapters) for i, o in SHAPES)  # bytes of the rows' A and B
        rows_out.append((label, "  ".join(f"{k} {v * 1e3:7.2f} ms" for k, v in times.items())
                         + f" | rows' adapters to read: {floor / 1e6:.1f} MB"))
    return rows_out
