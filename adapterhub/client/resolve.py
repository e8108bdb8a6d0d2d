"""Turn a parsed request into exactly one pinned thing: (repo id, 40-hex commit, expected files).

Rules: a registry name wins only if it is in the index; a bare name must match exactly one entry;
anything ambiguous, unknown or unsatisfiable is an error that lists the candidates. There is never
a silent fallback from one kind of source to another.
"""

from __future__ import annotations

import difflib
import hashlib
import re
from pathlib import Path

from ..errors import OfflineError, ResolutionError, UnsafePathError, UsageError
from ..layout import adapter_files, links_leaving
from ..settings import Settings
from .hashing import sha256_file
from .index import Index
from .models import FileEntry, IndexEntry, Resolution
from .paths import check_relpath
from .refs import SourceRef
from .store import Store, key_for_local, key_for_repo

_SPEC_CHARS = set("<>=!~^,*")


def _similar(name: str, candidates: list[str]) -> list[str]:
    """Names close to ``name``: typos of the whole or the short name, and names that contain it as a
    word (``vader`` -> ``sentiment/minilm-vader``)."""
    short = {c.split("/")[-1]: c for c in candidates}
    found = difflib.get_close_matches(name, candidates, n=5, cutoff=0.5)
    word = name.split("/")[-1].lower()
    found += [short[s] for s in difflib.get_close_matches(word, list(short), n=5, cutoff=0.6)]
    found += [c for c in candidates if word and word in re.split(r"[/._-]", c.lower())]
    return sorted(set(found))


def _looks_like_spec(spec: str) -> bool:
    return any(c in _SPEC_CHARS for c in spec)


def select_version(entry: IndexEntry, spec: str | None, *, pre: bool = False, requested: str = "") -> str:
    """The newest version of ``entry`` matching ``spec`` (skipping yanked ones unless pinned exactly)."""
    from packaging.version import Version

    versions = entry.versions
    available = sorted(versions, key=Version, reverse=True)

    def describe() -> str:
        return ", ".join(
            v + (" (yanked)" if versions[v].yanked else "") + (" (pre-release)" if Version(v).is_prerelease else "")
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
            f"{requested or entry.name}: no version {exact} in the index",
            hint=f"available versions of {entry.name}: {describe()}",
        )
    if not spec:  # the common case; packaging.specifiers costs ~9 ms to import
        for v in available:
            if not versions[v].yanked and (pre or not Version(v).is_prerelease):
                return v
        raise ResolutionError(
            f"{requested or entry.name}: no non-yanked version matches (any)"
            + ("" if pre else " (pre-releases are skipped unless you pass --pre)"),
            hint=f"available versions of {entry.name}: {describe()}",
        )
    from packaging.specifiers import InvalidSpecifier, SpecifierSet

    from .specs import SPEC_EXAMPLES, expand_spec

    try:
        specifier = SpecifierSet(expand_spec(spec))
    except InvalidSpecifier:
        raise UsageError(
            f"{requested}: {spec!r} is not a version or a version spec (PEP 440, or ^/~ ranges)",
            hint=SPEC_EXAMPLES,
        ) from None
    # Like pip: a specifier that itself names a pre-release lets pre-releases in.
    explicit_pre = pre or any(_is_version(s.version) and Version(s.version).is_prerelease for s in specifier)
    for v in available:
        if versions[v].yanked:
            continue
        if specifier.contains(Version(v), prereleases=explicit_pre):
            return v
    raise ResolutionError(
        f"{requested or entry.name}: no non-yanked version matches {spec or '(any)'}"
        + ("" if explicit_pre else " (pre-releases are skipped unless you pass --pre)"),
        hint=f"available versions of {entry.name}: {describe()}",
    )


def _is_version(text: str) -> bool:
    from packaging.version import InvalidVersion, Version

    try:
        Version(text)
    except InvalidVersion:
        return False
    return True


def _registry(entry: IndexEntry, ref: SourceRef, index: Index, *, pre: bool) -> Resolution:
    version = select_version(entry, ref.spec, pre=pre, requested=ref.raw)
    info = entry.versions[version]
    for f in info.files:
        check_relpath(f.path, where=f"index entry {entry.name} {version}")
    notes = (f"{entry.name} {version} is yanked: {info.yanked_reason or 'no reason given'}",) if info.yanked else ()
    return Resolution(
        requested=ref.raw, kind="registry", key=key_for_repo(info.repo_id), commit=info.revision,
        files=tuple(sorted(info.files, key=lambda f: f.path)), repo_id=info.repo_id, name=entry.name,
        version=version, revision=info.tag, notes=notes, registry=index.provenance(),
    )


