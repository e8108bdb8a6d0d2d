"""Everything that talks to the Hub, through the real huggingface_hub client.

Always with an explicit ``endpoint=`` and ``token=`` (huggingface_hub froze its environment at
import), always pinned to a 40-hex commit for file downloads. huggingface_hub errors are turned
into adapterhub errors here, so no other module needs to know them.
"""

from __future__ import annotations

import hashlib
import os
import sys
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import DownloadError, OfflineError, ResolutionError
from .hashing import is_commit
from .paths import check_relpath
from ..settings import Settings

_CHUNK = 1 << 20
# huggingface_hub's shared HTTP client has no timeout at all: a Hub that accepts the connection and
# never answers would hang a command forever. Every call here passes these instead.
_CONNECT_TIMEOUT_S = 10.0
_API_TIMEOUT_S = 20.0  # a metadata answer (model_info) is small
_READ_TIMEOUT_S = 60.0  # longest silence tolerated inside a file download
# huggingface_hub retries network errors 5 times with a growing wait (~23 s); a refused connection
# will not heal in that time, so fail after one quick retry and say which endpoint was tried.
_DOWNLOAD_RETRIES = 1


@dataclass(frozen=True)
class RemoteFile:
    path: str
    size: int
    lfs_sha256: str | None  # the Hub's own sha256, for LFS files
    git_oid: str | None  # git blob sha1, for regular files


def _api(settings: Settings) -> Any:
    from huggingface_hub import HfApi

    return HfApi(endpoint=settings.endpoint, token=settings.token or False)


def _timeout(read: float | None = None) -> Any:
    import httpx2  # huggingface_hub's HTTP stack

    return httpx2.Timeout(_API_TIMEOUT_S if read is None else read, connect=_CONNECT_TIMEOUT_S)


def _unreachable(exc: Exception, what: str, settings: Settings) -> Exception | None:
    """A clear error for a Hub that cannot be reached at all (refused, unknown host, timed out)."""
    import httpx2

    endpoint = settings.public_endpoint  # never the credentials of http://user:pass@host
    hint = (f"check that the Hub at {endpoint} is running and reachable, or point --endpoint / HF_ENDPOINT "
            "at the right one (HF_HUB_OFFLINE=1 uses only what is already installed)")
    if isinstance(exc, httpx2.TimeoutException):
        phase = "connecting" if isinstance(exc, httpx2.ConnectTimeout) else "waiting for an answer"
        return DownloadError(f"{what}: timed out {phase} to the Hub at {endpoint}", hint=hint)
    if isinstance(exc, httpx2.NetworkError):
        reason = settings.scrub(str(exc).split("] ", 1)[-1]) or type(exc).__name__  # "[Errno 111] Connection refused"
        return DownloadError(f"{what}: cannot reach the Hub at {endpoint} ({reason})", hint=hint)
    return None


def _translate(exc: Exception, what: str, settings: Settings) -> Exception:
    from huggingface_hub import errors as hf_errors

    unreachable = _unreachable(exc, what, settings)
    if unreachable is not None:
        return unreachable

    if isinstance(exc, hf_errors.OfflineModeIsEnabled):
        return OfflineError(f"{what}: offline mode is on (HF_HUB_OFFLINE) and this is not in the store")
    if isinstance(exc, hf_errors.RevisionNotFoundError):
        return ResolutionError(f"{what}: revision not found on {settings.public_endpoint}")
    if isinstance(exc, hf_errors.RepositoryNotFoundError):
        return ResolutionError(
            f"{what}: repository not found on {settings.public_endpoint}",
            hint="check the repo id; for a private repo set HF_TOKEN",
        )
    if isinstance(exc, hf_errors.EntryNotFoundError):
        return DownloadError(f"{what}: file not found on {settings.public_endpoint}")
    if isinstance(exc, hf_errors.HfHubHTTPError) and _status(exc) == 404:
        # A real Hub tags its 404s (X-Error-Code: RepoNotFound, ...), which the branches above
        # handle; an untagged 404 on an API route means the endpoint is some other web server.
        return DownloadError(
            f"{settings.public_endpoint} answered HTTP 404 for {what}; is it a Hugging Face Hub endpoint?",
            hint="point --endpoint / HF_ENDPOINT at a Hub (the default is https://huggingface.co; "
            "`adapterhub hub serve` runs a local one)",
        )
    return DownloadError(f"{what}: {type(exc).__name__}: {settings.scrub(str(exc))}",
                         hint=f"is {settings.public_endpoint} reachable?")


