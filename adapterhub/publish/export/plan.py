"""The export plan: which adapters, which base tensor each update lands on, what is written where.

Everything that can be checked without reading tensors is checked here, before the output folder
exists: every adapter installed and verified by the client and claimed by a mergeable method that
can merge without a model; every update's parameter found in the checkpoint (directly, through the
architecture's ``base_model_prefix``, or through a tie: a LoRA on GPT-2's ``lm_head`` lands on
``transformer.wte.weight``, which is the same tensor) and its shape checked by the method; a
parameter that an adapter replaces outright (``modules_to_save``) touched by nothing else.

Tied parameters stay one tensor: every update of any member of a tie group lands on the one copy the
checkpoint stores, and when a checkpoint stores several equal copies only the first is written
back, as ``save_pretrained`` does; transformers ties them again when it loads the export.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ...client.models import FileEntry
from ...errors import IncompatibleBaseModelError, UnsupportedOperationError
from ...plugin.records import ParamUpdate
from .base import BaseCheckpoint, Skeleton, TensorEntry

#: safetensors dtype of each ``--dtype`` choice; only floating tensors are converted.
DTYPES = {"bf16": "BF16", "fp16": "F16", "fp32": "F32"}
FLOATING = frozenset({"F64", "F32", "F16", "BF16"})


@dataclass(frozen=True)
class ExportAdapter:
    """One adapter of an export, as installed by the client and read by its method."""

    requested: str
    name: str
    version: str | None
    method: str
    commit: str
    path: Path
    weight: float
    sha256: str | None  # of its weights file
    weights_file: str | None
    files: tuple[FileEntry, ...]
    repo_id: str | None = None
    quantized_training: str | None = None  # "bitsandbytes 4-bit (nf4)" when trained against such a base

    def to_json(self) -> dict[str, Any]:
        return {"requested": self.requested, "name": self.name, "version": self.version, "method": self.method,
                "commit": self.commit, "repo_id": self.repo_id, "weight": self.weight, "sha256": self.sha256,
                "weights_file": self.weights_file, "path": str(self.path),
                "quantized_training": self.quantized_training, "files": [f.to_dict() for f in self.files]}


@dataclass(frozen=True)
class Step:
    """One update applied to one checkpoint tensor: by adapter ``adapter`` (index), at ``layer_type``."""

    adapter: int
    update: ParamUpdate
    layer_type: str


@dataclass
class ExportPlan:
    base: BaseCheckpoint
    skeleton: Skeleton
    adapters: list[ExportAdapter]
    steps: dict[str, list[Step]]  # checkpoint tensor -> its updates, in adapter order
    written: list[TensorEntry]  # base tensors written, in the order of their bytes
    out_dtypes: dict[str, str]  # tensor -> safetensors dtype it is written in
    dropped: dict[str, str] = field(default_factory=dict)  # tied copy not written -> the tensor it is


class KeyMap:
    """Parameter names of the adapters' key space -> tensors of the checkpoint (see the module docstring)."""

    def __init__(self, base: BaseCheckpoint, skeleton: Skeleton, dropped: dict[str, str]) -> None:
        self.stored = base.tensors
        self.skeleton = skeleton
        self.dropped = dropped
        self.group_of = {name: group for group in skeleton.tied for name in group}

    def _variants(self, name: str) -> list[str]:
        prefix = self.skeleton.prefix
        if not prefix:
            return [name]
        if name.startswith(prefix + "."):
            return [name, name[len(prefix) + 1:]]
        return [name, f"{prefix}.{name}"]

    def _direct(self, name: str) -> str | None:
        for variant in self._variants(name):
            if variant in self.stored:
                return self.dropped.get(variant, variant)
        return None

    def skeleton_name(self, param: str) -> str | None:
        return next((v for v in self._variants(param) if v in self.skeleton.layer_types), None)

    def tensor(self, param: str) -> str | None:
        """The checkpoint tensor that holds ``param``, or None."""
        found = self._direct(param)
        if found is not None:
            return found
        own = self.skeleton_name(param)
        for member in self.group_of.get(own or "", ()):
            found = self._direct(member)
            if found is not None:
                return found
        return None

    def layer_type(self, param: str) -> str:
        own = self.skeleton_name(param)
        return self.skeleton.layer_types.get(own, "") if own else ""


def tied_copies(base: BaseCheckpoint, skeleton: Skeleton, equal: Any) -> dict[str, str]:
    """Tensors the checkpoint stores more than once for one tie group: copy -> the one kept.

    ``equal(a, b)`` compares two stored tensors; copies that differ are not tied (transformers does
    not tie them either) and are all kept.
    """
    probe = KeyMap(base, skeleton, {})
    dropped: dict[str, str] = {}
    for group in skeleton.tied:
        stored = [t for t in dict.fromkeys(probe._direct(m) for m in group) if t is not None]
        if len(stored) > 1 and all(equal(stored[0], other) for other in stored[1:]):
            dropped.update({other: stored[0] for other in stored[1:]})
    return dropped


