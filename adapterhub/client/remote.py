"""The network gate: the only module of adapterhub that opens a connection.

Every byte to or from a Hub or an index URL passes here (Hub metadata, file downloads, an ``hf://``
or http(s) index, and a push), over one HTTP stack: huggingface_hub and its shared ``httpx2``
session (``huggingface_hub.get_session()``). This module owns, so that no other module needs to:

* the **offline switch**: with ``Settings.offline`` (``--offline``, ``HF_HUB_OFFLINE``,
  ``ADAPTERHUB_OFFLINE``) every function raises :class:`~adapterhub.errors.OfflineError` before a
  socket is opened; callers with a fallback (the store, a cached index) catch that error;
* **timeouts** (huggingface_hub's own client has none: a silent server would hang a command);
* **error translation** into adapterhub errors (``PublishError`` for a push), credentials scrubbed;
* the **token**: ``Settings.token`` (``HF_TOKEN``) on every call, passed explicitly because
  huggingface_hub froze its environment at import; a push falls back to a saved Hub login.

Downloads are pinned to 40-hex commits and hashed while they stream; :mod:`adapterhub.client.stage`
compares the hashes with what was expected.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import AdapterHubError, DownloadError, OfflineError, PublishError, ResolutionError
from ..layout import is_skipped
from ..settings import Settings
from .hashing import StreamHasher, is_commit
from .models import FileEntry
from .paths import check_relpath

_CHUNK = 1 << 20
_CONNECT_TIMEOUT_S = 10.0
_API_TIMEOUT_S = 20.0  # a metadata answer (model_info) is small
_READ_TIMEOUT_S = 60.0  # longest silence tolerated inside a file download
_INDEX_TIMEOUT_S = 15.0  # an index is small too
# huggingface_hub retries network errors 5 times (~23 s); a refused connection will not heal: retry once.
_DOWNLOAD_RETRIES = 1
_OFFLINE_HINT = "unset HF_HUB_OFFLINE / ADAPTERHUB_OFFLINE (or drop --offline) to use the network"


# --- the gate ------------------------------------------------------------------------------------


def check_online(settings: Settings, what: str, *, hint: str | None = None) -> None:
    """Raise OfflineError naming ``what`` when offline mode is on; the one test of ``settings.offline``."""
    if settings.offline:
        raise OfflineError(f"{what}: offline mode is on", hint=hint or _OFFLINE_HINT)


def _timeout(read: float | None = None) -> Any:
    import httpx2  # huggingface_hub's HTTP stack

    return httpx2.Timeout(_API_TIMEOUT_S if read is None else read, connect=_CONNECT_TIMEOUT_S)


def _api(settings: Settings, token: str | None = None) -> Any:
    from huggingface_hub import HfApi

    return HfApi(endpoint=settings.endpoint, token=token or settings.token or False)


def _hub_errors() -> tuple[type[Exception], ...]:
    import httpx2
    from huggingface_hub import errors as hf_errors

    return (hf_errors.HfHubHTTPError, hf_errors.OfflineModeIsEnabled, hf_errors.LocalEntryNotFoundError,
            httpx2.HTTPError, OSError, ValueError)


def _translate(exc: Exception, what: str, settings: Settings) -> Exception:
    """The adapterhub error for a failed read ``what``; messages name the endpoint without credentials."""
    import httpx2
    from huggingface_hub import errors as hf_errors

    endpoint = settings.public_endpoint
    hint = (f"check that the Hub at {endpoint} is running and reachable, or point --endpoint / HF_ENDPOINT "
            "at the right one (HF_HUB_OFFLINE=1 uses only what is already installed)")
    if isinstance(exc, httpx2.TimeoutException):
        phase = "connecting" if isinstance(exc, httpx2.ConnectTimeout) else "waiting for an answer"
        return DownloadError(f"{what}: timed out {phase} to the Hub at {endpoint}", hint=hint)
    if isinstance(exc, httpx2.NetworkError):
        reason = settings.scrub(str(exc).split("] ", 1)[-1]) or type(exc).__name__  # "[Errno 111] Connection refused"
        return DownloadError(f"{what}: cannot reach the Hub at {endpoint} ({reason})", hint=hint)
    if isinstance(exc, hf_errors.OfflineModeIsEnabled):
        return OfflineError(f"{what}: offline mode is on (HF_HUB_OFFLINE) and this is not in the store")
    if isinstance(exc, hf_errors.RevisionNotFoundError):
        return ResolutionError(f"{what}: revision not found on {endpoint}")
    if isinstance(exc, hf_errors.RepositoryNotFoundError):
        return ResolutionError(f"{what}: repository not found on {endpoint}",
                               hint="check the repo id; for a private repo set HF_TOKEN")
    if isinstance(exc, hf_errors.EntryNotFoundError):
        return DownloadError(f"{what}: file not found on {endpoint}")
    if isinstance(exc, hf_errors.HfHubHTTPError) and getattr(exc.response, "status_code", None) == 404:
        # A real Hub tags its 404s (X-Error-Code: RepoNotFound, ...), which the branches above
        # handle; an untagged 404 on an API route means the endpoint is some other web server.
        return DownloadError(
            f"{endpoint} answered HTTP 404 for {what}; is it a Hugging Face Hub endpoint?",
            hint="point --endpoint / HF_ENDPOINT at a Hub (the default is https://huggingface.co; "
            "`adapterhub hub serve` runs a local one)",
        )
    return DownloadError(f"{what}: {type(exc).__name__}: {settings.scrub(str(exc))}", hint=f"is {endpoint} reachable?")


@contextlib.contextmanager
def _gate(settings: Settings, what: str, *, offline_what: str | None = None, write: bool = False) -> Iterator[None]:
    """Around every call that opens a connection: refused offline; a failure becomes an adapterhub
    error (:func:`_translate`; for a push a PublishError), without credentials."""
    check_online(settings, offline_what or what)
    try:
        yield
    except AdapterHubError:
        raise
    except _hub_errors() as exc:
        if not write:
            raise _translate(exc, what, settings) from None
        from huggingface_hub.errors import HfHubHTTPError

        if not isinstance(exc, HfHubHTTPError) and type(exc).__module__.split(".")[0] != "httpx2":
            raise  # a local file error, not the Hub's answer
        message = settings.scrub(str(exc)).strip().replace("\n\n", "\n")
        raise PublishError(f"pushing to {settings.public_endpoint} failed: {message}",
                           hint="check the token (HF_TOKEN / --token) has write access to the repo's namespace") from None


# --- Hub metadata --------------------------------------------------------------------------------


def _model_info_at(settings: Settings, repo_id: str, revision: str | None, files_metadata: bool = False) -> Any:
    """The Hub's ``model_info`` at ``revision``, its ``sha`` checked to be a 40-hex commit; an unknown
    revision is an error that lists the repo's branches and tags."""
    from huggingface_hub import errors as hf_errors

    with _gate(settings, repo_id, offline_what=f"{repo_id}@{revision or 'main'}: resolving a revision"):
        try:
            info = _api(settings).model_info(repo_id, revision=revision, files_metadata=files_metadata,
                                             timeout=_timeout())
        except hf_errors.RevisionNotFoundError:
            refs = list_refs(settings, repo_id)
            raise ResolutionError(
                f"{repo_id}: no revision {revision!r} on {settings.public_endpoint}",
                hint="available: " + (", ".join(refs) or "(no branches or tags)"),
            ) from None
    if not is_commit(info.sha):
        raise DownloadError(f"{repo_id}@{revision}: the Hub answered commit {info.sha!r}, not a 40-hex id")
    return info


