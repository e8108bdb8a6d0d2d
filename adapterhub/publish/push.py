"""Steps 3 and 4 of a push: upload the staged release to a Hub, tag it, verify it, and register it.

A version is a tag ``vX.Y.Z`` and is immutable: pushing an existing version again is a no-op when
the adapter files are byte-identical and refused otherwise. Every Hub operation goes through
:class:`adapterhub.client.remote.HubRepo` (the network gate: offline switch, token, and Hub errors
turned into :class:`~adapterhub.errors.PublishError` without credentials).
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from ..client import remote
from ..client.hashing import git_blob_sha1, sha256_file
from ..client.models import FileEntry
from ..errors import IntegrityError, PublishArgumentsError, PublishError
from ..settings import get_settings
from .manifest import CARD_NAME, MANIFEST_NAME, RELEASE_METADATA_FILES, record_files, release_time
from .release import NAME, PushResult, check_arguments, stage_release
from .validate import validate_adapter_dir

Progress = Callable[[str], None]


def _quiet(_message: str) -> None:
    pass


def _matches_local(entry: FileEntry, local: Path) -> bool:
    """Whether a Hub file has exactly the bytes of ``local`` (by LFS sha256, else git blob id)."""
    if entry.size != local.stat().st_size:
        return False
    if entry.sha256 is not None:
        return entry.sha256 == sha256_file(local)
    return entry.git_oid in (git_blob_sha1(local), sha256_file(local))


def describe_commit(hub: remote.HubRepo, commit: str, local: Mapping[str, Path], download_dir: Path) -> list[FileEntry]:
    """size/sha256 of every file in ``commit``: from the local copy when the Hub's ids prove it is the
    same bytes, otherwise by downloading the file and hashing it."""
    records = []
    for path, entry in sorted(hub.tree(commit).items()):
        source = local.get(path)
        if source is None or not _matches_local(entry, source):
            source = hub.download(path, commit, download_dir / "cache")
        records.append(FileEntry(path, source.stat().st_size, sha256_file(source), "hub"))
    return records


def _compare_with_existing(
    hub: remote.HubRepo, commit: str, staging: Path, adapter_files: Sequence[str], download_dir: Path
) -> list[str]:
    """Differences between the adapter files already at ``commit`` and the staged ones (empty: same)."""
    published = {p: e for p, e in hub.tree(commit).items() if p not in RELEASE_METADATA_FILES}
    adapter_files = [p for p in adapter_files if p not in RELEASE_METADATA_FILES]
    differences = []
    for path in sorted(set(published) | set(adapter_files)):
        if path not in published:
            differences.append(f"{path}: new in this push")
        elif path not in adapter_files:
            differences.append(f"{path}: in the published version, missing from this push")
        elif not _matches_local(published[path], staging / path):
            copy = hub.download(path, commit, download_dir / "cache")
            if sha256_file(copy) != sha256_file(staging / path):
                differences.append(f"{path}: content differs")
    return differences


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
    exclude: Sequence[str] = (),
    progress: Progress | None = None,
) -> PushResult:
    """Validate the adapter in ``path``, push it to ``repo_id`` as tag ``v{version}`` and register it.

    :param name: registry name ``namespace/name``; defaults to the lowercased ``repo_id``.
    :param endpoint: the Hub (default: ``HF_ENDPOINT``, else huggingface.co).
    :param token: a write token (default: ``HF_TOKEN``, else a saved Hub login).
    :param index_dir: a registry index folder to add the version to (``<ns>/<name>.json``).
    :param entry_out: where to write the standalone entry file for a pull request to a shared index
        (default ``./<name>-<version>.entry.json``).
    :param check: load the adapter onto a locally available base model and run a forward pass.
    :param dry_run: validate and stage only: no token needed, nothing uploaded or written.
    :param exclude: glob patterns (a file name or a path in the folder) of files to leave out.
    :raises PublishError: listing every validation problem, a missing token, or a version conflict.
    :raises OfflineError: offline mode is on (and this is not a dry run).
    """
    say = progress or _quiet
    if name is None and NAME.match(repo_id.lower()):
        name = repo_id.lower()
    problems = check_arguments(repo_id, version, name, task)
    if problems:
        raise PublishArgumentsError("cannot push: bad arguments", problems=problems)
    settings = get_settings(endpoint=endpoint).with_overrides(token=token)
    if not dry_run:
        remote.check_online(settings, f"pushing {repo_id}")
        token = settings.write_token()
        if not token:
            raise PublishError(
                "pushing needs a Hub access token with write permission, and none was found",
                hint="set the HF_TOKEN environment variable or pass --token TOKEN (token=... from Python)",
            )

    say(f"validating {path}")
    adapter = validate_adapter_dir(path, base_model=base_model, check=check, task=task, name=name,
                                   exclude=exclude)
    task = task or adapter.default_task
    if task is None:
        raise PublishError(
            f"{path}: no task given and none can be derived from the adapter config",
            hint="pass --task, e.g. --task sentiment-analysis",
        )
    if adapter.load_checked:
        say(f"checked: the {adapter.method} adapter loads onto {adapter.base_model.repo_id} as "
            f"{adapter.load_checked} and runs")
    tag = f"v{version}"
    manifest_fields = {
        "name": name, "version": version, "method": adapter.stamp, "format": adapter.format,
        "base_model": adapter.base_model.as_manifest(), "task": task, "subtask": subtask, "license": license,
        "description": description, "metrics": dict(metrics or {}),
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
            private=private, load_checked=adapter.load_checked is not None,
            checked_as=str(adapter.load_checked) if adapter.load_checked else None,
            skipped=adapter.skipped,
        )
        if dry_run:
            say(f"dry run: would push {len(result.files)} files to {repo_id} as {tag}")
            return result

        from .register import check_index_conflict

        check_index_conflict(index_dir, name, version, repo_id)
        assert token is not None
        hub = remote.HubRepo(settings, repo_id, token)
        say(f"creating {repo_id} on {settings.public_endpoint} (if needed)")
        hub.create(private=private)
        existing = hub.tag_commit(tag)
        if existing is not None:
            differences = _compare_with_existing(hub, existing, staging, adapter.files, Path(tmp))
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
            # The commit holds exactly this release, nothing from an older one.
            commit = hub.upload(
                staging,
                message=f"Publish {name or repo_id} {version} ({adapter.method} adapter) with adapterhub",
                description=f"Release {tag}: {len(adapter.files)} adapter files, manifest and card.",
            )
            say(f"tagging commit {commit} as {tag}")
            hub.create_tag(tag, commit, f"{name or repo_id} {version}")

        say("verifying the pushed files")
        result.commit = commit
        result.files = describe_commit(hub, commit, local_files, Path(tmp))
        if not result.noop:
            _verify_pushed(result.files, staging)
        elif MANIFEST_NAME in {f.path for f in result.files}:  # the existing release's manifest is the truth for it
            manifest_path = hub.download(MANIFEST_NAME, commit, Path(tmp) / "cache")
            result.manifest = json.loads(manifest_path.read_text(encoding="utf-8"))

    from .register import register_release

    register_release(result, index_dir=index_dir, entry_out=entry_out, progress=say)
    from ..settings import DEFAULT_ENDPOINT
    from .card import install_commands

    result.install = install_commands(
        repo_id, version, result.name, index=str(index_dir) if index_dir is not None else None,
        endpoint=None if settings.public_endpoint == DEFAULT_ENDPOINT else settings.public_endpoint)
    return result


def _verify_pushed(files: Sequence[FileEntry], staging: Path) -> None:
    staged = {f.path: f for f in record_files(staging, exclude=())}
    published = {f.path: f for f in files}
    problems = [
        f"{path}: staged {(staged[path].sha256 or '')[:12]} but the Hub has "
        + (f"{(published[path].sha256 or '')[:12]}" if path in published else "nothing")
        for path in staged
        if path not in published or published[path] != staged[path]
    ]
    if problems:
        raise IntegrityError("the pushed commit does not hold the staged files", problems=problems)


def push_adapter(model: Any, name: str, repo: str, /, *, version: str, **kwargs: Any) -> PushResult:
    """Save adapter ``name`` of an :class:`~adapterhub.AdapterModel` (only that one) and push it.

    The three leading arguments are positional-only, so ``name=`` in ``kwargs`` is the registry
    name of the release (``NS/NAME``), as with ``adapterhub push --name``.

    ``format`` ("peft" or "adapters") defaults to PEFT when the method can write it. Other keyword
    arguments are those of :func:`push_directory` (``task``, ``license``, ``token``, ...). No
    standalone entry file is written unless ``entry_out=`` names one (``result.entry`` holds it).
    """
    from ..errors import AdapterNotLoadedError
    from ..plugin.registry import get_method

    info = model.adapters.get(name)
    if info is None:
        raise AdapterNotLoadedError(f"adapter {name!r} is not loaded",
                                    hint=f"loaded: {', '.join(model.adapters) or '(none)'}")
    formats = get_method(info.method).formats
    save_format = kwargs.pop("format", None) or ("peft" if "peft" in formats else formats[0])
    with tempfile.TemporaryDirectory(prefix="adapterhub-save-") as tmp:
        folder = Path(tmp) / name
        model.save_adapter(folder, name, format=save_format)
        keep_entry = kwargs.get("entry_out") is not None
        if not keep_entry:  # never a file in the working directory the caller did not ask for
            kwargs["entry_out"] = Path(tmp) / "entry.json"
        result = push_directory(folder, repo_id=repo, version=version, **kwargs)
        if not keep_entry:
            result.entry_path = None
        return result
