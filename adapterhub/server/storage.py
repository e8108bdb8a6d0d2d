"""On-disk storage of the local Hub: content-addressed blobs, repos, refs and immutable commits.

Layout under the root::

    blobs/ab/abcdef...            file contents, named by sha256
    repos/<type>/<ns>/<name>/
        repo.json                 metadata: private flag, created_at
        refs.json                 {"branches": {name: commit}, "tags": {name: commit}}
        commits/<id>.json         one immutable commit: files, parent, message, author, date
        .lock                     per-repo lock held while refs move
    tmp/                          partial writes; never read

Every file is written to ``tmp/`` (or next to its target), fsynced, then ``os.replace``d into place,
so a crash at any point leaves either the old state or the new one. Blobs and commits land before
the ref that makes them reachable; a crash in between only leaves unreachable garbage.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
import re
import shutil
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from filelock import FileLock

REPO_TYPES = {"models": "model", "datasets": "dataset", "spaces": "space"}
_NAME_RE = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9._-]{0,94}[A-Za-z0-9_-])?$")
_COMMIT_RE = re.compile(r"^[0-9a-f]{40}$")
_CHUNK = 1 << 20
LFS_POINTER_VERSION = "https://git-lfs.github.com/spec/v1"


class HubError(Exception):
    """An expected failure with its HTTP status and Hub error code (sent as ``X-Error-Code``)."""

    def __init__(
        self,
        status: int,
        message: str,
        code: str | None = None,
        *,
        headers: dict[str, str] | None = None,
        body: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code
        self.headers = headers or {}
        self.body = body or {}


def repo_not_found(repo_id: str) -> HubError:
    return HubError(404, f"Repository {repo_id!r} not found (or you are not allowed to see it).", "RepoNotFound")


def revision_not_found(repo_id: str, revision: str) -> HubError:
    return HubError(404, f"Revision {revision!r} not found in {repo_id!r}.", "RevisionNotFound")


def entry_not_found(repo_id: str, path: str) -> HubError:
    return HubError(404, f"Entry {path!r} not found in {repo_id!r}.", "EntryNotFound")


def now_iso() -> str:
    return _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def git_blob_sha1(data: bytes) -> str:
    """The git object id of a blob, which the client compares for ``regular`` files."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def lfs_pointer(sha256: str, size: int) -> bytes:
    return f"version {LFS_POINTER_VERSION}\noid sha256:{sha256}\nsize {size}\n".encode()


def check_name(part: str, what: str) -> str:
    if not _NAME_RE.match(part) or ".." in part or part.endswith(".git"):
        raise HubError(400, f"Invalid {what} {part!r}: use letters, digits, '-', '_' and '.', at most 96 characters.")
    return part


def check_repo_path(path: str) -> str:
    """Refuse file paths that could escape a checkout: absolute, ``..``, ``\\``, empty segments."""
    if (
        not path
        or path.startswith("/")
        or "\\" in path
        or "\0" in path
        or any(seg in ("", ".", "..") for seg in path.split("/"))
        or path.split("/")[0] == ".git"
    ):
        raise HubError(400, f"Invalid path in repo: {path!r} (absolute, '..', '\\' or empty segments are refused).")
    return path


def check_ref_name(name: str) -> str:
    if (
        not name
        or name.startswith(("/", "-", "refs/"))
        or name.endswith(("/", ".lock"))
        or ".." in name
        or "//" in name
        or re.search(r"[\x00-\x20~^:?*\[\\\x7f]", name)
        or _COMMIT_RE.match(name)
    ):
        raise HubError(400, f"Invalid branch or tag name {name!r}.")
    return name


def _fsync_write(path: Path, data: bytes, tmp_dir: Path) -> None:
    tmp = tmp_dir / f"{uuid.uuid4().hex}.tmp"
    with open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def _write_json(path: Path, data: Any, tmp_dir: Path) -> None:
    _fsync_write(path, json.dumps(data, indent=1, sort_keys=True).encode(), tmp_dir)