def resolve_snapshot(settings: Settings, repo_id: str, revision: str | None) -> tuple[str, list[FileEntry]]:
    """(commit, every file with size and the Hub's hashes) from ONE ``model_info(files_metadata=True)``.

    An LFS file comes with the Hub's sha256 (``expected_from="hub-lfs"``), a regular one with its git
    blob id only (``sha256=None``, ``"hub-git"``). Falls back to a tree listing only if the server's
    answer lacks per-file metadata.
    """
    info = _model_info_at(settings, repo_id, revision, files_metadata=True)
    siblings = info.siblings or []
    if not siblings or any(s.size is None or (s.lfs is None and not s.blob_id) for s in siblings):
        with _gate(settings, f"{repo_id}@{info.sha[:12]}"):
            return info.sha, _tree(settings, repo_id, info.sha)
    where = f"{settings.public_endpoint} files of {repo_id}@{info.sha[:12]}"
    files = [_file_entry(s.rfilename, s.size, s.lfs.sha256 if s.lfs else None, s.blob_id, where) for s in siblings
             if not is_skipped(s.rfilename)]  # the Hub's .gitattributes is no adapter file (adapterhub.layout)
    return info.sha, sorted(files, key=lambda f: f.path)


def _file_entry(path: str, size: int | None, lfs_sha256: str | None, blob_id: str | None, where: str) -> FileEntry:
    check_relpath(path, where=where)
    if lfs_sha256:
        return FileEntry(path, int(size or 0), lfs_sha256, "hub-lfs")
    return FileEntry(path, int(size or 0), None, "hub-git", blob_id)


