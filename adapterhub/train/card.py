"""The model card (README.md) ``adapterhub train`` writes into the adapter folder: what data it saw,
how it was trained, what it scored, how many parameters trained, and the peak memory.

``adapterhub push`` puts the Hub's front matter and file list on top and keeps this body (under
"Details"), so the published card carries the training record too.
"""

from __future__ import annotations

import json
from typing import Any

_LIBRARY = {"peft": "peft", "adapters": "adapter-transformers"}


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def render(result: Any, *, format: str, command: str | None = None) -> str:
    """README.md text for a :class:`~adapterhub.train.run.TrainResult`."""
    base = result.base_repo_id or result.base
    lines = ["---", f"library_name: {_LIBRARY.get(format, 'adapterhub')}"]
    if result.base_repo_id:
        lines.append(f"base_model: {result.base_repo_id}")
    lines += ["tags:", "- adapterhub", f"- {result.method}", f"- {result.task}", "---", ""]
    lines += [f"# {result.out.name}", "",
              f"A **{result.method}** adapter for `{base}` ({result.task}), trained with `adapterhub train` "
              f"(transformers' Trainer).", ""]

    lines += ["## Data", "", "| split | source | rows | sha256 |", "|---|---|---|---|"]
    for split, data in (("train", result.train_data), ("eval", result.eval_data)):
        if data is not None:
            lines.append(f"| {split} | `{data.source}` | {len(data.rows)} | {('`' + data.sha256 + '`') if data.sha256 else '-'} |")
    if result.eval_data is None:
        lines += ["", "No evaluation data was given (`--eval`), so there are no held-out metrics."]
    if result.labels:
        lines += ["", "Labels (head output order): " + ", ".join(f"{i} = {n}" for i, n in enumerate(result.labels)) + "."]
    lines.append("")

    lines += ["## Training", "", "| setting | value |", "|---|---|",
              f"| base model | `{base}`" + (f" @ `{result.base_revision}`" if result.base_revision else "") + " |",
              f"| method | `{result.method}` |",
              f"| options | `{json.dumps(result.options, sort_keys=True)}` |",
              f"| epochs | {_fmt(result.epochs)} ({result.steps} steps) |",
              f"| learning rate | {_fmt(result.learning_rate)} |",
              f"| batch size | {result.batch_size} |",
              f"| max length | {result.max_length} tokens |",
              f"| seed | {result.seed} |",
              f"| training time | {result.train_seconds:.1f} s ({result.seconds_per_epoch:.1f} s per epoch, "
              f"{result.cpu_seconds_per_epoch:.1f} CPU s per epoch) |", ""]

    lines += ["## Results", ""]
    if result.metrics:
        lines += ["| metric | value |", "|---|---|"]
        lines += [f"| {key} | {_fmt(value)} |" for key, value in sorted(result.metrics.items())]
    else:
        lines.append("Not evaluated.")
    lines.append("")

    share = 100 * result.trainable_parameters / result.total_parameters if result.total_parameters else 0.0
    lines += ["## Size and memory", "", "| | |", "|---|---|",
              f"| trainable parameters | {result.trainable_parameters:,} of {result.total_parameters:,} ({share:.3f}%) |",
              f"| of which the adapter's own | {result.adapter_parameters:,} |",
              f"| peak memory (RSS of the training process) | {result.peak_rss_mb:.0f} MB |",
              f"| adapter files | {result.adapter_bytes:,} bytes |", ""]
    if command:
        lines += ["## Reproduce", "", "```bash", command, "```", ""]
    return "\n".join(lines)