@dataclass(frozen=True)
class FileEntry:
    """One file in a commit. ``lfs`` files are addressed by sha256, regular ones by git sha1."""

    sha256: str
    size: int
    git_sha1: str | None  # of the content; None for LFS uploads (their content was never in memory)
    lfs: bool

    @property
    def tree_oid(self) -> str:
        """The git blob id the tree shows: the pointer's for LFS files, as on the Hub."""
        if self.lfs:
            return git_blob_sha1(lfs_pointer(self.sha256, self.size))
        return self.git_sha1 or ""

    @property
    def etag(self) -> str:
        return self.sha256 if self.lfs else (self.git_sha1 or self.sha256)

    def to_json(self) -> dict[str, Any]:
        return {"sha256": self.sha256, "size": self.size, "oid": self.git_sha1, "lfs": self.lfs}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> FileEntry:
        return cls(sha256=d["sha256"], size=int(d["size"]), git_sha1=d.get("oid"), lfs=bool(d.get("lfs")))


@dataclass
class Commit:
    id: str
    parent: str | None
    title: str
    message: str
    author: str
    date: str
    files: dict[str, FileEntry] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "parent": self.parent,
            "title": self.title,
            "message": self.message,
            "author": self.author,
            "date": self.date,
            "files": {p: e.to_json() for p, e in sorted(self.files.items())},
        }

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Commit:
        files = {p: FileEntry.from_json(e) for p, e in d["files"].items()}
        return cls(d["id"], d.get("parent"), d["title"], d["message"], d["author"], d["date"], files)


@dataclass(frozen=True)
class Repo:
    type: str  # plural: models, datasets, spaces
    id: str  # ns/name
    path: Path
    private: bool
    created_at: str

    @property
    def namespace(self) -> str:
        return self.id.split("/", 1)[0]


# Operations a commit applies, in order.
@dataclass(frozen=True)
class AddFile:
    path: str
    entry: FileEntry


@dataclass(frozen=True)
class DeleteFile:
    path: str


@dataclass(frozen=True)
class DeleteFolder:
    path: str


Operation = AddFile | DeleteFile | DeleteFolder