def list_refs(settings: Settings, repo_id: str) -> list[str]:
    """``["branch main", "tag v1.0.0", ...]``; empty when they cannot be listed."""
    try:
        with _gate(settings, repo_id):
            refs = _api(settings).list_repo_refs(repo_id)
    except (DownloadError, OfflineError, ResolutionError):
        return []
    return [f"branch {b.name}" for b in refs.branches] + [f"tag {t.name}" for t in refs.tags]


def _tree(settings: Settings, repo_id: str, commit: str, token: str | None = None) -> list[FileEntry]:
    """Every file at ``commit`` with size and the Hub's hashes (LFS sha256, else git blob id)."""
    from huggingface_hub.hf_api import RepoFile

    where = f"{settings.public_endpoint} tree of {repo_id}@{commit[:12]}"
    entries = _api(settings, token).list_repo_tree(repo_id, revision=commit, recursive=True)
    files = [_file_entry(e.path, e.size, e.lfs.sha256 if e.lfs else None, e.blob_id, where)
             for e in entries if isinstance(e, RepoFile) and not is_skipped(e.path)]
    return sorted(files, key=lambda f: f.path)


# --- file downloads --------------------------------------------------------------------------------


@dataclass(frozen=True)
class FetchJob:
    """One file to stream from ``repo_id@commit`` into ``partial`` (``*.incomplete``, resumed).
    ``file.size`` bounds the download; its git blob id is hashed too when no sha256 is known."""

    repo_id: str
    commit: str
    file: FileEntry
    partial: Path


@dataclass(frozen=True)
class Fetched:
    """What arrived for a job: ``size`` bytes (None: more than expected) and their hashes."""

    job: FetchJob
    size: int | None
    sha256: str
    git_oid: str | None


def resolve_url(settings: Settings, repo_id: str, commit: str, path: str) -> str:
    """The Hub's ``/{repo}/resolve/{rev}/{path}`` download URL (the scheme ``hf_hub_url`` builds;
    built here because importing ``huggingface_hub.file_download`` costs ~40 ms per command)."""
    from urllib.parse import quote

    return f"{settings.public_endpoint}/{repo_id}/resolve/{quote(commit, safe='')}/{quote(path)}"


