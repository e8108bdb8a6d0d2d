"""The data model of the local Hub: tree entries, commits, repos, commit operations, LFS pointers.

These are plain values; :mod:`.storage` reads and writes them, the endpoints turn them into the
JSON shapes the client parses. A commit's id is derived here (:meth:`Commit.create`) from what the
commit *is*, so the same release pushed to two hubs gets the same id.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

LFS_POINTER_VERSION = "https://git-lfs.github.com/spec/v1"


def git_blob_sha1(data: bytes) -> str:
    """The git object id of a blob, which the client compares for ``regular`` files."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def lfs_pointer(sha256: str, size: int) -> bytes:
    """The git-LFS pointer file that stands for a file of ``size`` bytes hashing to ``sha256``."""
    return f"version {LFS_POINTER_VERSION}\noid sha256:{sha256}\nsize {size}\n".encode()


@dataclass(frozen=True)
class TreeEntry:
    """One file in a commit's tree: its content (sha256, size, git sha1) and how git stores it.

    ``lfs`` files appear in the tree as LFS pointers (as on the Hub): their tree oid is the
    pointer's, their ETag the sha256. ``git_sha1`` is the content's git blob id (None only for LFS
    files stored before it was recorded).
    """

    sha256: str
    size: int
    git_sha1: str | None
    lfs: bool

    @property
    def tree_oid(self) -> str:
        """The git blob id the tree shows: the pointer's for LFS files, as on the Hub."""
        if self.lfs:
            return git_blob_sha1(lfs_pointer(self.sha256, self.size))
        return self.git_sha1 or ""

    @property
    def pointer_size(self) -> int:
        """The size of the LFS pointer file (the tree's ``lfs.pointerSize``)."""
        return len(lfs_pointer(self.sha256, self.size))

    @property
    def etag(self) -> str:
        return self.sha256 if self.lfs else (self.git_sha1 or self.sha256)

    def as_lfs(self, lfs: bool) -> TreeEntry:
        return self if self.lfs == lfs else TreeEntry(self.sha256, self.size, self.git_sha1, lfs)

    def to_json(self) -> dict[str, Any]:
        return {"sha256": self.sha256, "size": self.size, "oid": self.git_sha1, "lfs": self.lfs}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> TreeEntry:
        return cls(sha256=d["sha256"], size=int(d["size"]), git_sha1=d.get("oid"), lfs=bool(d.get("lfs")))


@dataclass
class Commit:
    id: str
    parent: str | None
    title: str
    message: str
    author: str
    date: str
    files: dict[str, TreeEntry] = field(default_factory=dict)

    @classmethod
    def create(
        cls, parent: str | None, title: str, message: str, author: str, date: str, files: dict[str, TreeEntry]
    ) -> Commit:
        """A new commit whose id hashes its parent, message, author and file contents, not its date.

        The same release pushed to two fresh hubs then gets the same commit id, so a registry entry
        that pins a commit stays true for every hub that holds it (the bundled demo index relies on
        this), whatever each hub's LFS settings: only the contents (sha256 and size) count, not
        whether a file is stored through LFS. Two identical commits on the same parent are one.
        The initial commit's message names the repo, so repos never share a root commit.
        """
        body = json.dumps(
            [parent, title, message, author, {p: [e.sha256, e.size] for p, e in sorted(files.items())}],
            sort_keys=True,
        )
        commit_id = hashlib.sha1(body.encode("utf-8", "surrogatepass")).hexdigest()
        return cls(commit_id, parent, title, message, author, date, dict(files))

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
        files = {p: TreeEntry.from_json(e) for p, e in d["files"].items()}
        return cls(d["id"], d.get("parent"), d["title"], d["message"], d["author"], d["date"], files)


#: Values of a repo's ``gated`` setting.
GATED_VALUES = (False, "auto", "manual")


@dataclass(frozen=True)
class Repo:
    type: str  # plural: models, datasets, spaces
    id: str  # ns/name, with the case it was created with
    path: Path
    private: bool
    created_at: str
    gated: bool | str = False  # False, "auto" or "manual"

    @property
    def namespace(self) -> str:
        return self.id.split("/", 1)[0]

    @property
    def name(self) -> str:
        return self.id.split("/", 1)[1]

    @property
    def singular_type(self) -> str:
        return self.type[:-1]

    def meta_json(self) -> dict[str, Any]:
        return {"id": self.id, "private": self.private, "created_at": self.created_at, "gated": self.gated}


# Operations a commit applies, in order.
@dataclass(frozen=True)
class AddFile:
    path: str
    entry: TreeEntry
    via_lfs: bool = False  # sent as an LFS pointer (``lfsFile``), not inline


@dataclass(frozen=True)
class DeleteFile:
    path: str


@dataclass(frozen=True)
class DeleteFolder:
    path: str


Operation = AddFile | DeleteFile | DeleteFolder
