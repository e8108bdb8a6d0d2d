"""The network gate: the only module of adapterhub that opens a connection.

Every byte to or from a Hub or an index URL passes here (Hub metadata, file downloads, an ``hf://``
or http(s) index, and a push), over one HTTP stack: huggingface_hub and its shared ``httpx2``
session (``huggingface_hub.get_session()``). This module owns, so that no other module needs to:

* the **offline switch**: with ``Settings.offline`` (``--offline``, ``HF_HUB_OFFLINE``,
  ``ADAPTERHUB_OFFLINE``) every function raises :class:`~adapterhub.errors.OfflineError` before a
  socket is opened; callers with a fallback (the store, a cached index) catch that error;
* **timeouts** (huggingface_hub's own client has none: a silent server would hang a command);
* **retries**: a metadata request is tried again after HTTP 408/429/5xx or a broken answer, as
  :mod:`adapterhub.client.retry` allows (``Retry-After`` capped); a file GET (:func:`open_file`)
  is one attempt, which :mod:`adapterhub.client.download` repeats, resuming with ``Range``. No
  retry ever runs inside huggingface_hub's own backoff helpers: they cannot resume a body that
  fails half way, and they obey ``Retry-After`` without a cap;
* **error translation** into adapterhub errors (``PublishError`` for a push), credentials scrubbed;
* the **token**: ``Settings.token`` (``HF_TOKEN``) on every call, passed explicitly because
  huggingface_hub froze its environment at import; a push falls back to a saved Hub login.

Downloads are pinned to 40-hex commits and hashed while they stream; :mod:`adapterhub.client.stage`
compares the hashes with what was expected.
"""

from __future__ import annotations

import contextlib
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from ..errors import AdapterHubError, DownloadError, OfflineError, PublishError, ResolutionError
from ..layout import is_skipped
from ..settings import Settings
from .hashing import is_commit
from .models import FileEntry
from .paths import check_relpath
from .retry import RETRY_STATUSES, SETTINGS_HINT, GiveUp, RetryPolicy, Transient, Waits, parse_retry_after

_CONNECT_TIMEOUT_S = 10.0
_API_TIMEOUT_S = 20.0  # a metadata answer (model_info) is small
_INDEX_TIMEOUT_S = 15.0  # an index is small too
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


def _retrying(settings: Settings, what: str, call: Callable[[], Any]) -> Any:
    """``call()`` (one small Hub request), tried again after HTTP 408/429/5xx or a connection that
    broke mid-answer, as patiently as :class:`~adapterhub.client.retry.RetryPolicy` allows. A
    refused, unreachable or silent server is not asked again: the error that the Hub is down (or
    hangs) comes at once."""
    import httpx2
    from huggingface_hub.errors import HfHubHTTPError

    waits = Waits(RetryPolicy.from_settings(settings))
    attempt = 0
    while True:
        attempt += 1
        try:
            return call()
        except HfHubHTTPError as exc:
            status = getattr(exc.response, "status_code", None)
            if status not in RETRY_STATUSES:
                raise
            failure = Transient(f"the Hub answered HTTP {status}", status=status,
                                retry_after=parse_retry_after(exc.response.headers.get("Retry-After")))
            error: Exception = exc
        except (httpx2.ConnectError, httpx2.TimeoutException):
            raise
        except (httpx2.NetworkError, httpx2.RemoteProtocolError) as exc:
            failure, error = Transient(_reason(exc)), exc
        try:
            waits.sleep(waits.plan(failure, attempt, what))
        except GiveUp as give_up:
            raise DownloadError(f"{what}: {failure.reason} from {settings.public_endpoint}; {give_up}",
                                hint=f"try again later ({SETTINGS_HINT})") from error


# --- Hub metadata --------------------------------------------------------------------------------


def _model_info_at(settings: Settings, repo_id: str, revision: str | None, files_metadata: bool = False) -> Any:
    """The Hub's ``model_info`` at ``revision``, its ``sha`` checked to be a 40-hex commit; an unknown
    revision is an error that lists the repo's branches and tags."""
    from huggingface_hub import errors as hf_errors

    with _gate(settings, repo_id, offline_what=f"{repo_id}@{revision or 'main'}: resolving a revision"):
        try:
            info = _retrying(settings, f"{repo_id}@{revision or 'main'}", lambda: _api(settings).model_info(
                repo_id, revision=revision, files_metadata=files_metadata, timeout=_timeout()))
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


def resolve_url(settings: Settings, repo_id: str, commit: str, path: str) -> str:
    """The Hub's ``/{repo}/resolve/{rev}/{path}`` download URL (the scheme ``hf_hub_url`` builds;
    built here because importing ``huggingface_hub.file_download`` costs ~40 ms per command)."""
    from urllib.parse import quote

    return f"{settings.public_endpoint}/{repo_id}/resolve/{quote(commit, safe='')}/{quote(path)}"


def download_headers(settings: Settings) -> dict[str, str]:
    """The headers of every file GET: the token (if any) and adapterhub's user agent."""
    from huggingface_hub.utils import build_hf_headers

    from .. import __version__

    return build_hf_headers(token=settings.token or False, library_name="adapterhub", library_version=__version__)


