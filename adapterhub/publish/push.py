"""Steps 2-4 of a push: stage the release, upload it to a Hub, tag it, verify it, and register it.

Nothing in the user's directory is modified: the release (adapter files, ``adapterhub.json`` and the
model card) is staged in a temporary directory and uploaded from there. A version is a tag
``vX.Y.Z`` and is immutable: pushing an existing version again is a no-op when the adapter files are
byte-identical and refused otherwise.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import PublishError
from ..fileio import atomic_write_text, dump_json
from .card import render_card
from .manifest import (
    CARD_NAME,
    MANIFEST_NAME,
    RELEASE_METADATA_FILES,
    FileRecord,
    build_manifest,
    git_blob_sha1,
    release_time,
    record_files,
    sha256_file,
)
from .validate import ValidatedAdapter, is_repo_id, validate_adapter_dir

# X.Y.Z with optional PEP 440 pre/post/dev parts in normal form (1.0.0, 1.1.0rc1, 2.0.0.post1):
# both a semantic version and what the registry index accepts.
_VERSION = re.compile(
    r"^(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)((a|b|rc)(0|[1-9][0-9]*))?"
    r"(\.post(0|[1-9][0-9]*))?(\.dev(0|[1-9][0-9]*))?$"
)
_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]*/[a-z0-9][a-z0-9._-]*$")
_TASK = re.compile(r"^[a-z0-9]+(-[a-z0-9]+)*$")

Progress = Callable[[str], None]


@dataclass
class PushResult:
    """What a push did. ``commit`` is None only for a dry run."""

    repo_id: str
    version: str
    tag: str
    name: str | None
    commit: str | None
    method: str
    files: list[FileRecord]  # every file of the pushed commit (manifest and card included)
    manifest: dict[str, Any]
    noop: bool = False  # the version existed with identical adapter files
    dry_run: bool = False
    private: bool = False
    load_checked: bool = False
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
            "files": [f.as_dict() for f in self.files],
            "manifest": self.manifest,
            "index_path": str(self.index_path) if self.index_path else None,
            "entry_path": str(self.entry_path) if self.entry_path else None,
            "skipped": self.skipped,
        }


def _quiet(_message: str) -> None:
    pass


def resolve_token(token: str | None) -> str:
    """The explicit token, else HF_TOKEN / a saved Hub login; a clear error when there is none."""
    if token:
        return token
    from huggingface_hub import get_token

    found = os.environ.get("HF_TOKEN") or os.environ.get("HUGGING_FACE_HUB_TOKEN") or get_token()
    if not found:
        raise PublishError(
            "pushing needs a Hub access token with write permission, and none was found",
            hint="set the HF_TOKEN environment variable or pass --token TOKEN (token=... from Python)",
        )
    return found


def _check_arguments(repo_id: str, version: str, name: str | None, task: str | None) -> list[str]:
    problems = []
    if not is_repo_id(repo_id):
        problems.append(f"--repo {repo_id!r}: expected a Hub repo id NAMESPACE/NAME")
    if not _VERSION.match(version or ""):
        problems.append(f"--version {version!r}: expected a version X.Y.Z, e.g. 1.0.0 (or 1.1.0rc1)")
    if name is not None and not _NAME.match(name):
        problems.append(f"--name {name!r}: expected a lowercase registry name namespace/name ([a-z0-9._-])")
    if task is not None and not _TASK.match(task):
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
    existing_card = None
    if (staging / CARD_NAME).is_file():
        existing_card = (staging / CARD_NAME).read_text(encoding="utf-8", errors="replace")
    adapter_records = record_files(staging, exclude={MANIFEST_NAME, CARD_NAME})
    # The card lists the adapter files; the manifest then lists the adapter files plus the card.
    draft = build_manifest(files=adapter_records, **manifest_fields)
    (staging / CARD_NAME).write_text(render_card(draft, repo_id, existing_readme=existing_card), encoding="utf-8")
    manifest = build_manifest(files=record_files(staging), **manifest_fields)
    atomic_write_text(staging / MANIFEST_NAME, dump_json(manifest))
    return manifest


# --- talking to the Hub ------------------------------------------------------------------------


def _remote_tree(api: Any, repo_id: str, commit: str) -> dict[str, Any]:
    from huggingface_hub.hf_api import RepoFile

    entries = api.list_repo_tree(repo_id, revision=commit, recursive=True)
    return {e.path: e for e in entries if isinstance(e, RepoFile)}


def _matches_local(entry: Any, local: Path) -> bool:
    """Whether a Hub tree entry has exactly the bytes of ``local`` (by LFS sha256 or git blob id)."""
    if entry.size != local.stat().st_size:
        return False
    if entry.lfs is not None:
        return entry.lfs.sha256 == sha256_file(local)
    return entry.blob_id in (git_blob_sha1(local), sha256_file(local))


def describe_commit(
    api: Any, repo_id: str, commit: str, local: Mapping[str, Path], download_dir: Path
) -> list[FileRecord]:
    """size/sha256 of every file in ``commit``: from the local copy when the Hub's ids prove it is the
    same bytes, otherwise by downloading the file and hashing it."""
    records = []
    for path, entry in sorted(_remote_tree(api, repo_id, commit).items()):
        source = local.get(path)
        if source is None or not _matches_local(entry, source):
            source = Path(
                api.hf_hub_download(repo_id, path, revision=commit, cache_dir=download_dir / "cache")
            )
        records.append(FileRecord(path, source.stat().st_size, sha256_file(source)))
    return records


def _existing_tag_commit(api: Any, repo_id: str, tag: str) -> str | None:
    refs = api.list_repo_refs(repo_id)
    for ref in refs.tags:
        if ref.name == tag:
            return ref.target_commit
    return None


def _compare_with_existing(
    api: Any, repo_id: str, commit: str, staging: Path, adapter_files: Sequence[str], download_dir: Path
) -> list[str]:
    """Differences between the adapter files already at ``commit`` and the staged ones (empty: same)."""
    remote = {p: e for p, e in _remote_tree(api, repo_id, commit).items() if p not in RELEASE_METADATA_FILES}
    adapter_files = [p for p in adapter_files if p not in RELEASE_METADATA_FILES]
    differences = []
    for path in sorted(set(remote) | set(adapter_files)):
        if path not in remote:
            differences.append(f"{path}: new in this push")
        elif path not in adapter_files:
            differences.append(f"{path}: in the published version, missing from this push")
        elif not _matches_local(remote[path], staging / path):
            published = api.hf_hub_download(repo_id, path, revision=commit, cache_dir=download_dir / "cache")
            if sha256_file(published) != sha256_file(staging / path):
                differences.append(f"{path}: content differs")
    return differences


def _hub_errors_as_publish_errors(push: Callable[..., PushResult]) -> Callable[..., PushResult]:
    """Turn huggingface_hub's HTTP errors into a PublishError whose message carries no credentials.

    Their text holds the request URL, which for ``http://user:pass@host`` endpoints includes the
    password; uncaught, the CLI would print it in a traceback.
    """
    import functools

    @functools.wraps(push)
    def wrapper(*args: Any, **kwargs: Any) -> PushResult:
        try:
            return push(*args, **kwargs)
        except OSError as exc:  # HfHubHTTPError and httpx errors are OSErrors; so are file errors
            from huggingface_hub.errors import HfHubHTTPError

            from ..settings import get_settings, scrub_secrets, strip_userinfo

            if not isinstance(exc, HfHubHTTPError) and type(exc).__module__.split(".")[0] != "httpx2":
                raise
            endpoint = get_settings(endpoint=kwargs.get("endpoint")).endpoint
            token = kwargs.get("token") or os.environ.get("HF_TOKEN") or os.environ.get("HUGGING_FACE_HUB_TOKEN")
            message = scrub_secrets(str(exc), urls=[endpoint], token=token).strip().replace("\n\n", "\n")
            raise PublishError(
                f"pushing to {strip_userinfo(endpoint)} failed: {message}",
                hint="check the token (HF_TOKEN / --token) has write access to the repo's namespace",
            ) from None

    return wrapper


@_hub_errors_as_publish_errors
def push_directory(
    path: str | os.PathLike[str],
    *,
    repo_id: str,
    version: str,
    name: str | None = None,
    task: str | None = None,
    subtask: str | None = None,
    license: str | None = None,
    description: str | None = None,
    metrics: Mapping[str, Any] | None = None,
    base_model: str | None = None,
    private: bool = False,
    endpoint: str | None = None,
    token: str | None = None,
    index_dir: str | os.PathLike[str] | None = None,
    entry_out: str | os.PathLike[str] | None = None,
    check: bool = True,
    dry_run: bool = False,
    progress: Progress | None = None,
) -> PushResult:
    """Validate the adapter in ``path``, push it to ``repo_id`` as tag ``v{version}`` and register it.

    :param name: registry name ``namespace/name``; defaults to the lowercased ``repo_id``.
    :param index_dir: a registry index folder to add the version to (``<ns>/<name>.json``).
    :param entry_out: where to write the standalone entry file for a pull request to a shared index
        (default ``./<name>-<version>.entry.json``; ``False``-y values other than None are not allowed).
    :param check: load the adapter onto a locally available base model and run a forward pass.
    :param dry_run: validate and stage only: no token needed, nothing uploaded or written.
    :raises PublishError: listing every validation problem, a missing token, or a version conflict.
    """
    say = progress or _quiet
    if name is None and _NAME.match(repo_id.lower()):
        name = repo_id.lower()
    problems = _check_arguments(repo_id, version, name, task)
    if problems:
        raise PublishError("cannot push: bad arguments", problems=problems)
    if not dry_run:
        token = resolve_token(token)

    say(f"validating {path}")
    adapter = validate_adapter_dir(path, base_model=base_model, check=check)
    task = task or adapter.default_task
    if task is None:
        raise PublishError(
            f"{path}: no task given and none can be derived from the adapter config",
            hint="pass --task, e.g. --task sentiment-analysis",
        )
    if adapter.load_checked:
        say(f"checked: {adapter.method} adapter loads onto {adapter.base_model.local_path} and runs")
    tag = f"v{version}"
    manifest_fields = {
        "name": name,
        "version": version,
        "method": adapter.method,
        "plugin": adapter.plugin,
        "format": adapter.format,
        "base_model": adapter.base_model.as_manifest(),
        "task": task,
        "subtask": subtask,
        "license": license,
        "description": description,
        "metrics": dict(metrics or {}),
        # Read once, so the card and the manifest record the same moment ($SOURCE_DATE_EPOCH or now).
        "created": release_time(),
    }

    with tempfile.TemporaryDirectory(prefix="adapterhub-push-") as tmp:
        staging = Path(tmp) / "release"
        staging.mkdir()
        manifest = stage_release(adapter, staging, repo_id=repo_id, manifest_fields=manifest_fields)
        local_files = {rel: staging / rel for rel in [*adapter.files, CARD_NAME, MANIFEST_NAME]}
        result = PushResult(
            repo_id=repo_id, version=version, tag=tag, name=name, commit=None, method=adapter.method,
            files=record_files(staging, exclude=()), manifest=manifest, dry_run=dry_run,
            private=private, load_checked=adapter.load_checked, skipped=adapter.skipped,
        )
        if dry_run:
            say(f"dry run: would push {len(result.files)} files to {repo_id} as {tag}")
            return result

        from huggingface_hub import HfApi

        from ..settings import get_settings, strip_userinfo
        from .register import check_index_conflict

        check_index_conflict(index_dir, name, version, repo_id)

        api = HfApi(endpoint=get_settings(endpoint=endpoint).endpoint, token=token)
        say(f"creating {repo_id} on {strip_userinfo(api.endpoint)} (if needed)")
        api.create_repo(repo_id, private=private, exist_ok=True)
        existing = _existing_tag_commit(api, repo_id, tag)
        if existing is not None:
            differences = _compare_with_existing(api, repo_id, existing, staging, adapter.files, Path(tmp))
            if differences:
                raise PublishError(
                    f"version {version} of {repo_id} already exists (tag {tag}, commit {existing}) "
                    "with different adapter files",
                    problems=differences,
                    hint="published versions are immutable: bump --version",
                )
            say(f"{repo_id}@{tag} already holds these exact adapter files (commit {existing}): nothing to push")
            commit, result.noop = existing, True
        else:
            say(f"uploading {len(result.files)} files to {repo_id}")
            info = api.upload_folder(
                repo_id=repo_id,
                folder_path=staging,
                commit_message=f"Publish {name or repo_id} {version} ({adapter.method} adapter) with adapterhub",
                commit_description=f"Release {tag}: {len(adapter.files)} adapter files, manifest and card.",
                delete_patterns="*",  # the commit holds exactly this release, nothing from an older one
            )
            commit = info.oid
            say(f"tagging commit {commit} as {tag}")
            api.create_tag(repo_id, tag=tag, revision=commit, tag_message=f"{name or repo_id} {version}")

        say("verifying the pushed files")
        result.commit = commit
        result.files = describe_commit(api, repo_id, commit, local_files, Path(tmp))
        if not result.noop:
            _verify_pushed(result.files, staging)
        else:
            published = {f.path: f for f in result.files}
            if MANIFEST_NAME in published:  # the existing release's manifest is the truth for it
                result.manifest = _read_published_manifest(api, repo_id, commit, Path(tmp))

    from .register import register_release

    register_release(result, index_dir=index_dir, entry_out=entry_out, progress=say)
    return result


def _verify_pushed(files: Sequence[FileRecord], staging: Path) -> None:
    staged = {f.path: f for f in record_files(staging, exclude=())}
    published = {f.path: f for f in files}
    problems = [
        f"{path}: staged {staged[path].sha256[:12]} but the Hub has "
        + (f"{published[path].sha256[:12]}" if path in published else "nothing")
        for path in staged
        if path not in published or published[path] != staged[path]
    ]
    if problems:
        from ..errors import IntegrityError

        raise IntegrityError("the pushed commit does not hold the staged files", problems=problems)


def _read_published_manifest(api: Any, repo_id: str, commit: str, tmp: Path) -> dict[str, Any]:
    import json

    path = api.hf_hub_download(repo_id, MANIFEST_NAME, revision=commit, cache_dir=tmp / "cache")
    return json.loads(Path(path).read_text(encoding="utf-8"))


def push_adapter(model: Any, name: str, repo: str, /, version: str, **kwargs: Any) -> PushResult:
    """Save adapter ``name`` of an :class:`~adapterhub.AdapterModel` (only that one) and push it.

    The three leading arguments are positional-only, so ``name=`` in ``kwargs`` is the registry
    name of the release (``NS/NAME``), as with ``adapterhub push --name``.

    ``format`` ("peft" or "adapters") defaults to PEFT when the method can write it. Other keyword
    arguments are those of :func:`push_directory` (``task``, ``license``, ``token``, ...).
    """
    from ..methods import get_method

    formats = get_method(model.adapters[name].method).formats
    save_format = kwargs.pop("format", None) or ("peft" if "peft" in formats else formats[0])
    with tempfile.TemporaryDirectory(prefix="adapterhub-save-") as tmp:
        folder = Path(tmp) / name
        model.save_adapter(name, folder, format=save_format)
        return push_directory(folder, repo_id=repo, version=version, **kwargs)