def _fetch_one(settings: Settings, job: FetchJob, headers: dict[str, str], progress: Any) -> Fetched:
    """Stream one file (resuming a partial one with a Range request), hashing every byte once."""
    from huggingface_hub.utils import hf_raise_for_status, http_stream_backoff

    size, wants_git = job.file.size, job.file.sha256 is None and is_commit(job.file.git_oid)
    check_relpath(job.file.path, where=f"{job.repo_id}@{job.commit[:12]}")
    job.partial.parent.mkdir(parents=True, exist_ok=True)
    hasher = StreamHasher(size, git=wants_git)
    have = job.partial.stat().st_size if job.partial.is_file() else 0
    if have > size:  # longer than the file can be: never trust it
        job.partial.unlink()
        have = 0
    if have:  # resume: the bytes already on disk are hashed once, here
        with open(job.partial, "rb") as fh:
            while chunk := fh.read(_CHUNK):
                hasher.update(chunk)
        if progress is not None:
            progress.update(have)
    oversize = False
    with open(job.partial, "ab" if have else "wb") as out:
        if have < size:
            url = resolve_url(settings, job.repo_id, job.commit, job.file.path)
            request_headers = {**headers, "Range": f"bytes={have}-"} if have else dict(headers)
            with http_stream_backoff("GET", url, headers=request_headers, follow_redirects=True,
                                     timeout=_timeout(_READ_TIMEOUT_S), max_retries=_DOWNLOAD_RETRIES) as response:
                hf_raise_for_status(response)
                if have and response.status_code != 206:  # the server ignored Range: start over
                    out.seek(0)
                    out.truncate()
                    hasher, have = StreamHasher(size, git=wants_git), 0
                for chunk in response.iter_bytes(_CHUNK):
                    have += len(chunk)
                    if have > size:
                        oversize = True
                        break
                    out.write(chunk)
                    hasher.update(chunk)
                    if progress is not None:
                        progress.update(len(chunk))
        out.flush()
        os.fsync(out.fileno())  # one fsync per file, before it can become a blob
    return Fetched(job, None if oversize else have, hasher.sha256, hasher.git_oid)


def fetch_files(settings: Settings, jobs: list[FetchJob], *, progress: bool = True, desc: str = "") -> list[Fetched]:
    """Stream every job (files of ALL adapters) through one thread pool; one GET per file.

    Pinned to 40-hex commits, so no HEAD round trip is needed. The first transport error is raised
    after every worker has finished, so no thread is left writing into a staging dir.
    """
    from huggingface_hub.utils import build_hf_headers

    from .. import __version__

    if not jobs:
        return []
    for job in jobs:
        if not is_commit(job.commit):
            raise ResolutionError(f"{job.repo_id}: refusing to download from a non-commit revision {job.commit!r}")
    check_online(settings, f"{desc or jobs[0].repo_id}: {len(jobs)} file(s) not in the store",
                 hint="run the install once online, or unset HF_HUB_OFFLINE / ADAPTERHUB_OFFLINE")
    headers = build_hf_headers(token=settings.token or False, library_name="adapterhub", library_version=__version__)
    bar = None
    if progress:  # tqdm is only imported when a bar is shown
        from tqdm.auto import tqdm

        # disable=None: a bar only on a terminal, never carriage-return garbage in a log or a pipe.
        bar = tqdm(total=sum(j.file.size for j in jobs) or None, unit="B", unit_scale=True, desc=desc or "download",
                   file=sys.stderr, leave=False, disable=None)
    results: list[Fetched] = []
    errors: list[tuple[FetchJob, Exception]] = []
    try:
        # Largest first, so one big file does not start last and stretch the tail.
        ordered = sorted(jobs, key=lambda j: -j.file.size)
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
        raise _translate(exc, f"{job.repo_id}@{job.commit[:12]}/{job.file.path}", settings) from exc
    return results


# --- index files -----------------------------------------------------------------------------------


def fetch_hf_file(settings: Settings, url: str) -> Path:
    """``hf://ns/repo/path[@rev]`` through the huggingface_hub cache; offline serves the cached copy.

    Online, the Hub is first asked whether this token may read the repo: hf_hub_download alone would
    answer a private repo read without access with a stale cached copy. (The download keeps the
    revision name, so that huggingface_hub records the ref for offline use.)
    """
    from huggingface_hub import hf_hub_download

    from .refs import parse_hf_file_url

    repo_id, filename, revision = parse_hf_file_url(url)
    what = f"hf://{repo_id}/{filename}"
    if not settings.offline:  # offline, only the local cache is read (local_files_only): no connection
        with _gate(settings, what):
            _api(settings).model_info(repo_id, revision=revision, timeout=_timeout())
    try:
        return Path(hf_hub_download(
            repo_id, filename, revision=revision, endpoint=settings.endpoint, token=settings.token or False,
            cache_dir=settings.hf_cache_dir, local_files_only=settings.offline,
        ))
    except _hub_errors() as exc:
        if settings.offline:
            raise OfflineError(f"{what}: not cached and offline mode is on") from None
        raise _translate(exc, what, settings) from None


