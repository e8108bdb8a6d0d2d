"""The client's typed records: what crosses a module boundary, and how each is written to its file.

Every record is a frozen dataclass. A record that lives in a file has one ``from_dict``/``to_dict``
pair per file format, and nothing else reads or writes that format's keys: :class:`FileEntry`
(every file list), :class:`IndexEntry` (registry index, JSON, snake_case), :class:`InstallRecord`
(store record ``<commit>.json``), :class:`LockEntry` (lock file, TOML, kebab-case through
:func:`toml_key`, the one mapper) and :class:`MethodStamp` (the lock's ``method`` table and the
manifest's ``plugin`` object). The files are defined by the JSON Schemas in ``schemas/``; these
serializers write exactly what they accept, and a lock read and written again is byte-identical.
Pure data: no I/O, no network, standard library only.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any


def toml_key(name: str) -> str:
    """The lock file's spelling of a field name: ``repo_id`` -> ``repo-id`` (pip's ``_toml_key``)."""
    return name.replace("_", "-")


def _toml_table(**values: Any) -> dict[str, Any]:
    """A lock table from keyword fields, in the order given, None values left out."""
    return {toml_key(k): v for k, v in values.items() if v is not None}


def _from_toml(table: Mapping[str, Any]) -> dict[str, Any]:
    """The inverse of :func:`_toml_table`: ``plugin-version`` -> ``plugin_version``."""
    return {k.replace("-", "_"): v for k, v in table.items()}


# --- files ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FileEntry:
    """One file of an adapter: relative POSIX path, size and sha256.

    ``sha256`` is None only while a Hub file's hash is not known yet (a non-LFS file, checked
    against ``git_oid`` while it downloads). ``expected_from`` says who vouches for the size and
    hash (``index``, ``lock``, ``hub-lfs``, ``hub-git``, ``local``, ``store``); it and ``git_oid``
    are provenance, not identity, so two entries are equal when path, size and sha256 are.
    """

    path: str
    size: int
    sha256: str | None
    expected_from: str = field(default="", compare=False)
    git_oid: str | None = field(default=None, compare=False)

    def to_dict(self) -> dict[str, Any]:
        """``{"path", "size", "sha256"}``: the shape of every file list on disk."""
        return {"path": self.path, "size": self.size, "sha256": self.sha256}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, expected_from: str = "") -> FileEntry:
        return cls(data["path"], int(data["size"]), data.get("sha256"), expected_from, data.get("git_oid"))

    def vouched_by(self, expected_from: str) -> FileEntry:
        return replace(self, expected_from=expected_from)


def files_from(items: Iterable[Mapping[str, Any]], *, expected_from: str = "") -> tuple[FileEntry, ...]:
    """File entries from a file format's list, sorted by path."""
    return tuple(sorted((FileEntry.from_dict(f, expected_from=expected_from) for f in items), key=lambda f: f.path))


def files_to(files: Iterable[FileEntry]) -> list[dict[str, Any]]:
    return [f.to_dict() for f in sorted(files, key=lambda f: f.path)]


# --- which plugin made an adapter -----------------------------------------------------------------


@dataclass(frozen=True)
class MethodStamp:
    """The method of an adapter and the plugin that provides it, as the lock and the manifest record it.

    ``name`` is the method (``lora``), ``plugin`` the plugin's registered name
    (``adapterhub.default_plugins.lora``), ``distribution``/``version`` the package that ships it.
    A folder no installed plugin claims is stamped ``MethodStamp("unknown")``.
    """

    name: str
    plugin: str | None = None
    distribution: str | None = None
    version: str | None = None

    def to_lock(self) -> dict[str, str]:
        """The lock's (and store record's) ``method`` table: ``{name, plugin, plugin-version}``."""
        return _toml_table(name=self.name, plugin=self.plugin, plugin_version=self.version)

    @classmethod
    def from_lock(cls, table: Mapping[str, Any]) -> MethodStamp:
        data = _from_toml(table)
        return cls(data["name"], data.get("plugin"), None, data.get("plugin_version"))

    def to_manifest(self) -> dict[str, str]:
        """The manifest's ``plugin`` object: ``{name, distribution, version}`` (all required there)."""
        return {"name": self.plugin or "", "distribution": self.distribution or "", "version": self.version or ""}

    @classmethod
    def from_manifest(cls, method: str, plugin: Mapping[str, Any]) -> MethodStamp:
        return cls(method, plugin.get("name"), plugin.get("distribution"), plugin.get("version"))


# --- where an install comes from ------------------------------------------------------------------


