"""Writing history: applying a commit's operations to a branch or pull request, super-squashing a
branch, rewriting history without some LFS objects, and listing a repo's LFS objects.

Every write holds the repo's lock (:meth:`.storage.HubStorage.lock`), writes the new commits,
then moves the ref, all or nothing. Whether a file is stored as an LFS object follows the Hub's
rule (:class:`~.patterns.LfsRule`) with the ``.gitattributes`` of the tree being committed.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from .errors import HubError, entry_not_found, revision_not_found
from .objects import AddFile, Commit, DeleteFile, Operation, Repo, TreeEntry
from .patterns import HUB_LFS_THRESHOLD, GitAttributes, LfsRule
from .storage import HubStorage, now_iso

_MAX_ATTRIBUTES_BYTES = 1 << 20


def lfs_rule(storage: HubStorage, files: dict[str, TreeEntry], threshold: int | None) -> LfsRule:
    """The LFS rule of a tree: its ``.gitattributes`` plus the size threshold."""
    entry = files.get(".gitattributes")
    text = ""
    if entry is not None and entry.size <= _MAX_ATTRIBUTES_BYTES and storage.blobs.has(entry.sha256):
        text = storage.blobs.path(entry.sha256).read_text("utf-8", errors="replace")
    return LfsRule(GitAttributes.parse(text), HUB_LFS_THRESHOLD if threshold is None else threshold)


def writable_ref(storage: HubStorage, repo: Repo, revision: str) -> tuple[str, str]:
    """``(table, key)`` of the branch or pull request ``revision`` names (commits go only there)."""
    refs = storage.refs(repo)
    ref = storage.head_ref(refs, revision)
    if ref is None or ref[1] not in refs[ref[0]]:
        raise revision_not_found(repo.id, revision)  # commit ids included: only refs move
    if ref[0] == "tags":
        raise HubError(400, f"Cannot commit to tag {ref[1]!r}: commit to a branch or a pull request.")
    return ref


def apply_operations(files: dict[str, TreeEntry], operations: Iterable[Operation]) -> dict[str, TreeEntry]:
    """The tree after ``operations``; deleting a path that is a folder deletes the folder."""
    files = dict(files)
    for op in operations:
        if isinstance(op, AddFile):
            files[op.path] = op.entry
            continue
        path = op.path.rstrip("/")
        if isinstance(op, DeleteFile) and path in files:
            del files[path]
            continue
        doomed = [p for p in files if p.startswith(path + "/")]
        if not doomed:
            raise entry_not_found("", op.path)
        for p in doomed:
            del files[p]
    return files


def commit(
    storage: HubStorage,
    repo: Repo,
    revision: str,
    operations: list[Operation],
    *,
    title: str,
    message: str,
    author: str,
    parent_commit: str | None = None,
    lfs_threshold: int | None = None,
) -> Commit:
    """Apply ``operations`` on top of the branch or pull request ``revision`` and move it."""
    with storage.lock(repo):
        table, key = writable_ref(storage, repo, revision)
        refs = storage.refs(repo)
        head = storage.read_commit(repo, refs[table][key])
        if parent_commit and parent_commit != head.id:
            raise HubError(
                412,
                "A commit has happened since. Please refresh and try again. "
                "(The branch was updated since you opened this page. Please refresh and try again.)",
            )
        files = apply_operations(head.files, operations)
        rule = lfs_rule(storage, files, lfs_threshold)
        added = {op.path for op in operations if isinstance(op, AddFile)}
        for path in added & files.keys():
            entry = files[path]
            if not storage.blobs.has(entry.sha256, entry.size):  # never point at a blob that is not there
                raise HubError(422, f"The content of {path!r} is missing: upload it before committing.")
            files[path] = entry.as_lfs(entry.lfs or rule.is_lfs(path, entry.size))
        new = Commit.create(head.id, title, message, author, now_iso(), files)
        storage.write_commit(repo, new)
        refs[table][key] = new.id
        storage.write_refs(repo, refs)
        return new


def super_squash(storage: HubStorage, repo: Repo, revision: str, *, message: str, author: str) -> Commit:
    """Replace the history of a branch or pull request by one commit holding its current files."""
    with storage.lock(repo):
        table, key = writable_ref(storage, repo, revision)
        refs = storage.refs(repo)
        head = storage.read_commit(repo, refs[table][key])
        new = Commit.create(None, message, "", author, now_iso(), head.files)
        storage.write_commit(repo, new)
        refs[table][key] = new.id
        storage.write_refs(repo, refs)
        return new


def all_refs(refs: dict[str, dict[str, str]]) -> list[tuple[str, str, str]]:
    """``(table, key, display name)`` of every ref: ``main``, the other branches, tags, pull requests."""
    names = {"branches": "refs/heads/{}", "tags": "refs/tags/{}", "pulls": "refs/pr/{}"}
    order = {"branches": lambda k: (k != "main", k), "tags": lambda k: k, "pulls": int}
    return [(t, k, names[t].format(k)) for t in ("branches", "tags", "pulls") for k in sorted(refs[t], key=order[t])]


def rewrite_without(storage: HubStorage, repo: Repo, sha256s: set[str]) -> int:
    """Rewrite every ref's history without the files whose content is in ``sha256s``.

    Commits that never held such a file keep their ids; the others (and their descendants) get
    new ones. Returns how many commits were rewritten.
    """
    with storage.lock(repo):
        refs = storage.refs(repo)
        rewritten: dict[str, str] = {}

        def rewrite(commit_id: str) -> str:
            if commit_id in rewritten:
                return rewritten[commit_id]
            chain = []  # walk down to the first commit already known (iteratively: histories are long)
            current: str | None = commit_id
            while current is not None and current not in rewritten:
                c = storage.read_commit(repo, current)
                chain.append(c)
                current = c.parent
            for c in reversed(chain):
                parent = rewritten.get(c.parent) if c.parent else None
                files = {p: e for p, e in c.files.items() if e.sha256 not in sha256s}
                if parent == c.parent and len(files) == len(c.files):
                    rewritten[c.id] = c.id
                    continue
                new = Commit.create(parent, c.title, c.message, c.author, c.date, files)
                storage.write_commit(repo, new)
                rewritten[c.id] = new.id
            return rewritten[commit_id]

        for table, key, _ in all_refs(refs):
            refs[table][key] = rewrite(refs[table][key])
        storage.write_refs(repo, refs)
        return sum(1 for old, new in rewritten.items() if old != new)


@dataclass(frozen=True)
class LfsObject:
    """One LFS object of a repo, as ``GET lfs-files`` lists it."""

    sha256: str
    size: int
    filename: str
    ref: str
    pushed_at: str
    pointer_oid: str

    def to_json(self) -> dict[str, Any]:
        return {
            "fileOid": self.sha256,
            "oid": self.pointer_oid,
            "filename": self.filename,
            "size": self.size,
            "ref": self.ref,
            "pushedAt": self.pushed_at,
        }


def lfs_objects(storage: HubStorage, repo: Repo) -> list[LfsObject]:
    """Every LFS object reachable from a ref, once each, with the ref it was found on first."""
    refs = storage.refs(repo)
    found: dict[str, LfsObject] = {}
    seen: set[str] = set()
    for table, key, name in all_refs(refs):
        for c in storage.history(repo, storage.read_commit(repo, refs[table][key])):
            if c.id in seen:
                break
            seen.add(c.id)
            for path, entry in c.files.items():
                if entry.lfs and (entry.sha256 not in found or found[entry.sha256].ref == name):
                    found[entry.sha256] = LfsObject(entry.sha256, entry.size, path, name, c.date, entry.tree_oid)
    return sorted(found.values(), key=lambda o: (o.pushed_at, o.filename))
