"""Everything that talks to the Hub, through the real huggingface_hub client.

Always with an explicit ``endpoint=`` and ``token=`` (huggingface_hub froze its environment at
import), always pinned to a 40-hex commit for file downloads. huggingface_hub errors are turned
into adapterhub errors here, so no other module needs to know them.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import DownloadError, OfflineError, ResolutionError
from .hashing import is_commit
from .paths import check_relpath
from .settings import Settings


@dataclass(frozen=True)
class RemoteFile:
    path: str
    size: int
    lfs_sha256: str | None  # the Hub's own sha256, for LFS files
    git_oid: str | None  # git blob sha1, for regular files


def _api(settings: Settings) -> Any:
    from huggingface_hub import HfApi

    return HfApi(endpoint=settings.endpoint, token=settings.token or False)


def _translate(exc: Exception, what: str, settings: Settings) -> Exception:
    from huggingface_hub import errors as hf_errors

    if isinstance(exc, hf_errors.OfflineModeIsEnabled):
        return OfflineError(f"{what}: offline mode is on (HF_HUB_OFFLINE) and this is not in the store")
    if isinstance(exc, hf_errors.RevisionNotFoundError):
        return ResolutionError(f"{what}: revision not found on {settings.endpoint}")
    if isinstance(exc, hf_errors.RepositoryNotFoundError):
        return ResolutionError(
            f"{what}: repository not found on {settings.endpoint}",
            hint="check the repo id; for a private repo set HF_TOKEN",
        )
    if isinstance(exc, hf_errors.EntryNotFoundError):
        return DownloadError(f"{what}: file not found on {settings.endpoint}")
    return DownloadError(f"{what}: {type(exc).__name__}: {exc}", hint=f"is {settings.endpoint} reachable?")


def _hub_errors() -> tuple[type[Exception], ...]:
    import httpx2  # huggingface_hub's HTTP stack
    from huggingface_hub import errors as hf_errors

    return (hf_errors.HfHubHTTPError, hf_errors.OfflineModeIsEnabled, hf_errors.LocalEntryNotFoundError,
            httpx2.HTTPError, OSError, ValueError)


def resolve_commit(settings: Settings, repo_id: str, revision: str | None) -> str:
    """The 40-hex commit a revision (branch, tag, sha, None = default branch) points to.

    An unknown revision is an error that lists the repo's branches and tags.
    """
    from huggingface_hub import errors as hf_errors

    if settings.offline:
        raise OfflineError(f"{repo_id}@{revision or 'main'}: resolving a revision needs the network")
    api = _api(settings)
    try:
        sha = api.model_info(repo_id, revision=revision).sha
    except hf_errors.RevisionNotFoundError:
        refs = list_refs(settings, repo_id)
        raise ResolutionError(
            f"{repo_id}: no revision {revision!r} on {settings.endpoint}",
            hint="available: " + (", ".join(refs) or "(no branches or tags)"),
        ) from None
    except _hub_errors() as exc:
        raise _translate(exc, repo_id, settings) from None
    if not is_commit(sha):
        raise DownloadError(f"{repo_id}@{revision}: the Hub answered commit {sha!r}, not a 40-hex id")
    return sha


def list_refs(settings: Settings, repo_id: str) -> list[str]:
    try:
        refs = _api(settings).list_repo_refs(repo_id)
    except _hub_errors():
        return []
    return [f"branch {b.name}" for b in refs.branches] + [f"tag {t.name}" for t in refs.tags]


def list_files(settings: Settings, repo_id: str, commit: str) -> list[RemoteFile]:
    """Every file of ``repo_id`` at ``commit`` with size and the Hub's hashes (LFS sha256 / git oid)."""
    from huggingface_hub.hf_api import RepoFile

    try:
        tree = list(_api(settings).list_repo_tree(repo_id, revision=commit, recursive=True))
    except _hub_errors() as exc:
        raise _translate(exc, f"{repo_id}@{commit[:12]}", settings) from None
    files = []
    for item in tree:
        if not isinstance(item, RepoFile):
            continue
        check_relpath(item.path, where=f"{settings.endpoint} tree of {repo_id}@{commit[:12]}")
        files.append(
            RemoteFile(
                path=item.path,
                size=int(item.size),
                lfs_sha256=item.lfs.sha256 if item.lfs else None,
                git_oid=item.blob_id if not item.lfs else None,
            )
        )
    return sorted(files, key=lambda f: f.path)