@dataclass(frozen=True)
class Source:
    """A Hub repo at a 40-hex commit (``type="hf"``), or a local folder with its content digest.

    The store record keeps a local folder's absolute path; the lock keeps it relative to the lock
    file (see :mod:`adapterhub.client.lockfile`).
    """

    type: str
    repo_id: str | None = None
    revision: str | None = None
    path: str | None = None
    digest: str | None = None

    @classmethod
    def hub(cls, repo_id: str, revision: str) -> Source:
        return cls("hf", repo_id=repo_id, revision=revision)

    @classmethod
    def local(cls, path: str, digest: str) -> Source:
        return cls("local", path=path, digest=digest)

    def to_dict(self) -> dict[str, Any]:
        """The store record's (and ``--json`` output's) snake_case object."""
        return {f.name: getattr(self, f.name) for f in fields(self) if getattr(self, f.name) is not None}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Source:
        return cls(**{f.name: data.get(f.name) for f in fields(cls)})

    def to_lock(self) -> dict[str, Any]:
        return _toml_table(**self.to_dict())

    @classmethod
    def from_lock(cls, table: Mapping[str, Any]) -> Source:
        return cls.from_dict(_from_toml(table))


# --- the registry index ---------------------------------------------------------------------------


@dataclass(frozen=True)
class IndexProvenance:
    """Which index resolved a registry name: its URL (``bundled``, hf://, http(s), or an absolute
    local path when ``is_local``) and ``sha256:<hex>`` of its content."""

    url: str
    digest: str
    is_local: bool = False


@dataclass(frozen=True)
class BaseModelRef:
    repo_id: str
    revision: str | None = None
    model_type: str | None = None


@dataclass(frozen=True)
class IndexVersion:
    """One published version of a registry entry, pinned to a Hub commit."""

    version: str
    repo_id: str
    revision: str
    files: tuple[FileEntry, ...]
    tag: str | None = None
    published: str | None = None
    yanked: bool = False
    yanked_reason: str | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "source": {"type": "hf", "repo_id": self.repo_id, "tag": self.tag, "revision": self.revision},
            "files": files_to(self.files),
            "published": self.published,
            "yanked": self.yanked,
        }
        if self.yanked_reason is not None:
            out["yanked_reason"] = self.yanked_reason
        return out

    @classmethod
    def from_dict(cls, version: str, data: Mapping[str, Any]) -> IndexVersion:
        source = data["source"]
        return cls(
            version=version, repo_id=source["repo_id"], revision=source["revision"],
            files=tuple(FileEntry.from_dict(f, expected_from="index") for f in data["files"]),
            tag=source.get("tag"), published=data.get("published"), yanked=bool(data.get("yanked")),
            yanked_reason=data.get("yanked_reason"),
        )


@dataclass(frozen=True)
class IndexEntry:
    """One adapter in the registry index (``schemas/index-entry.schema.json``).

    ``versions`` maps each version string to its :class:`IndexVersion`; ``extensions`` keeps the
    ``x-*`` keys the schema allows, so an entry written back loses nothing.
    """

    name: str
    task: str
    method: str
    base_model: BaseModelRef
    versions: Mapping[str, IndexVersion]
    subtask: str | None = None
    org: str | None = None
    license: str | None = None
    description: str | None = None
    tags: tuple[str, ...] = ()
    extensions: Mapping[str, Any] = field(default_factory=dict)

    @property
    def namespace(self) -> str:
        return self.name.split("/")[0]

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "schema_version": 1, "name": self.name, "namespace": self.namespace, "task": self.task,
            "subtask": self.subtask, "method": self.method,
            "base_model": {"repo_id": self.base_model.repo_id, "revision": self.base_model.revision,
                           "model_type": self.base_model.model_type},
            "license": self.license, "description": self.description, "tags": list(self.tags),
            "versions": {v: info.to_dict() for v, info in self.versions.items()},
        }
        if self.org is not None:
            out["org"] = self.org
        return {**out, **self.extensions}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> IndexEntry:
        """An entry that passed the schema (the index reader validates before it builds records)."""
        base = data["base_model"]
        return cls(
            name=data["name"], task=data["task"], method=data["method"],
            base_model=BaseModelRef(base["repo_id"], base.get("revision"), base.get("model_type")),
            versions={v: IndexVersion.from_dict(v, info) for v, info in data["versions"].items()},
            subtask=data.get("subtask"), org=data.get("org"), license=data.get("license"),
            description=data.get("description"), tags=tuple(data.get("tags") or ()),
            extensions={k: v for k, v in data.items() if k.startswith("x-")},
        )


