"""``adapterhub.export``: merge adapters into a base checkpoint and write a deployable one, streaming.

The steps, each in its module: the base (:mod:`.base`: a folder or a Hub repo, its headers, its
skeleton), the adapters (installed and verified by :class:`adapterhub.client.Client`, read and
turned into per-parameter updates by their method's :meth:`~adapterhub.plugin.AdapterMethod.merge_updates`),
the plan (:mod:`.plan`: every update mapped onto a checkpoint tensor and checked before anything is
written), the streaming merge (here: one tensor read, every update that targets it applied in
float32, rounded once, written, released), the output (:mod:`.writer`, :mod:`.card`).

Peak memory is a few copies of the largest tensor plus the adapters, whatever the model size.
"""

from __future__ import annotations

import json
import shutil
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ... import __version__
from ...client import remote
from ...client.models import FileEntry
from ...errors import PublishError, UsageError
from ...plugin.records import MergeSite, ParamUpdate
from ...settings import Settings, get_settings
from .base import COPIED_FILES, BaseCheckpoint, open_base, skeleton
from .card import dtype_summary, render_card
from .plan import DTYPES, ExportAdapter, ExportPlan, Step, build_plan, check_mergeable, quantized_training, tied_copies
from .writer import OutShard, OutTensor, ShardFile, check_output, parse_size, plan_shards, publish, staging
from .writer import torch_dtype, write_index

#: Bytes read through one safe_open handle before it is reopened (see :func:`stream`).
REOPEN_BYTES = 64 * 1024 * 1024
_CONFIG_DTYPES = {"bf16": "bfloat16", "fp16": "float16", "fp32": "float32"}


@dataclass
class ExportResult:
    """What an export wrote (``to_json`` is the CLI's ``--json``)."""

    out: Path
    plan: ExportPlan
    shards: list[OutShard]
    dtype: str | None
    seconds: float
    notes: list[str] = field(default_factory=list)
    pushed: dict[str, str] | None = None

    @property
    def adapters(self) -> list[ExportAdapter]:
        return self.plan.adapters

    @property
    def merged_tensors(self) -> int:
        return len(self.plan.steps)

    def to_json(self) -> dict[str, Any]:
        base = self.plan.base
        return {
            "out": str(self.out),
            "base": {"source": base.repo_id or str(base.path), "repo_id": base.repo_id, "commit": base.commit,
                     "path": str(base.path), "architecture": self.plan.skeleton.architecture, "sharded": base.sharded},
            "adapters": [a.to_json() for a in self.adapters],
            "dtype": dtype_summary(self.plan),
            "merged_tensors": self.merged_tensors,
            "tied_copies_dropped": dict(self.plan.dropped),
            "shards": [{"file": s.file, "size": s.nbytes, "tensors": len(s.tensors)} for s in self.shards],
            "seconds": round(self.seconds, 3),
            "notes": list(self.notes),
            "pushed": self.pushed,
        }


