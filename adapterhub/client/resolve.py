"""Turn a parsed request into exactly one pinned thing: (repo id, 40-hex commit, expected files).

Rules: a registry name wins only if it is in the index; a bare name must match exactly one entry;
anything ambiguous, unknown or unsatisfiable is an error that lists the candidates. There is never
a silent fallback from one kind of source to another.
"""

from __future__ import annotations

import difflib
import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import OfflineError, ResolutionError, UnsafePathError, UsageError
from .hashing import sha256_file
from .index import Index
from .paths import check_relpath
from .refs import SourceRef
from ..settings import Settings
from .store import Store, key_for_local, key_for_repo

_SPEC_CHARS = set("<>=!~,*")


@dataclass
class Resolved:
    """One adapter pinned to a commit, with what each file must hash to when that is known."""

    requested: str
    kind: str  # "registry", "hf" or "local"
    key: str
    commit: str  # 40-hex Hub commit, or the first 40 hex of a local dir's content digest
    files: list[dict[str, Any]]  # {"path", "size", "sha256" | None, "expected_from", ["git_oid"]}
    repo_id: str | None = None
    name: str | None = None  # registry name
    version: str | None = None
    revision: str | None = None  # what the user asked for (tag/branch), for offline re-resolution
    local_path: Path | None = None
    digest: str | None = None  # local dirs: sha256 over (path, sha256) pairs
    notes: list[str] = field(default_factory=list)
    registry: dict[str, Any] | None = None  # the index that resolved a registry name (Index.provenance)

    @property
    def label(self) -> str:
        if self.name:
            return f"{self.name} {self.version}"
        if self.repo_id:
            return f"{self.repo_id}@{self.commit[:12]}"
        return str(self.local_path)


def _similar(name: str, candidates: list[str]) -> list[str]:
    short = {c.split("/")[-1]: c for c in candidates}
    found = difflib.get_close_matches(name, candidates, n=5, cutoff=0.5)
    found += [short[s] for s in difflib.get_close_matches(name.split("/")[-1], list(short), n=5, cutoff=0.6)]
    return sorted(set(found))


def _looks_like_spec(spec: str) -> bool:
    return any(c in _SPEC_CHARS for c in spec)


def select_version(entry: dict[str, Any], spec: str | None, *, pre: bool = False, requested: str = "") -> str:
    """The newest version of ``entry`` matching ``spec`` (skipping yanked ones unless pinned exactly)."""
    from packaging.version import Version

    versions = entry["versions"]
    available = sorted(versions, key=Version, reverse=True)

    def describe() -> str:
        return ", ".join(
            v + (" (yanked)" if versions[v].get("yanked") else "") + (" (pre-release)" if Version(v).is_prerelease else "")
            for v in available
        )

    exact: str | None = None
    if spec and _is_version(spec.removeprefix("==")):
        exact = str(Version(spec.removeprefix("==")))
    if exact is not None:
        for v in available:
            if Version(v) == Version(exact):
                return v  # an exact pin may name a yanked or pre-release version (like pip)
        raise ResolutionError(
            f"{requested or entry['name']}: no version {exact} in the index",
            hint=f"available versions of {entry['name']}: {describe()}",
        )
    if not spec:  # the common case; packaging.specifiers costs ~9 ms to import
        for v in available:
            if not versions[v].get("yanked") and (pre or not Version(v).is_prerelease):
                return v
        raise ResolutionError(
            f"{requested or entry['name']}: no non-yanked version matches (any)"
            + ("" if pre else " (pre-releases are skipped unless you pass --pre)"),
            hint=f"available versions of {entry['name']}: {describe()}",
        )
    from packaging.specifiers import InvalidSpecifier, SpecifierSet

    try:
        specifier = SpecifierSet(spec)
    except InvalidSpecifier:
        raise UsageError(
            f"{requested}: {spec!r} is not a PEP 440 version or specifier",
            hint="examples: name@1.2.0, name@>=1,<2, name@~=1.4",
        ) from None
    # Like pip: a specifier that itself names a pre-release lets pre-releases in.
    explicit_pre = pre or any(_is_version(s.version) and Version(s.version).is_prerelease for s in specifier)
    for v in available:
        if versions[v].get("yanked"):
            continue
        if specifier.contains(Version(v), prereleases=explicit_pre):
            return v
    raise ResolutionError(
        f"{requested or entry['name']}: no non-yanked version matches {spec or '(any)'}"
        + ("" if explicit_pre else " (pre-releases are skipped unless you pass --pre)"),
        hint=f"available versions of {entry['name']}: {describe()}",
    )