# --- a request, pinned ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Resolution:
    """One request pinned to a commit, with what each file must hash to when that is known.

    ``kind`` is ``registry`` (a name in the index), ``hf`` (a Hub repo), ``local`` (a folder) or
    ``lock`` (an entry of a lock file). ``commit`` is the 40-hex Hub commit, or for a folder the
    first 40 hex of its content ``digest``; ``revision`` is what the user asked for (tag or
    branch), kept so that an offline install can resolve it again.
    """

    requested: str
    kind: str
    key: str
    commit: str
    files: tuple[FileEntry, ...]
    repo_id: str | None = None
    name: str | None = None
    version: str | None = None
    revision: str | None = None
    local_path: Path | None = None
    digest: str | None = None
    notes: tuple[str, ...] = ()
    registry: IndexProvenance | None = None

    @property
    def label(self) -> str:
        if self.name:
            return f"{self.name} {self.version}"
        if self.repo_id:
            return f"{self.repo_id}@{self.commit[:12]}"
        return str(self.local_path)

    @property
    def source(self) -> Source:
        if self.kind == "local":
            return Source.local(str(self.local_path), self.digest or "")
        return Source.hub(self.repo_id or "", self.commit)


# --- the store and the lock -----------------------------------------------------------------------


@dataclass(frozen=True)
class Alias:
    """A registry name and version that resolved to an install."""

    name: str
    version: str


@dataclass(frozen=True)
class InstallRecord:
    """What is installed at ``installed-v1/<key>/<commit>/`` (the JSON record next to it).

    ``revisions`` are the Hub revisions ("" = default branch) that resolved to this commit, so an
    offline install can resolve them again; ``installed_seq`` orders installs (newest wins).
    """

    key: str
    commit: str
    files: tuple[FileEntry, ...]
    method: MethodStamp
    source: Source
    directory: Path
    names: tuple[Alias, ...] = ()
    revisions: tuple[str, ...] = ()
    installed_by: str = ""
    installed_seq: int = 0
    notes: tuple[str, ...] = ()
    record_version: int = 1

    @property
    def display_name(self) -> str:
        if self.names:
            return self.names[0].name
        return self.source.repo_id or self.source.path or self.key

    @property
    def size(self) -> int:
        return sum(f.size for f in self.files)

    def matches(self, query: str) -> bool:
        """Whether ``query`` (registry name, name@version, repo id, key) names this install."""
        name, _, version = query.partition("@")
        if any(a.name == name and (not version or a.version == version) for a in self.names):
            return True
        if self.source.repo_id == name and (not version or version in (self.commit, *self.revisions)):
            return True
        return query in (self.key, f"{self.key}/{self.commit}")

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "record_version": self.record_version, "key": self.key, "commit": self.commit,
            "files": files_to(self.files), "method": self.method.to_lock(),
            "names": [{"name": a.name, "version": a.version} for a in self.names],
            "revisions": list(self.revisions), "installed_by": self.installed_by,
            "source": self.source.to_dict(), "installed_seq": self.installed_seq,
        }
        if self.notes:
            out["notes"] = list(self.notes)
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], directory: Path) -> InstallRecord:
        return cls(
            key=data["key"], commit=data["commit"], files=files_from(data["files"], expected_from="store"),
            method=MethodStamp.from_lock(data.get("method") or {"name": "unknown"}),
            source=Source.from_dict(data["source"]), directory=directory,
            names=tuple(Alias(a["name"], a.get("version", "")) for a in data.get("names", [])),
            revisions=tuple(data.get("revisions", [])), installed_by=data.get("installed_by", ""),
            installed_seq=int(data.get("installed_seq", 0)), notes=tuple(data.get("notes", [])),
            record_version=int(data.get("record_version", 1)),
        )


@dataclass(frozen=True)
class LockRegistry:
    """``registry = {url, digest}``: the index that resolved a locked name (url never absolute)."""

    url: str
    digest: str


@dataclass(frozen=True)
class LockEntry:
    """One ``[[adapter]]`` of a lock file (``schemas/lock.schema.json``)."""

    requested: str
    name: str
    method: MethodStamp
    source: Source
    files: tuple[FileEntry, ...]
    version: str | None = None
    registry: LockRegistry | None = None

    def to_dict(self) -> dict[str, Any]:
        """The TOML table, keys kebab-case through :func:`toml_key`, in the lock's key order."""
        table = _toml_table(requested=self.requested, name=self.name, version=self.version)
        table["method"] = self.method.to_lock()
        table["source"] = self.source.to_lock()
        if self.registry is not None:
            table["registry"] = _toml_table(url=self.registry.url, digest=self.registry.digest)
        table["files"] = files_to(self.files)
        return table

    @classmethod
    def from_dict(cls, table: Mapping[str, Any]) -> LockEntry:
        data = _from_toml(table)
        registry = data.get("registry")
        return cls(
            requested=data["requested"], name=data["name"], method=MethodStamp.from_lock(data["method"]),
            source=Source.from_lock(data["source"]), files=files_from(data["files"], expected_from="lock"),
            version=data.get("version"),
            registry=LockRegistry(registry["url"], registry["digest"]) if registry else None,
        )