def _status(exc: Exception) -> int | None:
    response = getattr(exc, "response", None)
    return getattr(response, "status_code", None)


def _hub_errors() -> tuple[type[Exception], ...]:
    import httpx2  # huggingface_hub's HTTP stack
    from huggingface_hub import errors as hf_errors

    return (hf_errors.HfHubHTTPError, hf_errors.OfflineModeIsEnabled, hf_errors.LocalEntryNotFoundError,
            httpx2.HTTPError, OSError, ValueError)


def _model_info_at(settings: Settings, repo_id: str, revision: str | None, files_metadata: bool = False) -> Any:
    """The Hub's ``model_info`` for ``repo_id`` at ``revision``, its ``sha`` checked to be a 40-hex commit.

    Offline mode, an unknown revision (listing the repo's branches and tags) and any other Hub failure
    become adapterhub errors.
    """
    from huggingface_hub import errors as hf_errors

    if settings.offline:
        raise OfflineError(f"{repo_id}@{revision or 'main'}: resolving a revision needs the network")
    api = _api(settings)
    try:
        info = api.model_info(repo_id, revision=revision, files_metadata=files_metadata, timeout=_timeout())
    except hf_errors.RevisionNotFoundError:
        refs = list_refs(settings, repo_id)
        raise ResolutionError(
            f"{repo_id}: no revision {revision!r} on {settings.public_endpoint}",
            hint="available: " + (", ".join(refs) or "(no branches or tags)"),
        ) from None
    except _hub_errors() as exc:
        raise _translate(exc, repo_id, settings) from None
    if not is_commit(info.sha):
        raise DownloadError(f"{repo_id}@{revision}: the Hub answered commit {info.sha!r}, not a 40-hex id")
    return info


def resolve_commit(settings: Settings, repo_id: str, revision: str | None) -> str:
    """The 40-hex commit a revision (branch, tag, sha, None = default branch) points to.

    An unknown revision is an error that lists the repo's branches and tags.
    """
    return _model_info_at(settings, repo_id, revision).sha


def resolve_snapshot(settings: Settings, repo_id: str, revision: str | None) -> tuple[str, list[RemoteFile]]:
    """(commit, every file with size and the Hub's hashes) from ONE ``model_info(files_metadata=True)``.

    Falls back to a tree listing only if the server's answer lacks per-file metadata.
    """
    info = _model_info_at(settings, repo_id, revision, files_metadata=True)
    sha = info.sha
    siblings = info.siblings or []
    if not siblings or any(s.size is None or (s.lfs is None and not s.blob_id) for s in siblings):
        return sha, list_files(settings, repo_id, sha)
    files = []
    for sib in siblings:
        check_relpath(sib.rfilename, where=f"{settings.public_endpoint} files of {repo_id}@{sha[:12]}")
        lfs_sha = sib.lfs.sha256 if sib.lfs else None
        files.append(RemoteFile(path=sib.rfilename, size=int(sib.size or 0), lfs_sha256=lfs_sha,
                                git_oid=None if lfs_sha else sib.blob_id))
    return sha, sorted(files, key=lambda f: f.path)


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
        check_relpath(item.path, where=f"{settings.public_endpoint} tree of {repo_id}@{commit[:12]}")
        files.append(
            RemoteFile(
                path=item.path,
                size=int(item.size),
                lfs_sha256=item.lfs.sha256 if item.lfs else None,
                git_oid=item.blob_id if not item.lfs else None,
            )
        )
    return sorted(files, key=lambda f: f.path)