class FileStream:
    """An open file GET (from :func:`open_file`): its status and headers, its body as it arrives,
    and :meth:`cut`, which another thread calls to end it at once."""

    def __init__(self, response: Any) -> None:
        self._response = response
        self.status: int = response.status_code
        self.content_range: str = response.headers.get("Content-Range", "")
        self.last_data = time.monotonic()

    def chunks(self) -> Iterator[bytes]:
        """The body, chunk by chunk as the socket delivers it (so a cancel is seen between reads)."""
        for chunk in self._response.iter_bytes():
            self.last_data = time.monotonic()
            yield chunk

    def cut(self) -> None:
        """Shut the socket down: this wakes the thread blocked reading it (closing it would not)."""
        stream = self._response.extensions.get("network_stream")
        sock = stream.get_extra_info("socket") if stream is not None else None
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)


@contextlib.contextmanager
def open_file(url: str, headers: dict[str, str], *, start: int, read_timeout: float) -> Iterator[FileStream]:
    """GET ``url`` from byte ``start`` (``Range``), streaming, through huggingface_hub's session.

    Every failure that another attempt may fix, while connecting or while the body is read inside
    the ``with`` block, leaves as :class:`~adapterhub.client.retry.Transient` (HTTP 408/429/5xx with
    the server's ``Retry-After``, 416, timeouts, resets, bodies shorter than announced). Other HTTP
    errors leave as huggingface_hub's (the caller translates them); everything else passes through.
    The retrying is the caller's, around this block, never inside it: one block is one attempt.
    """
    import httpx2
    from huggingface_hub import get_session
    from huggingface_hub.utils import hf_raise_for_status

    request_headers = {**headers, "Range": f"bytes={start}-"} if start else dict(headers)
    began = time.monotonic()
    stream: FileStream | None = None
    try:
        with get_session().stream("GET", url, headers=request_headers, follow_redirects=True,
                                  timeout=_timeout(read_timeout)) as response:
            stream = FileStream(response)
            if stream.status in RETRY_STATUSES:
                raise Transient(f"the server answered HTTP {stream.status}", status=stream.status,
                                retry_after=parse_retry_after(response.headers.get("Retry-After")))
            if stream.status == 416:  # nothing past ``start``: the server's file is no longer than that
                raise Transient(f"the server has no bytes past {start} (HTTP 416)", status=416)
            if stream.status >= 400:
                hf_raise_for_status(_error_response(response))
            yield stream
    except httpx2.TimeoutException as exc:
        phase = "connecting" if isinstance(exc, httpx2.ConnectTimeout) else "waiting for data"
        silent = time.monotonic() - (stream.last_data if stream is not None else began)
        raise Transient(f"timed out {phase} ({read_timeout:g} s of silence)", stalled=silent) from None
    except httpx2.TransportError as exc:  # a reset, a refused connection, a body shorter than announced
        raise Transient(_reason(exc)) from None


def _error_response(response: Any) -> Any:
    """``response`` (an error status) with at most 64 KB of its body read, for hf_raise_for_status."""
    import httpx2

    body = b""
    for chunk in response.iter_bytes():
        body += chunk
        if len(body) >= 65536:
            break
    # The body is decoded already: drop the headers that describe its encoding on the wire.
    headers = [(k, v) for k, v in response.headers.multi_items()
               if k.lower() not in ("content-encoding", "content-length", "transfer-encoding")]
    return httpx2.Response(response.status_code, headers=headers, content=body[:65536], request=response.request)


def _reason(exc: Exception) -> str:
    """A short reason for a transport error (``connection reset by peer``), never a URL or a header."""
    import httpx2

    if isinstance(exc, httpx2.RemoteProtocolError):
        return "the connection closed before the body was complete"
    if isinstance(exc, httpx2.ConnectError):
        return "the connection was refused"
    text = str(exc).split("] ", 1)[-1].strip()  # "[Errno 104] Connection reset by peer"
    return text[0].lower() + text[1:] if text and len(text) < 80 and "://" not in text else type(exc).__name__


def translate_download_error(exc: Exception, what: str, settings: Settings) -> Exception:
    """The adapterhub error for a file GET that failed without a retry (404, 401, ...)."""
    if isinstance(exc, AdapterHubError) or not isinstance(exc, _hub_errors()):
        return exc
    return _translate(exc, what, settings)


def download_snapshot(settings: Settings, repo_id: str, revision: str, paths: list[str]) -> Path:
    """``paths`` of ``repo_id@revision`` in huggingface_hub's cache (``Settings.hf_cache_dir``, the
    cache transformers shares), through ``snapshot_download``; returns the snapshot folder.

    Offline, only the cache is read (``local_files_only``): no connection is opened, and a missing
    file is an :class:`~adapterhub.errors.OfflineError`.
    """
    from huggingface_hub import snapshot_download

    what = f"{repo_id}@{revision[:12]}"
    options = {"revision": revision, "allow_patterns": paths, "cache_dir": settings.hf_cache_dir}
    if settings.offline:
        try:
            return Path(snapshot_download(repo_id, local_files_only=True, **options))
        except _hub_errors():
            raise OfflineError(f"{what}: not in the huggingface_hub cache ({settings.hf_cache_dir}) and offline "
                               "mode is on", hint=_OFFLINE_HINT) from None
    with _gate(settings, what):
        return Path(snapshot_download(repo_id, endpoint=settings.endpoint, token=settings.token or False,
                                      max_workers=settings.max_workers, **options))


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