def _hub(ref: SourceRef, repo_id: str, settings: Settings, store: Store) -> Resolution:
    from . import remote

    revision = ref.spec
    try:
        commit, files = remote.resolve_snapshot(settings, repo_id, revision)  # one Hub call
    except OfflineError:
        return _hub_from_store(ref, repo_id, store)
    if not files:
        raise ResolutionError(f"{repo_id}@{commit[:12]}: the repository has no files")
    return Resolution(ref.raw, "hf", key_for_repo(repo_id), commit, tuple(files), repo_id=repo_id, revision=revision)


def _hub_from_store(ref: SourceRef, repo_id: str, store: Store) -> Resolution:
    """Offline, a revision can only be resolved through what an earlier install recorded."""
    key, revision = key_for_repo(repo_id), ref.spec
    wanted = revision or ""  # "" = the default branch, as recorded by an earlier install
    for record in sorted(store.records(), key=lambda r: r.installed_seq, reverse=True):
        if record.key == key and wanted in (record.commit, *record.revisions):
            files = tuple(f.vouched_by("store") for f in record.files)
            return Resolution(ref.raw, "hf", key, record.commit, files, repo_id=repo_id, revision=revision)
    raise OfflineError(
        f"{ref.raw}: offline mode is on and the store has no install of {repo_id}@{revision or 'main'}",
        hint="install it once online, or pin it in a lock file and use `adapterhub sync`",
    )


def local_files(root: Path) -> tuple[FileEntry, ...]:
    """The files of a local adapter folder (:func:`adapterhub.layout.adapter_files`) with sha256;
    symlinks that leave the folder are refused."""
    leaving = links_leaving(root)
    if leaving:
        path = root / leaving[0]
        raise UnsafePathError(f"{path}: symlink points outside the adapter directory ({path.resolve()})",
                              hint="copy the file into the directory instead of linking to it")
    files = tuple(
        FileEntry(check_relpath(rel, where=str(root)), (root / rel).stat().st_size, sha256_file(root / rel), "local")
        for rel in adapter_files(root)
    )
    if not files:
        raise ResolutionError(f"{root}: the directory has no files")
    return files


def content_digest(files: tuple[FileEntry, ...]) -> str:
    """sha256 over the (path, size, sha256) of every file: a local folder's identity."""
    h = hashlib.sha256()
    for f in sorted(files, key=lambda f: f.path):
        h.update(f"{f.path}\0{f.size}\0{f.sha256}\n".encode())
    return h.hexdigest()


def _check_looks_like_adapter(raw: str, root: Path) -> None:
    """Refuse a folder that is plainly not an adapter before hashing everything under it.

    A folder with an ``adapter_config.json`` is accepted even when no installed method claims it
    (recorded as method "unknown"); without one, a method plugin must claim it.
    """
    from .detect import claiming_method

    if (root / "adapter_config.json").is_file() or claiming_method(root)[0] is not None:
        return
    raise ResolutionError(
        f"{raw}: not an adapter folder ({root} has no adapter_config.json and no method claims it)",
        hint="give the folder that save_pretrained / save_adapter wrote; `adapterhub methods` lists "
        "the methods installed",
    )


def _local(ref: SourceRef) -> Resolution:
    root = Path(ref.name).expanduser().resolve()
    if not root.is_dir():
        raise ResolutionError(f"{ref.raw}: no such directory")
    _check_looks_like_adapter(ref.raw, root)
    files = local_files(root)
    digest = content_digest(files)
    return Resolution(ref.raw, "local", key_for_local(root.name), digest[:40], files, local_path=root, digest=digest)


def resolve(ref: SourceRef, index: Index, settings: Settings, store: Store, *, pre: bool = False) -> Resolution:
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
            similar = _similar(name, index.names())
            raise ResolutionError(
                f"{ref.raw!r} is not in the registry index ({index.source})",
                hint=(f"did you mean {' or '.join(similar)}? " if similar else "no similar registry names; ")
                + "a Hub repo id needs its namespace (org/repo); `adapterhub search WORD` searches the index",
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
        return _registry(entry, ref, index, pre=pre)
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