def export(
    adapters: Sequence[str | Path],
    *,
    base: str | Path,
    out: str | Path,
    weights: Sequence[float] | None = None,
    dtype: str | None = None,
    max_shard_size: str | int = "2GB",
    push: str | None = None,
    private: bool = False,
    token: str | None = None,
    settings: Settings | None = None,
    progress: bool = False,
    allow_pickle: bool = False,
) -> ExportResult:
    """Merge ``adapters`` (in order, scaled by ``weights``) into ``base`` and write a transformers
    checkpoint to ``out``, one tensor at a time.

    :param adapters: registry names, Hub repo ids or adapter folders; each is installed and verified
        through the client, and must be of a mergeable method (LoRA family, IA3, BitFit).
    :param base: a folder or a Hub repo id (``org/name[@revision]``) holding a safetensors checkpoint.
    :param out: the output folder; it must not exist (or be empty). It appears only when complete.
    :param weights: one per adapter (default 1 each).
    :param dtype: ``"bf16"``, ``"fp16"`` or ``"fp32"`` for the floating tensors (default: as the base).
    :param max_shard_size: largest output shard (``"2GB"``, ``"500MB"``, bytes).
    :param push: a Hub repo to upload the finished checkpoint to (``token``: write token, default
        ``HF_TOKEN`` or a saved login; ``private``: create the repo private).
    :param progress: a progress bar per shard (and per download) on stderr.
    :raises UsageError, IncompatibleBaseModelError, UnsupportedOperationError: before anything is written.
    """
    start = time.perf_counter()
    settings = (settings or get_settings()).with_overrides(token=token)
    sources = [str(a) for a in adapters]
    if not sources:
        raise UsageError("export needs at least one adapter")
    weight_list = _weights(weights, len(sources))
    if dtype is not None and dtype not in DTYPES:
        raise UsageError(f"--dtype {dtype!r}: expected one of {', '.join(DTYPES)}")
    max_bytes = parse_size(max_shard_size)
    out_path = Path(out).expanduser().resolve()
    check_output(out_path)
    if push:
        remote.check_online(settings, f"pushing the export to {push}")
        if not settings.write_token():
            raise PublishError("--push needs a Hub access token with write permission, and none was found",
                               hint="set HF_TOKEN or pass --token TOKEN")

    base_ckpt = open_base(base, settings)
    chosen, updates = _adapters(sources, weight_list, settings, progress=progress, allow_pickle=allow_pickle,
                                base_repo=base_ckpt.repo_id)
    skel = skeleton(base_ckpt.config, base_ckpt.path)
    dropped = tied_copies(base_ckpt, skel, lambda a, b: _stored_equal(base_ckpt, a, b))
    plan = build_plan(base_ckpt, skel, chosen, updates, dtype=dtype, dropped=dropped)
    shards = plan_shards([OutTensor(t.name, plan.out_dtypes[t.name], t.shape) for t in plan.written], max_bytes)

    with staging(out_path) as folder:
        stream(plan, shards, folder, progress=progress)
        write_index(folder, shards)
        for name in COPIED_FILES:
            if (base_ckpt.path / name).is_file():
                shutil.copyfile(base_ckpt.path / name, folder / name)
        card = render_card(plan, title=out_path.name, dtype=dtype, version=__version__)
        (folder / "README.md").write_text(card, encoding="utf-8")
        _write_config(base_ckpt, folder / "config.json", dtype)  # last: without it the folder is no checkpoint
        publish(folder, out_path)

    notes = [n for n in (skel.note,) if n]
    notes += [f"{a.name}: trained against {a.quantized_training} quantized weights, merged into the full-precision "
              "base (see the model card)" for a in chosen if a.quantized_training]
    notes += [f"{copy}: tied to {kept}, written once" for copy, kept in dropped.items()]
    result = ExportResult(out_path, plan, shards, dtype, time.perf_counter() - start, notes)
    if push:
        result.pushed = _push(out_path, push, settings, private=private, plan=plan)
    return result


def _weights(weights: Sequence[float] | None, count: int) -> list[float]:
    if weights is None:
        return [1.0] * count
    values = [float(w) for w in weights]
    if len(values) != count:
        raise UsageError(f"--weights gives {len(values)} weight(s) for {count} adapter(s)",
                         hint="give one weight per adapter, in the same order: --weights 0.7,0.3")
    return values


def _adapters(sources: list[str], weights: list[float], settings: Settings, *, progress: bool,
              allow_pickle: bool, base_repo: str | None) -> tuple[list[ExportAdapter], list[list[ParamUpdate]]]:
    """Install and verify every adapter, then read it and ask its method for its updates."""
    from ...client import Client
    from ...plugin.registry import detect_method

    report = Client(settings, progress=progress).install(sources)
    chosen, updates = [], []
    for result, weight in zip(report.results, weights, strict=True):
        method = detect_method(result.path)
        check_mergeable(method, result.requested)
        files = method.read(result.path, allow_pickle=allow_pickle)
        files.source = result.requested
        record = result.record
        weights_file = _weights_file(record.files)
        name = result.name or record.source.repo_id or Path(record.source.path or result.requested).name
        chosen.append(ExportAdapter(
            requested=result.requested, name=name, version=result.version, method=method.name, commit=record.commit,
            path=result.path, weight=weight, sha256=weights_file.sha256 if weights_file else None,
            weights_file=weights_file.path if weights_file else None, files=record.files,
            repo_id=record.source.repo_id,
            quantized_training=quantized_training(result.path, files.config, settings, base_repo),
        ))
        updates.append(method.merge_updates(files, weight))
    return chosen, updates