def http_get(settings: Settings, url: str, *, what: str) -> bytes:
    """GET an http(s) URL (an index) through huggingface_hub's HTTP session. ``user:password@`` in
    the URL is sent as HTTP Basic auth, the Hub token never (it may be any server)."""
    from urllib.parse import unquote, urlsplit

    import httpx2
    from huggingface_hub import get_session

    from ..settings import public_url, scrub_secrets

    check_online(settings, what, hint="run once online, or pass --index PATH")
    parts = urlsplit(url)
    auth = (unquote(parts.username), unquote(parts.password or "")) if parts.username is not None else None
    try:
        response = get_session().get(public_url(url), headers={"Accept": "application/json"}, auth=auth,
                                     timeout=_timeout(_INDEX_TIMEOUT_S))
    except httpx2.HTTPError as exc:
        raise DownloadError(f"could not fetch {what}: {scrub_secrets(str(exc), urls=[url])}",
                            hint="check that the server is running and reachable (--offline uses the last "
                            "downloaded copy)") from None
    if response.status_code >= 400:
        hint = ("check the URL (a Hub file is served at <endpoint>/<repo>/resolve/<revision>/index.json)"
                if response.status_code == 404 else "check the URL and its credentials")
        reason = f" {response.reason_phrase}" if response.reason_phrase else ""
        raise DownloadError(f"could not fetch {what}: the server answered HTTP {response.status_code}{reason}",
                            hint=hint)
    return response.content


# --- publishing ------------------------------------------------------------------------------------


class HubRepo:
    """Write access to one Hub repo for a push: every call through the gate, with the push's token."""

    def __init__(self, settings: Settings, repo_id: str, token: str) -> None:
        self.settings, self.repo_id, self._token = settings, repo_id, token
        self._api = _api(settings, token)

    def _step(self, what: str) -> contextlib.AbstractContextManager[None]:
        return _gate(self.settings, f"{self.repo_id}: {what}", write=True)

    def create(self, *, private: bool) -> None:
        with self._step("create the repo"):
            self._api.create_repo(self.repo_id, private=private, exist_ok=True)

    def tag_commit(self, tag: str) -> str | None:
        """The commit ``tag`` points to, or None when the repo has no such tag."""
        with self._step("list tags"):
            refs = self._api.list_repo_refs(self.repo_id)
        return next((ref.target_commit for ref in refs.tags if ref.name == tag), None)

    def tree(self, commit: str) -> dict[str, FileEntry]:
        """path -> size and the Hub's hashes (LFS sha256, else the git blob id) of every file at ``commit``."""
        with self._step("list files"):
            return {f.path: f for f in _tree(self.settings, self.repo_id, commit, self._token)}

    def upload(self, folder: Path, *, message: str, description: str) -> str:
        """Commit exactly the files of ``folder`` (older files are deleted); the new commit id.

        Large files go through git-LFS, which every Hub speaks (``adapterhub hub serve`` included),
        not Xet, which only huggingface.co does: Xet is off for the duration of the upload.
        """
        from huggingface_hub import constants

        xet, constants.HF_HUB_DISABLE_XET = constants.HF_HUB_DISABLE_XET, True
        try:
            with self._step("upload"):
                info = self._api.upload_folder(repo_id=self.repo_id, folder_path=folder, commit_message=message,
                                               commit_description=description, delete_patterns="*")
        finally:
            constants.HF_HUB_DISABLE_XET = xet
        return info.oid

    def create_tag(self, tag: str, commit: str, message: str) -> None:
        with self._step(f"tag {tag}"):
            self._api.create_tag(self.repo_id, tag=tag, revision=commit, tag_message=message)

    def download(self, path: str, commit: str, cache_dir: Path) -> Path:
        with self._step(f"download {path}"):
            return Path(self._api.hf_hub_download(self.repo_id, path, revision=commit, cache_dir=cache_dir))