@dataclass
class FetchJob:
    """One file to stream from the Hub into ``partial`` and check against what is expected of it."""

    repo_id: str
    commit: str
    path: str
    size: int
    partial: Path  # bytes land here (``*.incomplete``); a rerun resumes from what it holds
    sha256: str | None  # from the index, lock or the Hub's LFS metadata
    git_oid: str | None = None  # the Hub's git blob id, checked when no sha256 is known
    expected_from: str = "hub"


@dataclass
class Fetched:
    job: FetchJob
    sha256: str | None  # computed while streaming; None when verification failed
    problem: str | None = None


def _hashers(job: FetchJob) -> tuple[Any, Any]:
    sha = hashlib.sha256()
    git = None
    if not job.sha256 and is_commit(job.git_oid):
        git = hashlib.sha1(f"blob {job.size}\0".encode())  # noqa: S324 - git's id, not security
    return sha, git


def resolve_url(settings: Settings, repo_id: str, commit: str, path: str) -> str:
    """The Hub's ``/{repo}/resolve/{rev}/{path}`` download URL (the scheme ``hf_hub_url`` builds;
    built here because importing ``huggingface_hub.file_download`` costs ~40 ms per command)."""
    from urllib.parse import quote

    return f"{settings.public_endpoint}/{repo_id}/resolve/{quote(commit, safe='')}/{quote(path)}"


def _fetch_one(settings: Settings, job: FetchJob, headers: dict[str, str], progress: Any) -> Fetched:
    """Stream one file (resuming a partial one with a Range request), hashing every byte once."""
    from huggingface_hub.utils import hf_raise_for_status, http_stream_backoff

    check_relpath(job.path, where=f"{job.repo_id}@{job.commit[:12]}")
    job.partial.parent.mkdir(parents=True, exist_ok=True)
    sha, git = _hashers(job)
    have = job.partial.stat().st_size if job.partial.is_file() else 0
    if have > job.size:  # longer than the file can be: never trust it
        job.partial.unlink()
        have = 0
    if have:  # resume: the bytes already on disk are hashed once, here
        with open(job.partial, "rb") as fh:
            while chunk := fh.read(_CHUNK):
                sha.update(chunk)
                if git is not None:
                    git.update(chunk)
        if progress is not None:
            progress.update(have)
    oversize = False
    with open(job.partial, "ab" if have else "wb") as out:
        if have < job.size:
            url = resolve_url(settings, job.repo_id, job.commit, job.path)
            request_headers = dict(headers)
            if have:
                request_headers["Range"] = f"bytes={have}-"
            with http_stream_backoff("GET", url, headers=request_headers, follow_redirects=True,
                                     timeout=_timeout(_READ_TIMEOUT_S), max_retries=_DOWNLOAD_RETRIES) as response:
                hf_raise_for_status(response)
                if have and response.status_code != 206:  # the server ignored Range: start over
                    out.seek(0)
                    out.truncate()
                    sha, git = _hashers(job)
                    have = 0
                for chunk in response.iter_bytes(_CHUNK):
                    have += len(chunk)
                    if have > job.size:
                        oversize = True
                        break
                    out.write(chunk)
                    sha.update(chunk)
                    if git is not None:
                        git.update(chunk)
                    if progress is not None:
                        progress.update(len(chunk))
        out.flush()
        os.fsync(out.fileno())  # one fsync per file, before it can become a blob
    digest = sha.hexdigest()
    problem = None
    if oversize or have != job.size:
        got = f"more than {job.size}" if oversize else str(have)
        problem = f"{job.path}: size {got}, but {job.expected_from} says {job.size} (wrong size)"
    elif job.sha256 and digest != job.sha256:
        problem = f"{job.path}: sha256 {digest}, but {job.expected_from} says {job.sha256}"
    elif git is not None and git.hexdigest() != job.git_oid:
        problem = f"{job.path}: git blob id differs from the Hub's tree listing ({job.git_oid})"
    if problem:
        job.partial.unlink(missing_ok=True)  # a rerun fetches fresh bytes
        return Fetched(job, None, problem)
    return Fetched(job, digest)


