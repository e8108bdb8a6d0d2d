"""On-disk storage of the local Hub (:class:`HubStorage`): content-addressed blobs, repos, refs
and immutable commits.

Layout under the root::

    blobs/ab/abcdef...            file contents, named by sha256
    repos/<type>/<ns>/<name>/
        repo.json                 metadata: private flag, created_at
        refs.json                 {"branches": {name: commit}, "tags": {name: commit}}
        commits/<id>.json         one immutable commit: files, parent, message, author, date
        .lock                     per-repo lock held while refs move
    locks/repos.lock              held while repos are created or deleted
    tmp/                          partial uploads and repos being built or deleted; never read

Every file is written next to its target (or, for uploads and new repos, under ``tmp/``), fsynced,
then ``os.replace``d into place (:func:`adapterhub.fileio.atomic_write_bytes`), so a crash at any
point leaves either the old state or the new one. Blobs and commits land before the ref that makes
them reachable; a crash in between only leaves unreachable garbage.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from filelock import FileLock

from ..fileio import atomic_write_bytes, dump_json
from .errors import HubError, entry_not_found, repo_not_found, revision_not_found
from .names import REPO_TYPES, check_name, check_ref_name, check_sha256, is_commit_id
from .objects import AddFile, Commit, DeleteFile, Operation, Repo, TreeEntry, git_blob_sha1

_CHUNK = 1 << 20


def now_iso() -> str:
    return _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def _write_json(path: Path, data: Any) -> None:
    """Atomic and fsynced: a commit or ref file is either the old one or the complete new one."""
    # Request JSON may carry lone surrogates ("\ud800") in titles or paths; they cannot be UTF-8,
    # so they are written back as the same JSON escape, which reads back as the same string.
    atomic_write_bytes(path, dump_json(data).encode("utf-8", "backslashreplace"), fsync=True)


class HubStorage:
    """All state of one Hub root. Safe to share between threads and between processes."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.tmp = self.root / "tmp"
        for sub in ("blobs", "repos", "tmp", "locks"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)

    # --- blobs -----------------------------------------------------------------------------

    def blob_path(self, sha256: str) -> Path:
        check_sha256(sha256)
        return self.root / "blobs" / sha256[:2] / sha256

    def has_blob(self, sha256: str, size: int | None = None) -> bool:
        path = self.blob_path(sha256)
        return path.is_file() and (size is None or path.stat().st_size == size)

    def put_bytes(self, data: bytes) -> TreeEntry:
        sha256 = hashlib.sha256(data).hexdigest()
        target = self.blob_path(sha256)
        if not target.is_file():
            atomic_write_bytes(target, data, fsync=True)
        return TreeEntry(sha256=sha256, size=len(data), git_sha1=git_blob_sha1(data), lfs=False)

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
            meta = json.loads((path / "repo.json").read_bytes())
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
            commit = Commit.create(None, "initial commit", f"{repo_type}/{repo_id}", author, date, {})
            _write_json(staging / "commits" / f"{commit.id}.json", commit.to_json())
            _write_json(staging / "refs.json", {"branches": {"main": commit.id}, "tags": {}})
            _write_json(staging / "repo.json", {"private": private, "created_at": date})
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
            _write_json(repo.path / "repo.json", {"private": private, "created_at": repo.created_at})

    def _lock(self, repo: Repo) -> FileLock:
        return FileLock(repo.path / ".lock", timeout=60)

    # --- refs and commits ------------------------------------------------------------------

    def refs(self, repo: Repo) -> dict[str, dict[str, str]]:
        return json.loads((repo.path / "refs.json").read_bytes())

    def read_commit(self, repo: Repo, commit_id: str) -> Commit:
        try:
            return Commit.from_json(json.loads((repo.path / "commits" / f"{commit_id}.json").read_bytes()))
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
            if commit_id is None and is_commit_id(rev) and (repo.path / "commits" / f"{rev}.json").is_file():
                commit_id = rev
        if commit_id is None:
            raise revision_not_found(repo.id, revision)
        return self.read_commit(repo, commit_id)

    def history(self, repo: Repo, commit: Commit) -> Iterator[Commit]:
        current: Commit | None = commit
        while current is not None:
            yield current
            current = self.read_commit(repo, current.parent) if current.parent else None

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
                if branch in refs["tags"] or is_commit_id(branch):
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
            new = Commit.create(head.id, title, message, author, now_iso(), files)
            _write_json(repo.path / "commits" / f"{new.id}.json", new.to_json())
            refs["branches"][branch] = new.id
            _write_json(repo.path / "refs.json", refs)
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
            _write_json(repo.path / "refs.json", refs)