def _is_version(text: str) -> bool:
    from packaging.version import InvalidVersion, Version

    try:
        Version(text)
    except InvalidVersion:
        return False
    return True


def _registry(entry: dict[str, Any], ref: SourceRef, *, pre: bool) -> Resolved:
    version = select_version(entry, ref.spec, pre=pre, requested=ref.raw)
    info = entry["versions"][version]
    source = info["source"]
    files = [
        {"path": check_relpath(f["path"], where=f"index entry {entry['name']} {version}"),
         "size": f["size"], "sha256": f["sha256"], "expected_from": "index"}
        for f in info["files"]
    ]
    notes = [f"{entry['name']} {version} is yanked: {info.get('yanked_reason') or 'no reason given'}"] if info.get("yanked") else []
    return Resolved(
        requested=ref.raw, kind="registry", key=key_for_repo(source["repo_id"]), commit=source["revision"],
        files=sorted(files, key=lambda f: f["path"]), repo_id=source["repo_id"], name=entry["name"],
        version=version, revision=source.get("tag"), notes=notes,
    )


def _hub(ref: SourceRef, repo_id: str, settings: Settings, store: Store) -> Resolved:
    from . import remote as download

    revision = ref.spec
    key = key_for_repo(repo_id)
    if settings.offline:
        # Offline, a revision can only be resolved through what an earlier install recorded.
        wanted = revision or ""  # "" = the default branch, as recorded by an earlier install
        for record in sorted(store.records(), key=lambda r: r.data.get("installed_seq", 0), reverse=True):
            if record.key == key and wanted in (record.commit, *record.data.get("revisions", [])):
                return Resolved(ref.raw, "hf", key, record.commit, [dict(f, expected_from="store") for f in record.files],
                                repo_id=repo_id, revision=revision)
        raise OfflineError(
            f"{ref.raw}: offline mode is on and the store has no install of {repo_id}@{revision or 'main'}",
            hint="install it once online, or pin it in a lock file and use `adapterhub sync`",
        )
    commit, remote_files = download.resolve_snapshot(settings, repo_id, revision)  # one Hub call
    files = []
    for remote in remote_files:
        files.append({
            "path": remote.path, "size": remote.size, "sha256": remote.lfs_sha256,
            "expected_from": "hub-lfs" if remote.lfs_sha256 else "hub-git", "git_oid": remote.git_oid,
        })
    if not files:
        raise ResolutionError(f"{repo_id}@{commit[:12]}: the repository has no files")
    return Resolved(ref.raw, "hf", key, commit, files, repo_id=repo_id, revision=revision)


def local_files(root: Path) -> list[dict[str, Any]]:
    """Files of a local adapter dir with sha256; symlinks that leave the dir are refused."""
    real_root = os.path.realpath(root)
    files = []
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root).as_posix()
        if any(part.startswith(".") for part in rel.split("/")) and not path.is_file():
            continue
        if path.is_symlink():
            target = os.path.realpath(path)
            if os.path.commonpath([real_root, target]) != real_root:
                raise UnsafePathError(f"{path}: symlink points outside the adapter directory ({target})",
                                      hint="copy the file into the directory instead of linking to it")
        if path.is_file() and not rel.startswith(".cache/"):
            files.append({"path": check_relpath(rel, where=str(root)), "size": path.stat().st_size,
                          "sha256": sha256_file(path), "expected_from": "local"})
    if not files:
        raise ResolutionError(f"{root}: the directory has no files")
    return files


def content_digest(files: list[dict[str, Any]]) -> str:
    h = hashlib.sha256()
    for f in sorted(files, key=lambda f: f["path"]):
        h.update(f"{f['path']}\0{f['size']}\0{f['sha256']}\n".encode())
    return h.hexdigest()