def fetch_files(settings: Settings, jobs: list[FetchJob], *, progress: bool = True, desc: str = "") -> list[Fetched]:
    """Stream every job (files of ALL adapters) through one thread pool; one GET per file.

    Pinned to 40-hex commits, so no HEAD round trip is needed: size and hashes are already known
    and are checked while the bytes arrive. Verification failures come back in ``Fetched.problem``;
    the first transport error is raised after every worker has finished, so no thread is left
    writing into a staging dir.
    """
    from huggingface_hub.utils import build_hf_headers

    from .. import __version__

    if not jobs:
        return []
    for job in jobs:
        if not is_commit(job.commit):
            raise ResolutionError(f"{job.repo_id}: refusing to download from a non-commit revision {job.commit!r}")
    if settings.offline:
        raise OfflineError(
            f"{desc or jobs[0].repo_id}: {len(jobs)} file(s) are not in the store and offline mode is on",
            hint="run the install once online, or unset HF_HUB_OFFLINE / ADAPTERHUB_OFFLINE",
        )
    headers = build_hf_headers(token=settings.token or False, library_name="adapterhub",
                               library_version=__version__)
    bar = None
    if progress:  # tqdm is only imported when a bar is shown
        from tqdm.auto import tqdm

        # disable=None: a bar only on a terminal, never carriage-return garbage in a log or a pipe.
        bar = tqdm(total=sum(j.size for j in jobs) or None, unit="B", unit_scale=True, desc=desc or "download",
                   file=sys.stderr, leave=False, disable=None)
    results: list[Fetched] = []
    errors: list[tuple[FetchJob, Exception]] = []
    try:
        # Largest first, so one big file does not start last and stretch the tail.
        ordered = sorted(jobs, key=lambda j: -j.size)
        with ThreadPoolExecutor(max_workers=min(settings.max_workers, len(jobs))) as pool:
            futures = {pool.submit(_fetch_one, settings, job, headers, bar): job for job in ordered}
            for future in as_completed(futures):
                try:
                    results.append(future.result())
                except _hub_errors() as exc:
                    errors.append((futures[future], exc))
    finally:
        if bar is not None:
            bar.close()
    if errors:
        job, exc = errors[0]
        raise _translate(exc, f"{job.repo_id}@{job.commit[:12]}/{job.path}", settings) from exc
    return results


def fetch_file(settings: Settings, repo_id: str, filename: str, revision: str | None) -> Path:
    """One file through the huggingface_hub cache (offline serves the cached copy).

    Online, the Hub is first asked whether this token may read the repo: hf_hub_download alone
    answers a "repository not found" (a private repo read without the right token) with a stale
    cached copy, which would keep serving a private index after access was lost. (The download
    keeps the revision name, not the commit, so that huggingface_hub records the ref for offline use.)
    """
    from huggingface_hub import hf_hub_download

    if not settings.offline:
        try:
            _api(settings).model_info(repo_id, revision=revision, timeout=_timeout())
        except _hub_errors() as exc:
            raise _translate(exc, f"hf://{repo_id}/{filename}", settings) from None
    try:
        return Path(hf_hub_download(
            repo_id, filename, revision=revision, endpoint=settings.endpoint, token=settings.token or False,
            cache_dir=settings.hf_cache_dir, local_files_only=settings.offline,
        ))
    except _hub_errors() as exc:
        if settings.offline:
            raise OfflineError(f"hf://{repo_id}/{filename}: not cached and offline mode is on") from None
        raise _translate(exc, f"hf://{repo_id}/{filename}", settings) from None