def build_plan(base: BaseCheckpoint, skeleton: Skeleton, adapters: list[ExportAdapter],
               updates: list[list[ParamUpdate]], *, dtype: str | None, dropped: dict[str, str]) -> ExportPlan:
    """Map every update onto the checkpoint and check it; raises before anything is written."""
    keys = KeyMap(base, skeleton, dropped)
    steps: dict[str, list[Step]] = {}
    missing: list[str] = []
    problems: list[str] = []
    for index, (adapter, adapter_updates) in enumerate(zip(adapters, updates, strict=True)):
        for update in adapter_updates:
            target = keys.tensor(update.param)
            if target is None:
                if not update.optional:
                    missing.append(f"{adapter.name}: {update.param}"
                                   + (" (a module copy it saved: modules_to_save)" if update.replaces else ""))
                continue
            layer_type = keys.layer_type(update.param)
            if update.check is not None:
                problem = update.check(base.tensors[target].shape, layer_type)
                if problem:
                    problems.append(f"{adapter.name}: {problem}")
            steps.setdefault(target, []).append(Step(index, update, layer_type))
    if missing:
        more = f" (and {len(missing) - 5} more)" if len(missing) > 5 else ""
        heads = any("modules_to_save" in m for m in missing)
        raise IncompatibleBaseModelError(
            f"the base {base.label} ({skeleton.architecture or base.config.get('model_type')}) has no parameter "
            + "; ".join(missing[:5]) + more,
            hint="export onto a checkpoint of the architecture the adapter was trained with, head included (e.g. "
            "one saved with AutoModelForSequenceClassification)" if heads
            else "the adapter was trained on another architecture; check its base_model_name_or_path",
        )
    # Within one adapter, updates of one tensor (tied parameters) follow the architecture's module
    # order, as PEFT's merge walks the modules; the sort is stable, so a saved copy stays first.
    order = {name: i for i, name in enumerate(skeleton.layer_types)}
    for target_steps in steps.values():
        target_steps.sort(key=lambda s: (s.adapter, order.get(keys.skeleton_name(s.update.param) or "", -1)))
    for target, target_steps in steps.items():
        replacing = [s for s in target_steps if s.update.replaces]
        if replacing and len(target_steps) > 1:
            names = sorted({adapters[s.adapter].name for s in target_steps})
            problems.append(f"{target}: replaced by {adapters[replacing[0].adapter].name} (a full module copy, "
                            f"modules_to_save) and also changed by {', '.join(names)}; one would undo the other")
    if problems:
        more = [f"(and {len(problems) - 8} more)"] if len(problems) > 8 else []
        raise IncompatibleBaseModelError(
            f"the adapters do not fit the base {base.label}:\n" + "\n".join(f"  {p}" for p in [*problems[:8], *more]),
            hint="check that each adapter was trained on this base (its base_model_name_or_path)",
        )
    written = [t for t in base.tensors.values() if t.name not in dropped]
    written.sort(key=lambda t: (t.shard, t.offset))
    out_dtypes = {t.name: DTYPES[dtype] if dtype and t.dtype in FLOATING else t.dtype for t in written}
    return ExportPlan(base, skeleton, adapters, steps, written, out_dtypes, dict(dropped))


def check_mergeable(method: Any, source: str) -> None:
    if not method.mergeable:
        from ...plugin.registry import get_methods

        mergeable = sorted(m.name for m in get_methods().values() if m.mergeable)
        raise UnsupportedOperationError(
            f"adapter {source!r} (method {method.name!r}) cannot be merged into the base weights",
            hint=f"only mergeable methods can be exported ({', '.join(mergeable)}); serve this one as an adapter "
            "with AdapterModel instead",
        )


_PEFT_QUANT_MARKER = "quantization config was used during training"


def quantized_training(adapter_dir: Path, config: dict[str, Any], settings: Any = None,
                       base_repo: str | None = None) -> str | None:
    """How the adapter's base was quantized during training, when something says so, else None.

    In order: the adapter's README.md, where PEFT's ``save_pretrained`` (and adapterhub's QLoRA
    save) write the bitsandbytes config of a quantized base; the ``config.json`` of the base its
    ``base_model_name_or_path`` names, a local folder or (online, when it is not the base being
    exported onto) a Hub repo, read through the client.
    """
    readme = adapter_dir / "README.md"
    if readme.is_file():
        text = readme.read_text(encoding="utf-8", errors="replace")
        if _PEFT_QUANT_MARKER in text:
            return _describe(dict(re.findall(r"^- (\w+): (.+)$", text, flags=re.MULTILINE)))
    named = config.get("base_model_name_or_path")
    if not isinstance(named, str) or not named:
        return None
    quant = _named_base_quantization(named, settings, base_repo)
    return _describe({k: str(v) for k, v in quant.items()}) if isinstance(quant, dict) else None


def _named_base_quantization(named: str, settings: Any, base_repo: str | None) -> Any:
    import json

    from ...errors import AdapterHubError

    path = Path(named).expanduser()
    if (path / "config.json").is_file():
        config_file = path / "config.json"
    elif (settings is None or settings.offline or named == base_repo or named.count("/") != 1
          or not re.fullmatch(r"[\w.-]+/[\w.-]+", named)):
        return None
    else:
        from ...client import remote

        try:
            config_file = remote.fetch_hf_file(settings, f"hf://{named}/config.json")
        except AdapterHubError:
            return None  # not on this Hub, private, gated: nothing says it was quantized
    try:
        return json.loads(config_file.read_text(encoding="utf-8")).get("quantization_config")
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, AttributeError):
        return None


def _describe(settings: dict[str, str]) -> str:
    method = settings.get("quant_method", "bitsandbytes")
    if settings.get("load_in_4bit", "").lower() == "true":
        kind = settings.get("bnb_4bit_quant_type")
        return f"{method} 4-bit" + (f" ({kind})" if kind else "")
    if settings.get("load_in_8bit", "").lower() == "true":
        return f"{method} 8-bit"
    bits = settings.get("bits")
    return f"{method}" + (f" {bits}-bit" if bits else "")