def _check_looks_like_adapter(raw: str, root: Path) -> None:
    """Refuse a folder that is plainly not an adapter before hashing everything under it.

    A folder with an ``adapter_config.json`` is accepted even when no installed method claims it
    (recorded as method "unknown"); without one, a method plugin must claim it.
    """
    if (root / "adapter_config.json").is_file():
        return
    from ..errors import AdapterFormatError, NoMethodClaimsError
    from ..methods import detect_method

    try:
        detect_method(root)
    except (NoMethodClaimsError, AdapterFormatError):
        raise ResolutionError(
            f"{raw}: not an adapter folder ({root} has no adapter_config.json and no method claims it)",
            hint="give the folder that save_pretrained / save_adapter wrote; `adapterhub methods` lists "
            "the methods installed",
        ) from None


def _local(ref: SourceRef) -> Resolved:
    root = Path(ref.name).expanduser().resolve()
    if not root.is_dir():
        raise ResolutionError(f"{ref.raw}: no such directory")
    _check_looks_like_adapter(ref.raw, root)
    files = local_files(root)
    digest = content_digest(files)
    return Resolved(ref.raw, "local", key_for_local(root.name), digest[:40], files, local_path=root, digest=digest)


def resolve(ref: SourceRef, index: Index, settings: Settings, store: Store, *, pre: bool = False) -> Resolved:
    """Pin one request (see the module docstring for the rules)."""
    if ref.kind == "local":
        return _local(ref)
    if ref.kind == "hf":
        return _hub(ref, ref.name, settings, store)
    name = ref.name
    local_twin = Path(name).is_dir()
    if "/" not in name:
        matches = [n for n in index.names() if n.split("/")[1] == name]
        if len(matches) > 1:
            raise ResolutionError(
                f"{ref.raw!r} is ambiguous: it matches {len(matches)} registry entries",
                hint="candidates: " + ", ".join(matches) + "; write the full <namespace>/<name>",
            )
        if not matches:
            raise ResolutionError(
                f"{ref.raw!r} is not in the registry index ({index.source})",
                hint="similar names: " + (", ".join(_similar(name, index.names())) or "(none)")
                + "; a Hub repo id needs its namespace (org/repo)",
            )
        name = matches[0]
    entry = index.get(name)
    if entry is not None:
        if local_twin:
            raise ResolutionError(
                f"{ref.raw!r} is ambiguous: registry entry {name!r} and local directory ./{ref.name}",
                hint=f"candidates: {name} (registry) -> `adapterhub install {name}` with no such directory here, "
                f"./{ref.name} (local) -> `adapterhub install ./{ref.name}`, or hf://{ref.name} (Hub)",
            )
        resolved = _registry(entry, ref, pre=pre)
        resolved.registry = index.provenance()
        return resolved
    if local_twin:
        raise ResolutionError(
            f"{ref.raw!r} is ambiguous: Hub repo {ref.name!r} or local directory ./{ref.name}",
            hint=f"write hf://{ref.name} for the Hub repo or ./{ref.name} for the directory",
        )
    if ref.spec and _looks_like_spec(ref.spec):
        similar = _similar(name, index.names())
        raise ResolutionError(
            f"{ref.raw!r}: {name!r} is not in the registry index ({index.source}), and version specs "
            "only apply to registry names",
            hint=("registry names like it: " + ", ".join(similar)) if similar
            else "for a Hub repo, give a revision (branch, tag or commit): org/repo@v1",
        )
    try:
        return _hub(ref, name, settings, store)
    except ResolutionError as exc:
        # Only near-certain typos: any repo id loosely resembles some registry name.
        similar = difflib.get_close_matches(name, index.names(), n=3, cutoff=0.8)
        if not similar or "repository not found" not in exc.message:
            raise
        raise ResolutionError(
            f"{ref.raw!r}: no such registry name in {index.source}, and Hub repo {name} not found on {settings.public_endpoint}",
            hint=f"did you mean {' or '.join(similar)}? (registry names; `adapterhub search WORD` finds more)",
        ) from None
