"""Step 2 of a push: the release itself, staged in a temporary folder before anything is uploaded.

A release is the adapter's files (:func:`adapterhub.layout.adapter_files` for a publish), a model
card and the manifest ``adapterhub.json``; the user's folder is never modified. Also the checks of
the push arguments (repo id, version, registry name, task) and the result a push returns.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..client.models import FileEntry
from ..fileio import atomic_write_text, dump_json
from .card import render_card
from .manifest import CARD_NAME, MANIFEST_NAME, build_manifest, record_files
from .validate import ValidatedAdapter, is_repo_id

# X.Y.Z with optional PEP 440 pre/post/dev parts in normal form (1.0.0, 1.1.0rc1, 2.0.0.post1):
# both a semantic version and what the registry index accepts.
VERSION = re.compile(
    r"^(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)((a|b|rc)(0|[1-9][0-9]*))?"
    r"(\.post(0|[1-9][0-9]*))?(\.dev(0|[1-9][0-9]*))?$"
)
NAME = re.compile(r"^[a-z0-9][a-z0-9._-]*/[a-z0-9][a-z0-9._-]*$")
TASK = re.compile(r"^[a-z0-9]+(-[a-z0-9]+)*$")


@dataclass
class PushResult:
    """What a push did. ``commit`` is None only for a dry run."""

    repo_id: str
    version: str
    tag: str
    name: str | None
    commit: str | None
    method: str
    files: list[FileEntry]  # every file of the pushed commit (manifest and card included)
    manifest: dict[str, Any]
    noop: bool = False  # the version existed with identical adapter files
    dry_run: bool = False
    private: bool = False
    load_checked: bool = False
    checked_as: str | None = None  # the model class the load check used ("BertForSequenceClassification(num_labels=2)")
    install: list[str] = field(default_factory=list)  # `adapterhub install` commands that work as printed
    entry: dict[str, Any] | None = None
    index_path: Path | None = None
    entry_path: Path | None = None
    skipped: list[str] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        return {
            "repo_id": self.repo_id,
            "version": self.version,
            "tag": self.tag,
            "name": self.name,
            "commit": self.commit,
            "method": self.method,
            "noop": self.noop,
            "dry_run": self.dry_run,
            "private": self.private,
            "load_checked": self.load_checked,
            "checked_as": self.checked_as,
            "install": self.install,
            "files": [f.to_dict() for f in self.files],
            "manifest": self.manifest,
            "index_path": str(self.index_path) if self.index_path else None,
            "entry_path": str(self.entry_path) if self.entry_path else None,
            "skipped": self.skipped,
        }


def check_arguments(repo_id: str, version: str, name: str | None, task: str | None) -> list[str]:
    problems = []
    if not is_repo_id(repo_id):
        problems.append(f"--repo {repo_id!r}: expected a Hub repo id NAMESPACE/NAME")
    if not VERSION.match(version or ""):
        problems.append(f"--version {version!r}: expected a version X.Y.Z, e.g. 1.0.0 (or 1.1.0rc1)")
    if name is not None and not NAME.match(name):
        problems.append(f"--name {name!r}: expected a lowercase registry name namespace/name ([a-z0-9._-])")
    if task is not None and not TASK.match(task):
        problems.append(f"--task {task!r}: expected a kebab-case task, e.g. sentiment-analysis")
    return problems


def stage_release(
    adapter: ValidatedAdapter,
    staging: Path,
    *,
    repo_id: str,
    manifest_fields: Mapping[str, Any],
) -> dict[str, Any]:
    """Copy the adapter files into ``staging`` and write the model card and the manifest there."""
    for rel in adapter.files:
        target = staging / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(adapter.path / rel, target)  # follows symlinks: the bytes are published
    _name_the_base_by_repo_id(staging, adapter)
    existing_card = None
    if (staging / CARD_NAME).is_file():
        existing_card = (staging / CARD_NAME).read_text(encoding="utf-8", errors="replace")
    adapter_records = record_files(staging, exclude={MANIFEST_NAME, CARD_NAME})
    # The card lists the adapter files; the manifest then lists the adapter files plus the card.
    draft = build_manifest(files=adapter_records, **manifest_fields)
    card = render_card(draft, repo_id, existing_readme=existing_card, auto_class=adapter.auto_class,
                       num_labels=adapter.num_labels)
    (staging / CARD_NAME).write_text(card, encoding="utf-8")
    manifest = build_manifest(files=record_files(staging), **manifest_fields)
    atomic_write_text(staging / MANIFEST_NAME, dump_json(manifest))
    return manifest


#: Where each format's adapter_config.json names the base model.
_BASE_MODEL_FIELD = {"peft": "base_model_name_or_path", "adapters": "model_name"}


def _name_the_base_by_repo_id(staging: Path, adapter: ValidatedAdapter) -> None:
    """A published config names the base by its Hub repo id, never by a path on the pusher's disk
    (``--base-model /home/me/venv/.../model`` or a model loaded from a local copy). The user's
    folder is left alone: only the staged copy changes, and only that one field."""
    import json

    key = _BASE_MODEL_FIELD.get(adapter.format)
    repo_id = adapter.base_model.repo_id
    config_file = staging / "adapter_config.json"
    if key is None or not repo_id or not config_file.is_file():
        return
    config = json.loads(config_file.read_text(encoding="utf-8"))
    if config.get(key) == repo_id:
        return
    config[key] = repo_id  # same key order, PEFT's indentation
    atomic_write_text(config_file, json.dumps(config, indent=2) + "\n")