class Store:
    """All state of one Hub root. Safe to share between threads and between processes."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.tmp = self.root / "tmp"
        for sub in ("blobs", "repos", "tmp", "locks"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)

    # --- blobs -----------------------------------------------------------------------------

    def blob_path(self, sha256: str) -> Path:
        if not re.fullmatch(r"[0-9a-f]{64}", sha256):
            raise HubError(400, f"Invalid sha256 {sha256!r}.")
        return self.root / "blobs" / sha256[:2] / sha256

    def has_blob(self, sha256: str, size: int | None = None) -> bool:
        path = self.blob_path(sha256)
        return path.is_file() and (size is None or path.stat().st_size == size)

    def put_bytes(self, data: bytes) -> FileEntry:
        sha256 = hashlib.sha256(data).hexdigest()
        target = self.blob_path(sha256)
        if not target.is_file():
            target.parent.mkdir(exist_ok=True)
            _fsync_write(target, data, self.tmp)
        return FileEntry(sha256=sha256, size=len(data), git_sha1=git_blob_sha1(data), lfs=False)

    def put_stream(self, stream: IO[bytes], expected_sha256: str, expected_size: int) -> None:
        """Store an upload, checking it hashes to what the client announced; nothing lands otherwise."""
        target = self.blob_path(expected_sha256)
        tmp = self.tmp / f"{uuid.uuid4().hex}.upload"
        digest, size = hashlib.sha256(), 0
        try:
            with open(tmp, "wb") as fh:
                while chunk := stream.read(_CHUNK):
                    digest.update(chunk)
                    size += len(chunk)
                    if size > expected_size:
                        break
                    fh.write(chunk)
                fh.flush()
                os.fsync(fh.fileno())
            if size != expected_size or digest.hexdigest() != expected_sha256:
                raise HubError(400, f"Upload does not match: expected sha256 {expected_sha256} and {expected_size} bytes.")
            target.parent.mkdir(exist_ok=True)
            os.replace(tmp, target)
        finally:
            tmp.unlink(missing_ok=True)

    # --- repos -----------------------------------------------------------------------------

    def _repo_dir(self, repo_type: str, repo_id: str) -> Path:
        if repo_type not in REPO_TYPES:
            raise HubError(400, f"Unknown repo type {repo_type!r}.")
        ns, _, name = repo_id.partition("/")
        check_name(ns, "namespace")
        check_name(name, "repo name")
        return self.root / "repos" / repo_type / ns / name

    def get_repo(self, repo_type: str, repo_id: str) -> Repo:
        try:
            path = self._repo_dir(repo_type, repo_id)
        except HubError:
            raise repo_not_found(repo_id) from None
        try:
            meta = json.loads((path / "repo.json").read_text())
        except FileNotFoundError:
            raise repo_not_found(repo_id) from None
        return Repo(repo_type, repo_id, path, bool(meta.get("private")), meta["created_at"])

    def list_repos(self, repo_type: str) -> Iterator[Repo]:
        base = self.root / "repos" / repo_type
        for meta_path in sorted(base.glob("*/*/repo.json")):
            repo_id = f"{meta_path.parent.parent.name}/{meta_path.parent.name}"
            try:
                yield self.get_repo(repo_type, repo_id)
            except HubError:
                continue

    def create_repo(self, repo_type: str, repo_id: str, *, private: bool, author: str) -> Repo:
        """Create a repo whose ``main`` holds one empty commit. 409 if it already exists."""
        path = self._repo_dir(repo_type, repo_id)
        with FileLock(self.root / "locks" / "repos.lock", timeout=60):
            if (path / "repo.json").is_file():
                raise HubError(409, f"Repository {repo_id!r} already exists.")
            # Build the repo aside and rename it in, so a half-created repo is never visible.
            staging = self.tmp / f"{uuid.uuid4().hex}.repo"
            (staging / "commits").mkdir(parents=True)
            date = now_iso()
            commit = self._new_commit(None, "initial commit", f"{repo_type}/{repo_id}", author, date, {})
            _write_json(staging / "commits" / f"{commit.id}.json", commit.to_json(), self.tmp)
            _write_json(staging / "refs.json", {"branches": {"main": commit.id}, "tags": {}}, self.tmp)
            _write_json(staging / "repo.json", {"private": private, "created_at": date}, self.tmp)
            path.parent.mkdir(parents=True, exist_ok=True)
            if path.exists():  # leftover of an interrupted delete
                shutil.rmtree(path)
            os.replace(staging, path)
        return self.get_repo(repo_type, repo_id)

    def delete_repo(self, repo: Repo) -> None:
        with FileLock(self.root / "locks" / "repos.lock", timeout=60):
            trash = self.tmp / f"{uuid.uuid4().hex}.deleted"
            os.replace(repo.path, trash)  # atomic: the repo disappears at once
            shutil.rmtree(trash, ignore_errors=True)

    def set_private(self, repo: Repo, private: bool) -> None:
        with self._lock(repo):
            _write_json(repo.path / "repo.json", {"private": private, "created_at": repo.created_at}, self.tmp)

    def _lock(self, repo: Repo) -> FileLock:
        return FileLock(repo.path / ".lock", timeout=60)

    # --- refs and commits ------------------------------------------------------------------

    def refs(self, repo: Repo) -> dict[str, dict[str, str]]:
        return json.loads((repo.path / "refs.json").read_text())

    def read_commit(self, repo: Repo, commit_id: str) -> Commit:
        try:
            return Commit.from_json(json.loads((repo.path / "commits" / f"{commit_id}.json").read_text()))
        except FileNotFoundError:
            raise revision_not_found(repo.id, commit_id) from None

    def resolve(self, repo: Repo, revision: str) -> Commit:
        """A branch, tag, ``refs/heads/x``, ``refs/tags/x`` or full commit id to its commit."""
        refs = self.refs(repo)
        rev = revision
        if rev.startswith("refs/heads/"):
            commit_id = refs["branches"].get(rev[len("refs/heads/") :])
        elif rev.startswith("refs/tags/"):
            commit_id = refs["tags"].get(rev[len("refs/tags/") :])
        else:
            commit_id = refs["branches"].get(rev) or refs["tags"].get(rev)
            if commit_id is None and _COMMIT_RE.match(rev) and (repo.path / "commits" / f"{rev}.json").is_file():
                commit_id = rev
        if commit_id is None:
            raise revision_not_found(repo.id, revision)
        return self.read_commit(repo, commit_id)

    def history(self, repo: Repo, commit: Commit) -> Iterator[Commit]:
        current: Commit | None = commit
        while current is not None:
            yield current
            current = self.read_commit(repo, current.parent) if current.parent else None

    def _new_commit(
        self, parent: str | None, title: str, message: str, author: str, date: str, files: dict[str, FileEntry]
    ) -> Commit:
        # The id hashes what the commit *is* (its parent, its message, its author, its files), not
        # when it was made. The same release pushed to two fresh hubs then gets the same commit
        # id, so a registry entry that pins a commit stays true for every hub that holds it (the
        # bundled demo index relies on this). Two identical commits on the same parent are one.
        # The initial commit's message names the repo, so repos never share a root commit.
        body = json.dumps(
            [parent, title, message, author, {p: e.to_json() for p, e in sorted(files.items())}],
            sort_keys=True,
        )
        commit_id = hashlib.sha1(body.encode()).hexdigest()
        return Commit(commit_id, parent, title, message, author, date, dict(files))

    def commit(
        self,
        repo: Repo,
        branch: str,
        operations: list[Operation],
        *,
        title: str,
        message: str,
        author: str,
        parent_commit: str | None = None,
    ) -> Commit:
        """Apply ``operations`` on top of ``branch`` and move the branch, all or nothing."""
        with self._lock(repo):
            refs = self.refs(repo)
            if branch not in refs["branches"]:
                if branch in refs["tags"] or _COMMIT_RE.match(branch):
                    raise HubError(400, f"Can only commit to a branch; {branch!r} is not one.")
                raise revision_not_found(repo.id, branch)
            head = self.read_commit(repo, refs["branches"][branch])
            if parent_commit and parent_commit != head.id:
                raise HubError(
                    412, f"A commit has happened since {parent_commit}: {branch} is now at {head.id}. Pull and retry."
                )
            files = dict(head.files)
            for op in operations:
                if isinstance(op, AddFile):
                    files[op.path] = op.entry
                elif isinstance(op, DeleteFile):
                    if files.pop(op.path, None) is None:
                        raise entry_not_found(repo.id, op.path)
                else:
                    prefix = op.path.rstrip("/") + "/"
                    doomed = [p for p in files if p.startswith(prefix)]
                    if not doomed:
                        raise entry_not_found(repo.id, op.path)
                    for p in doomed:
                        del files[p]
            for entry in files.values():  # never point at a blob that is not there
                if not self.has_blob(entry.sha256, entry.size):
                    raise HubError(422, f"Blob {entry.sha256} is missing: upload it before committing.")
            new = self._new_commit(head.id, title, message, author, now_iso(), files)
            _write_json(repo.path / "commits" / f"{new.id}.json", new.to_json(), self.tmp)
            refs["branches"][branch] = new.id
            _write_json(repo.path / "refs.json", refs, self.tmp)
            return new

    def set_ref(self, repo: Repo, kind: str, name: str, revision: str | None, *, exist_ok: bool = False) -> None:
        """Create (``revision`` given) or delete (``None``) a branch or tag."""
        check_ref_name(name)
        with self._lock(repo):
            refs = self.refs(repo)
            table = refs["branches" if kind == "branch" else "tags"]
            if revision is None:
                if name not in table:
                    raise revision_not_found(repo.id, name)
                if kind == "branch" and name == "main":
                    raise HubError(403, "The main branch cannot be deleted.")
                del table[name]
            else:
                if name in table or (kind == "tag" and name in refs["branches"]):
                    if exist_ok:
                        return
                    raise HubError(409, f"{kind.capitalize()} {name!r} already exists in {repo.id!r}.")
                table[name] = self.resolve(repo, revision).id
            _write_json(repo.path / "refs.json", refs, self.tmp)
