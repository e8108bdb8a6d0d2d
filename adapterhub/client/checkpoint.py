"""A base model checkpoint from a Hub, for ``adapterhub export``: pinned, fetched, verified.

The repo is resolved to a 40-hex commit with one ``model_info`` call (:func:`remote.resolve_snapshot`,
which also gives every file's size and the Hub's hashes). Only the files the caller wants (the
safetensors shards, their index, configs, tokenizer files: never the pickles or the ``original/``
folder of a repo) are fetched, into huggingface_hub's cache, which transformers shares, so a base
that transformers already downloaded is not downloaded again. Every fetched file is then checked
against the Hub's size and sha256 (LFS) or git blob id. Offline, the cache alone answers: the
snapshot the revision last resolved to, with the files it holds (no connection; they are not
re-verified, there is nothing to verify them against).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ..errors import IntegrityError, ResolutionError
from ..settings import Settings
from . import remote
from .hashing import git_blob_sha1, sha256_file
from .models import FileEntry


@dataclass(frozen=True)
class CheckpointSnapshot:
    """A checkpoint folder from a Hub: ``repo_id`` at ``commit`` (None offline when the cache does
    not say), and the files fetched with what they were verified against (empty offline)."""

    path: Path
    repo_id: str
    commit: str | None
    files: tuple[FileEntry, ...] = ()


def fetch_checkpoint(settings: Settings, repo_id: str, revision: str | None,
                     wanted: Callable[[str], bool]) -> CheckpointSnapshot:
    """The files of ``repo_id@revision`` for which ``wanted(path)`` is true, verified (see the module docstring)."""
    if settings.offline:  # the cached snapshot of the revision (found by its config.json), as it is
        path = remote.download_snapshot(settings, repo_id, revision or "main", ["config.json"])
        return CheckpointSnapshot(path, repo_id, path.name if len(path.name) == 40 else None)
    commit, files = remote.resolve_snapshot(settings, repo_id, revision)
    chosen = tuple(f for f in files if wanted(f.path))
    if not chosen:
        raise ResolutionError(
            f"{repo_id}@{commit[:12]}: none of its {len(files)} files is part of a safetensors checkpoint",
            hint="export needs a transformers checkpoint in safetensors (model.safetensors or shards with an index)",
        )
    # by the revision's name, so that huggingface_hub records it for an offline run; the snapshot
    # it lands in is named by its commit, which must be the one just resolved
    path = remote.download_snapshot(settings, repo_id, revision or "main", [f.path for f in chosen])
    if path.name != commit:
        raise ResolutionError(f"{repo_id}@{revision or 'main'} moved from {commit[:12]} to {path.name[:12]} while "
                              "downloading", hint="run the export again, or pin the base: --base org/name@<commit>")
    problems = [p for f in chosen if (p := _mismatch(path / f.path, f))]
    if problems:
        raise IntegrityError(f"{repo_id}@{commit[:12]}: {len(problems)} file(s) of the base failed verification",
                             problems=problems, hint="delete them from the huggingface_hub cache and retry")
    return CheckpointSnapshot(path, repo_id, commit, chosen)


def _mismatch(local: Path, expected: FileEntry) -> str | None:
    if not local.is_file():
        return f"{expected.path}: missing after the download"
    size = local.stat().st_size
    if size != expected.size:
        return f"{expected.path}: size {size}, but the Hub says {expected.size}"
    if expected.sha256 is not None:
        got = sha256_file(local)
        return None if got == expected.sha256 else f"{expected.path}: sha256 {got}, but the Hub says {expected.sha256}"
    if expected.git_oid is not None and git_blob_sha1(local) != expected.git_oid:
        return f"{expected.path}: git blob id differs from the Hub's ({expected.git_oid})"
    return None
