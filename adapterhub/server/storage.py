"""On-disk storage of the local Hub (:class:`HubStorage`): repos, refs and immutable commits.

Layout under the root::

    blobs/ab/abcdef...               file contents, named by sha256 (:mod:`.blobs`)
    repos/<type>/<ns>/<name>/        one repo; <ns>/<name> in lower case (ids are case-insensitive)
        repo.json                    id (with its case), private, gated, created_at
        refs.json                    {"branches": {..}, "tags": {..}, "pulls": {"1": commit}}
        commits/<id>.json            one immutable commit: files, parent, message, author, date
        owned/<sha256>               the blobs this repo may reference (:mod:`.blobs`)
        discussions/<num>.json       discussions and pull requests (:mod:`.prs`)
        access.json, likes.json      access requests of a gated repo (:mod:`.access`), likes
        .lock                        per-repo lock held while refs or discussions change
    redirects/<type>/<ns>/<name>.json   where a moved repo went
    locks/repos.lock                 held while repos are created, moved or deleted
    tmp/                             partial uploads and repos being built or deleted; never read

Every file is written next to its target (or under ``tmp/``), fsynced, then ``os.replace``d into
place (:func:`adapterhub.fileio.atomic_write_bytes`), so a crash leaves either the old state or the
new one. Blobs and commits land before the ref that makes them reachable; a crash in between only
leaves unreachable garbage, which ``adapterhub hub gc`` removes. Writing commits lives in
:mod:`.history`.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import json
import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from filelock import FileLock

from ..fileio import atomic_write_bytes, dump_json
from .blobs import BlobStore, mark_owned
from .errors import HubError, repo_not_found, revision_not_found
from .names import REPO_TYPES, check_name, check_ref_name, is_commit_id, is_commit_prefix, name_key, pr_number
from .objects import Commit, Repo, TreeEntry
from .patterns import default_gitattributes

FORMAT_VERSION = 2


def now_iso() -> str:
    return _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def write_json(path: Path, data: Any) -> None:
    """Atomic and fsynced: a commit or ref file is either the old one or the complete new one."""
    # Request JSON may carry lone surrogates ("\ud800") in titles or paths; they cannot be UTF-8,
    # so they are written back as the same JSON escape, which reads back as the same string.
    atomic_write_bytes(path, dump_json(data).encode("utf-8", "backslashreplace"), fsync=True)


def read_json(path: Path) -> Any:
    return json.loads(path.read_bytes())


class HubStorage:
    """All state of one Hub root. Safe to share between threads and between processes."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.tmp = self.root / "tmp"
        for sub in ("repos", "tmp", "locks", "redirects"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        self.blobs = BlobStore(self.root)
        self._upgrade()

    # --- repos -----------------------------------------------------------------------------

    def repo_dir(self, repo_type: str, repo_id: str) -> Path:
        if repo_type not in REPO_TYPES:
            raise HubError(400, f"Unknown repo type {repo_type!r}.")
        ns, _, name = repo_id.partition("/")
        check_name(ns, "namespace")
        check_name(name, "repo name")
        return self.root / "repos" / repo_type / name_key(ns) / name_key(name)

    def _redirect_path(self, repo_type: str, repo_id: str) -> Path:
        ns, _, name = name_key(repo_id).partition("/")
        return self.root / "redirects" / repo_type / ns / f"{name}.json"

    def _load(self, repo_type: str, path: Path) -> Repo:
        meta = read_json(path / "repo.json")
        repo_id = meta.get("id") or f"{path.parent.name}/{path.name}"
        return Repo(repo_type, repo_id, path, bool(meta.get("private")), meta["created_at"], meta.get("gated") or False)

    def get_repo(self, repo_type: str, repo_id: str, *, follow: bool = True) -> Repo:
        """The repo (any case of its id); a moved repo is found under its old id too."""
        try:
            path = self.repo_dir(repo_type, repo_id)
        except HubError:
            raise repo_not_found(repo_id) from None
        for _ in range(8):  # a chain of moves, bounded
            if (path / "repo.json").is_file():
                return self._load(repo_type, path)
            redirect = self._redirect_path(repo_type, repo_id)
            if not follow or not redirect.is_file():
                break
            repo_id = read_json(redirect)["to"]
            path = self.repo_dir(repo_type, repo_id)
        raise repo_not_found(repo_id)

    def list_repos(self, repo_type: str) -> Iterator[Repo]:
        for meta_path in sorted((self.root / "repos" / repo_type).glob("*/*/repo.json")):
            with contextlib.suppress(OSError, ValueError, KeyError):
                yield self._load(repo_type, meta_path.parent)

    def create_repo(
        self, repo_type: str, repo_id: str, *, private: bool, author: str, gated: bool | str = False,
        files: dict[str, bytes] | None = None,
    ) -> Repo:
        """Create a repo whose ``main`` holds the Hub's ``.gitattributes`` (and ``files``). 409 if it exists."""
        path = self.repo_dir(repo_type, repo_id)
        with self._repos_lock():
            if (path / "repo.json").is_file():
                existing = self._load(repo_type, path)
                kind = REPO_TYPES[repo_type]
                raise HubError(409, f"You already created this {kind} repo: {existing.id}")
            # Build the repo aside and rename it in, so a half-created repo is never visible.
            staging = self.tmp / f"{uuid.uuid4().hex}.repo"
            (staging / "commits").mkdir(parents=True)
            date = now_iso()
            tree = {".gitattributes": self.blobs.put_bytes(default_gitattributes(repo_type))}
            tree.update((path, self.blobs.put_bytes(data)) for path, data in (files or {}).items())
            commit = Commit.create(None, "initial commit", f"{repo_type}/{name_key(repo_id)}", author, date, tree)
            write_json(staging / "commits" / f"{commit.id}.json", commit.to_json())
            mark_owned(staging, [e.sha256 for e in tree.values()])
            write_json(staging / "refs.json", {"branches": {"main": commit.id}, "tags": {}, "pulls": {}})
            repo = Repo(repo_type, repo_id, path, private, date, gated)
            write_json(staging / "repo.json", repo.meta_json())
            path.parent.mkdir(parents=True, exist_ok=True)
            if path.exists():  # leftover of an interrupted delete
                shutil.rmtree(path)
            os.replace(staging, path)
            self._redirect_path(repo_type, repo_id).unlink(missing_ok=True)  # the name is taken again
        return self._load(repo_type, path)

    def delete_repo(self, repo: Repo) -> None:
        with self._repos_lock():
            trash = self.tmp / f"{uuid.uuid4().hex}.deleted"
            os.replace(repo.path, trash)  # atomic: the repo disappears at once
            shutil.rmtree(trash, ignore_errors=True)

    def move_repo(self, repo: Repo, new_id: str) -> Repo:
        """Rename or transfer a repo; its old id keeps pointing at it until reused."""
        target = self.repo_dir(repo.type, new_id)
        with self._repos_lock():
            if target != repo.path and (target / "repo.json").is_file():
                kind = REPO_TYPES[repo.type]
                raise HubError(409, f"A {kind} repository called {new_id} already exists.")
            target.parent.mkdir(parents=True, exist_ok=True)
            if target != repo.path:
                if target.exists():
                    shutil.rmtree(target)
                os.replace(repo.path, target)
            moved = Repo(repo.type, new_id, target, repo.private, repo.created_at, repo.gated)
            write_json(target / "repo.json", moved.meta_json())
            if name_key(new_id) != name_key(repo.id):
                write_json(self._redirect_path(repo.type, repo.id), {"to": new_id})
            self._redirect_path(repo.type, new_id).unlink(missing_ok=True)
        return moved

    def update_repo(self, repo: Repo, **changes: Any) -> Repo:
        """Change ``private`` and/or ``gated``."""
        with self.lock(repo):
            current = self._load(repo.type, repo.path)
            meta = current.meta_json() | changes
            write_json(repo.path / "repo.json", meta)
        return self._load(repo.type, repo.path)

    def access_requests(self, repo: Repo) -> dict[str, dict[str, Any]]:
        """The access requests of a gated repo, by lower-case user name (:mod:`.access`)."""
        path = repo.path / "access.json"
        return read_json(path) if path.is_file() else {}

    def lock(self, repo: Repo) -> FileLock:
        """The per-repo lock held while refs, discussions or settings change."""
        return FileLock(repo.path / ".lock", timeout=60)

    def _repos_lock(self) -> FileLock:
        return FileLock(self.root / "locks" / "repos.lock", timeout=60)

    # --- refs and commits ------------------------------------------------------------------

    def refs(self, repo: Repo) -> dict[str, dict[str, str]]:
        refs = read_json(repo.path / "refs.json")
        refs.setdefault("pulls", {})
        return refs

    def write_refs(self, repo: Repo, refs: dict[str, dict[str, str]]) -> None:
        """Replace the refs; callers hold :meth:`lock`."""
        write_json(repo.path / "refs.json", refs)

    def read_commit(self, repo: Repo, commit_id: str) -> Commit:
        try:
            return Commit.from_json(read_json(repo.path / "commits" / f"{commit_id}.json"))
        except FileNotFoundError:
            raise revision_not_found(repo.id, commit_id) from None

    def write_commit(self, repo: Repo, commit: Commit) -> None:
        """Store a commit; the repo now owns its blobs. The caller then moves a ref to it."""
        mark_owned(repo.path, (e.sha256 for e in commit.files.values()))
        write_json(repo.path / "commits" / f"{commit.id}.json", commit.to_json())

    def head_ref(self, refs: dict[str, dict[str, str]], revision: str) -> tuple[str, str] | None:
        """``(table, key)`` of the ref ``revision`` names in ``refs``, or None for no ref."""
        if revision.startswith("refs/heads/"):
            return ("branches", revision[len("refs/heads/") :])
        if revision.startswith("refs/tags/"):
            return ("tags", revision[len("refs/tags/") :])
        number = pr_number(revision)
        if number is not None:
            return ("pulls", str(number))
        if revision in refs["branches"]:
            return ("branches", revision)
        if revision in refs["tags"]:
            return ("tags", revision)
        return None

    def resolve(self, repo: Repo, revision: str) -> Commit:
        """A branch, tag, ``refs/heads|tags/x``, ``refs/pr/N``, or a full or abbreviated commit id."""
        refs = self.refs(repo)
        ref = self.head_ref(refs, revision)
        commit_id = refs[ref[0]].get(ref[1]) if ref else None
        if commit_id is None and ref is None:
            if is_commit_id(revision) and (repo.path / "commits" / f"{revision}.json").is_file():
                commit_id = revision
            elif is_commit_prefix(revision):
                prefix = revision.lower()
                found = [p.stem for p in (repo.path / "commits").glob(f"{prefix}*.json")]
                if len(found) == 1:
                    commit_id = found[0]
                elif len(found) > 1:
                    raise HubError(400, f"Ambiguous commit id {revision!r}: give more digits.")
        if commit_id is None:
            raise revision_not_found(repo.id, revision)
        return self.read_commit(repo, commit_id)

    def history(self, repo: Repo, commit: Commit) -> Iterator[Commit]:
        current: Commit | None = commit
        while current is not None:
            yield current
            current = self.read_commit(repo, current.parent) if current.parent else None

    def set_ref(self, repo: Repo, kind: str, name: str, revision: str | None, *, exist_ok: bool = False) -> None:
        """Create (``revision`` given) or delete (``None``) a branch or tag."""
        with self.lock(repo):
            refs = self.refs(repo)
            table = refs["branches" if kind == "branch" else "tags"]
            if revision is None:
                if kind == "branch" and name == "main":
                    raise HubError(403, "Cannot delete refs/heads/main: it is the default branch.")
                if name not in table:
                    raise revision_not_found(repo.id, name)
                del table[name]
            else:
                target = self.resolve(repo, revision).id  # a missing revision is a 404 before a bad name
                check_ref_name(name)
                if name in table or (kind == "tag" and name in refs["branches"]):
                    if exist_ok:
                        return
                    folder = "heads" if kind == "branch" or name not in table else "tags"
                    raise HubError(409, f"Reference refs/{folder}/{name} already exists")
                table[name] = target
            self.write_refs(repo, refs)

    # --- upgrade of roots written by earlier versions --------------------------------------

    def _upgrade(self) -> None:
        """Bring a root from an earlier version to this layout (ids in lower case, owned blobs)."""
        marker = self.root / "format.json"
        if marker.is_file():
            return
        with self._repos_lock():
            if marker.is_file():
                return
            for meta_path in list((self.root / "repos").glob("*/*/*/repo.json")):
                path = meta_path.parent
                repo_type, ns, name = path.parent.parent.name, path.parent.name, path.name
                meta = read_json(meta_path)
                meta.setdefault("id", f"{ns}/{name}")
                write_json(meta_path, meta)
                for commit_path in (path / "commits").glob("*.json"):
                    commit = read_json(commit_path)
                    mark_owned(path, (e["sha256"] for e in commit["files"].values()))
                lower = path.parent.parent / ns.lower() / name.lower()
                if lower != path and not lower.exists():
                    lower.parent.mkdir(parents=True, exist_ok=True)
                    os.replace(path, lower)
                    with contextlib.suppress(OSError):
                        path.parent.rmdir()
            write_json(marker, {"version": FORMAT_VERSION})


def tree_entry_for(storage: HubStorage, sha256: str, size: int, *, lfs: bool) -> TreeEntry:
    """A tree entry for a stored blob, with its git id (computed once from the content)."""
    return TreeEntry(sha256=sha256, size=size, git_sha1=storage.blobs.git_sha1(sha256), lfs=lfs)