def _forwarding_tqdm(overall: Any) -> type:
    """A tqdm class for huggingface_hub's per-file bars that only feeds one shared, overall bar."""
    from tqdm.auto import tqdm

    class _Forward(tqdm):  # type: ignore[misc, valid-type]
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            kwargs["disable"] = True
            super().__init__(*args, **kwargs)

        def update(self, n: float | None = 1) -> bool | None:
            if overall is not None and n:
                overall.update(n)
            return None

    return _Forward


def download_files(
    settings: Settings,
    repo_id: str,
    commit: str,
    paths: Iterable[str],
    local_dir: Path,
    *,
    total_bytes: int = 0,
    progress: bool = True,
    label: str = "",
    on_done: Callable[[str, Path], None] | None = None,
) -> dict[str, Path]:
    """Download ``paths`` of ``repo_id@commit`` into ``local_dir`` in parallel; return path -> file.

    huggingface_hub's local_dir mode resumes ``.incomplete`` files, so a rerun after a crash
    continues where the last one stopped. Every failure is collected; the first is raised after
    all workers finish, so no thread is left writing into the staging dir.
    """
    from huggingface_hub import hf_hub_download
    from tqdm.auto import tqdm

    if not is_commit(commit):
        raise ResolutionError(f"{repo_id}: refusing to download from a non-commit revision {commit!r}")
    wanted = sorted(paths)
    if not wanted:
        return {}
    if settings.offline:
        raise OfflineError(
            f"{label or repo_id}: {len(wanted)} file(s) are not in the store and offline mode is on",
            hint="run the install once online, or unset HF_HUB_OFFLINE / ADAPTERHUB_OFFLINE",
        )
    local_dir.mkdir(parents=True, exist_ok=True)
    overall = tqdm(total=total_bytes or None, unit="B", unit_scale=True, desc=label or repo_id,
                   file=sys.stderr, disable=not progress, leave=False)
    forward = _forwarding_tqdm(overall)
    results: dict[str, Path] = {}
    errors: list[Exception] = []
    lock = threading.Lock()

    def fetch(path: str) -> tuple[str, Path]:
        check_relpath(path, where=f"{repo_id}@{commit[:12]}")
        local = hf_hub_download(
            repo_id, path, revision=commit, local_dir=local_dir, endpoint=settings.endpoint,
            token=settings.token or False, tqdm_class=forward,
        )
        return path, Path(local)

    try:
        with ThreadPoolExecutor(max_workers=min(settings.max_workers, len(wanted))) as pool:
            futures = [pool.submit(fetch, p) for p in wanted]
            for future in as_completed(futures):
                try:
                    path, local = future.result()
                except _hub_errors() as exc:
                    with lock:
                        errors.append(exc)
                    continue
                results[path] = local
                if on_done:
                    on_done(path, local)
    finally:
        overall.close()
    if errors:
        raise _translate(errors[0], f"{repo_id}@{commit[:12]}", settings) from errors[0]
    return results


def fetch_file(settings: Settings, repo_id: str, filename: str, revision: str | None) -> Path:
    """One file through the huggingface_hub cache (ETag-cached; offline serves the cached copy)."""
    from huggingface_hub import hf_hub_download

    try:
        return Path(hf_hub_download(
            repo_id, filename, revision=revision, endpoint=settings.endpoint, token=settings.token or False,
            cache_dir=settings.hf_cache_dir, local_files_only=settings.offline,
        ))
    except _hub_errors() as exc:
        if settings.offline:
            raise OfflineError(f"hf://{repo_id}/{filename}: not cached and offline mode is on") from None
        raise _translate(exc, f"hf://{repo_id}/{filename}", settings) from None