def _weights_file(files: tuple[FileEntry, ...]) -> FileEntry | None:
    """The adapter's weights: ``adapter_model.safetensors``, else its largest tensor file."""
    named = [f for f in files if f.path == "adapter_model.safetensors"]
    tensors = [f for f in files if f.path.endswith((".safetensors", ".bin", ".pt", ".pth"))]
    return named[0] if named else max(tensors, key=lambda f: f.size, default=None)


def stream(plan: ExportPlan, shards: list[OutShard], folder: Path, *, progress: bool = False) -> None:
    """Write every planned shard: each tensor read, merged if an update targets it, converted, written."""
    from safetensors import safe_open
    from tqdm.auto import tqdm

    entries = {t.name: t for t in plan.written}
    opened: list[Any] = []  # [shard name, handle, bytes read through it]

    def close() -> None:
        if opened:
            opened[1].__exit__(None, None, None)
            opened.clear()

    try:
        for number, shard in enumerate(shards, 1):
            writer = ShardFile(folder, shard)
            bar = tqdm(total=shard.nbytes, unit="B", unit_scale=True, desc=f"shard {number}/{len(shards)}",
                       file=sys.stderr, disable=None if progress else True)
            try:
                for planned in shard.tensors:
                    entry = entries[planned.name]
                    # safe_open maps the whole shard and the pages read stay resident while it is open:
                    # reopening it every REOPEN_BYTES keeps that below a shard
                    if opened and (opened[0] != entry.shard or opened[2] > REOPEN_BYTES):
                        close()
                    if not opened:
                        handle = safe_open(str(plan.base.path / entry.shard), framework="pt", device="cpu")
                        opened[:] = [entry.shard, handle.__enter__(), 0]
                    tensor = opened[1].get_tensor(entry.name)
                    opened[2] += entry.nbytes
                    steps = plan.steps.get(entry.name)
                    if steps:
                        tensor = merge_tensor(tensor, steps, plan)
                    writer.write(planned.name, tensor.to(torch_dtype(planned.dtype)))
                    bar.update(planned.nbytes)
                    del tensor
                writer.finish()
            finally:
                writer.close()
                bar.close()
    finally:
        close()


def merge_tensor(tensor: Any, steps: list[Step], plan: ExportPlan) -> Any:
    """``tensor`` with every step applied in float32 (the caller rounds once to the output dtype)."""
    import torch

    base = tensor.to(torch.float32)
    current = base.clone()
    for step in steps:
        current = step.update.apply(current, MergeSite(step.update.param, step.layer_type, base))
        if tuple(current.shape) != tuple(base.shape) or current.dtype != torch.float32:
            adapter = plan.adapters[step.adapter]
            raise RuntimeError(f"method {adapter.method!r} turned {step.update.param} {tuple(base.shape)} float32 "
                               f"into {tuple(current.shape)} {current.dtype} (adapter {adapter.name})")
    return current


def _stored_equal(base: BaseCheckpoint, a: str, b: str) -> bool:
    import torch
    from safetensors import safe_open

    values = []
    for name in (a, b):
        with safe_open(str(base.path / base.tensors[name].shard), framework="pt", device="cpu") as fh:
            values.append(fh.get_tensor(name))
    return values[0].shape == values[1].shape and torch.equal(values[0], values[1])


def _write_config(base: BaseCheckpoint, path: Path, dtype: str | None) -> None:
    source = base.path / "config.json"
    if dtype is None:
        shutil.copyfile(source, path)
        return
    config = dict(base.config)
    config["dtype"] = _CONFIG_DTYPES[dtype]
    if "torch_dtype" in config:
        config["torch_dtype"] = _CONFIG_DTYPES[dtype]
    path.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def _push(out: Path, repo_id: str, settings: Settings, *, private: bool, plan: ExportPlan) -> dict[str, str]:
    token = settings.write_token()
    assert token  # checked before the export started
    hub = remote.HubRepo(settings, repo_id, token)
    hub.create(private=private)
    names = ", ".join(a.name for a in plan.adapters)
    commit = hub.upload(out, message=f"Export {plan.base.label} + {names} (merged) with adapterhub",
                        description=f"{len(plan.adapters)} adapter(s) merged by adapterhub export {__version__}.")
    return {"repo_id": repo_id, "commit": commit}
