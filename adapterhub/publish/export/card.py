"""The model card (README.md) of an exported checkpoint: what was merged into what, and how to load it.

It records the base (repo id and commit, or the folder), every merged adapter in merge order
(name, version, method, weight, the commit it was installed at, the sha256 of its weights file),
the dtype, and, for an adapter trained against a quantized copy of the base (QLoRA), a note that
the merged weights are the full-precision base plus a delta learned against quantized weights.
"""

from __future__ import annotations

from typing import Any

from .plan import ExportPlan

_DTYPE_NAMES = {"BF16": "bfloat16", "F16": "float16", "F32": "float32", "F64": "float64"}


def dtype_summary(plan: ExportPlan) -> str:
    """``bfloat16`` when every floating tensor is written in it, else a count per dtype."""
    counts: dict[str, int] = {}
    for dtype in plan.out_dtypes.values():
        if dtype in _DTYPE_NAMES:
            counts[_DTYPE_NAMES[dtype]] = counts.get(_DTYPE_NAMES[dtype], 0) + 1
    if len(counts) == 1:
        return next(iter(counts))
    return ", ".join(f"{name} ({n} tensors)" for name, n in sorted(counts.items())) or "-"


def render_card(plan: ExportPlan, *, title: str, dtype: str | None, version: str) -> str:
    import yaml  # a hard dependency of huggingface_hub

    base = plan.base
    meta: dict[str, Any] = {"library_name": "transformers"}
    if base.repo_id:
        meta["base_model"] = base.repo_id
    tags = ["adapterhub", "merged-adapter"]
    tags += [m for m in dict.fromkeys(a.method for a in plan.adapters) if m not in tags]
    meta["tags"] = tags
    front = yaml.safe_dump(meta, sort_keys=False, allow_unicode=True).strip()
    base_cell = f"`{base.repo_id}` @ `{base.commit}`" if base.repo_id else f"`{base.path}` (local folder)"
    arch = plan.skeleton.architecture or "AutoModel"
    names = ", ".join(f"`{a.name}`" for a in plan.adapters)
    lines = [
        f"---\n{front}\n---", "", f"# {title}", "",
        f"The base model with {len(plan.adapters)} adapter(s) ({names}) merged into its weights by "
        f"`adapterhub export` (adapterhub {version}). It is a plain transformers checkpoint: loading it "
        "needs no adapter library.", "",
        "| field | value |", "|---|---|",
        f"| base model | {base_cell} |",
        f"| architecture | `{arch}` |",
        f"| dtype | {dtype_summary(plan)}" + (" (converted with --dtype)" if dtype else " (as the base)") + " |",
        "", "## Merged adapters", "",
        "Merged in this order, each scaled by its weight; the merge arithmetic ran in float32 and was rounded "
        "once to the dtype above.", "",
        "| # | adapter | version | method | weight | commit | sha256 of the weights file |",
        "|---|---|---|---|---|---|---|",
    ]
    for i, a in enumerate(plan.adapters, 1):
        sha = f"`{a.sha256}` ({a.weights_file})" if a.sha256 else "-"
        lines.append(f"| {i} | `{a.name}` | {a.version or '-'} | {a.method} | {a.weight:g} | `{a.commit}` | {sha} |")
    quantized = [a for a in plan.adapters if a.quantized_training]
    if quantized:
        lines += ["", "## Trained against quantized weights", ""]
        for a in quantized:
            lines.append(
                f"- `{a.name}` was trained on a {a.quantized_training} quantized copy of the base (QLoRA). Here its "
                "delta is merged into the full-precision base weights, so this model is not exactly the one the "
                "adapter was trained with (which used the dequantized weights): evaluate it before deploying.")
    lines += ["", "## Usage", "", "```python", f"from transformers import {arch}", "",
              f'model = {arch}.from_pretrained("path/to/this/folder")', "```", ""]
    return "\n".join(lines)
