"""The content-addressed store under ``ADAPTERHUB_HOME``.

Layout (each bucket versioned so a future format never misreads an old one)::

    blobs-v1/sha256/ab/abcdef…             verified file contents, read-only, named by sha256
    installed-v1/<key>/<commit>/           an installed adapter: hardlinks (or copies) of blobs
    installed-v1/<key>/<commit>.json       its install record; written LAST, so it marks completeness
    downloads-v1/<key>/<commit>/           resumable downloads (``*.incomplete``, see client/stage.py)
    tmp-v1/                                staging dirs, published into installed-v1 by one rename
    locks-v1/                              filelocks: one per key, plus ``gc.lock`` for blobs

An adapter is visible only when both its directory and its record exist. The directory appears by
an atomic rename of a fully linked staging dir, then the record is written with ``os.replace``.
A crash at any point leaves either nothing visible or an orphan dir without a record, which the
next install of that key removes (under the key lock) and ``cache prune`` collects.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import time
import uuid
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

from ..errors import IntegrityError, UnsafePathError
from ..fileio import atomic_write_text, dump_json, read_only_mode
from .hashing import is_commit, is_sha256, sha256_file
from .models import FileEntry, InstallRecord
from .paths import check_relpath, join_inside

RECORD_VERSION = 1


def key_for_repo(repo_id: str) -> str:
    return f"hf/{repo_id}"


def key_for_local(dirname: str) -> str:
    safe = "".join(c if c.isalnum() or c in "._-" else "_" for c in dirname) or "adapter"
    return f"local/{safe}"


class Store:
    def __init__(self, home: Path) -> None:
        self.home = Path(home)
        self.blobs = self.home / "blobs-v1" / "sha256"
        self.installed = self.home / "installed-v1"
        self.downloads = self.home / "downloads-v1"
        self.tmp = self.home / "tmp-v1"
        self.locks = self.home / "locks-v1"

    # -- locks --------------------------------------------------------------------------------

    def _lock(self, name: str, timeout: float = -1) -> Any:
        from filelock import FileLock

        self.locks.mkdir(parents=True, exist_ok=True)
        return FileLock(str(self.locks / f"{name}.lock"), timeout=timeout)

    def key_lock(self, key: str, timeout: float = -1) -> Any:
        """Serialises every install/uninstall of one key across processes."""
        return self._lock(key.replace("/", "--"), timeout)

    def gc_lock(self, timeout: float = -1) -> Any:
        """Held while blobs are added/linked and while prune deletes, so neither sees half of the other."""
        return self._lock("gc", timeout)

    # -- blobs --------------------------------------------------------------------------------

    def blob_path(self, sha256: str) -> Path:
        if not is_sha256(sha256):
            raise UnsafePathError(f"not a sha256 digest: {sha256!r}")
        return self.blobs / sha256[:2] / sha256

    def blob_ok(self, sha256: str, size: int) -> bool:
        """A present blob is re-hashed before reuse: a flipped byte in the store is never linked again."""
        path = self.blob_path(sha256)
        try:
            size_ok = path.stat().st_size == size
        except FileNotFoundError:
            return False
        if size_ok and sha256_file(path) == sha256:
            return True
        # Corrupt (wrong size or bytes): drop it so the fresh download replaces it; kept, it would
        # win over the good bytes in add_blob and `install --force` could never repair it.
        path.unlink(missing_ok=True)
        return False

    def add_blob(self, source: Path, sha256: str) -> Path:
        """Move an already verified file into the blob store (a no-op if an intact blob exists; a
        damaged one is replaced, so `install --force` repairs files whose sha256 the plan lacked)."""
        target = self.blob_path(sha256)
        target.parent.mkdir(parents=True, exist_ok=True)
        if target.exists() and self.blob_ok(sha256, source.stat().st_size):
            source.unlink(missing_ok=True)
        else:
            os.chmod(source, read_only_mode())  # read-only, readable as far as the umask allows
            os.replace(source, target)
        return target

    # -- installs -----------------------------------------------------------------------------

    def install_dir(self, key: str, commit: str) -> Path:
        for part in key.split("/"):
            if part in ("", ".", ".."):
                raise UnsafePathError(f"bad store key {key!r}")
        return self.installed / key / commit

    def record_path(self, key: str, commit: str) -> Path:
        return self.install_dir(key, commit).with_name(f"{commit}.json")

    def get(self, key: str, commit: str) -> InstallRecord | None:
        directory = self.install_dir(key, commit)
        record_file = self.record_path(key, commit)
        if not (record_file.is_file() and directory.is_dir()):
            return None
        try:
            data = json.loads(record_file.read_text(encoding="utf-8"))
            return InstallRecord.from_dict(data, directory)
        except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError):
            return None

    def records(self) -> list[InstallRecord]:
        found: list[InstallRecord] = []
        if not self.installed.is_dir():
            return found
        for record_file in self._record_files():
            key = record_file.parent.relative_to(self.installed).as_posix()
            record = self.get(key, record_file.stem)
            if record is not None:
                found.append(record)
        return found

    def _record_files(self) -> list[Path]:
        """``installed-v1/<key>/<commit>.json`` (not the JSON files inside an install)."""
        return sorted(p for p in self.installed.glob("*/**/*.json") if is_commit(p.stem))

    def unreadable_records(self) -> list[str]:
        """One problem line per install record that is not valid JSON (``records`` skips those)."""
        problems = []
        if self.installed.is_dir():
            for record_file in self._record_files():
                try:
                    InstallRecord.from_dict(json.loads(record_file.read_text(encoding="utf-8")), record_file)
                except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError) as exc:
                    problems.append(f"record {record_file}: unreadable ({exc}); that install is invisible")
        return problems

    def find(self, query: str) -> list[InstallRecord]:
        return [r for r in self.records() if r.matches(query)]

    def write_record(self, record: InstallRecord) -> None:
        atomic_write_text(self.record_path(record.key, record.commit), dump_json(record.to_dict()), fsync=True)

    def new_staging_dir(self) -> Path:
        self.tmp.mkdir(parents=True, exist_ok=True)
        path = self.tmp / f"{os.getpid()}-{uuid.uuid4().hex}"
        path.mkdir()
        return path

    def link_files(self, staging: Path, files: tuple[FileEntry, ...]) -> None:
        """Populate ``staging`` with a hardlink (or copy) of each file's blob."""
        for item in files:
            target = join_inside(staging, check_relpath(item.path, where="install"), where="install")
            target.parent.mkdir(parents=True, exist_ok=True)
            blob = self.blob_path(item.sha256 or "")
            try:
                os.link(blob, target)
            except OSError:
                shutil.copy2(blob, target)

    def publish(self, staging: Path, record: InstallRecord) -> InstallRecord:
        """Make ``staging`` visible as ``record``'s install dir: one rename, then the record."""
        final = self.install_dir(record.key, record.commit)
        final.parent.mkdir(parents=True, exist_ok=True)
        if final.exists():  # an orphan from a crashed install (no record): never trusted
            self._discard(final)
        os.rename(staging, final)
        record = replace(record, directory=final)
        self.write_record(record)
        return record

    def remove(self, record: InstallRecord) -> None:
        """Uninstall: the record goes first, so the adapter is invisible before any file is touched."""
        self.record_path(record.key, record.commit).unlink(missing_ok=True)
        self._discard(record.directory)

    def _discard(self, directory: Path) -> None:
        if not directory.exists():
            return
        self.tmp.mkdir(parents=True, exist_ok=True)
        trash = self.tmp / f"trash-{uuid.uuid4().hex}"
        os.rename(directory, trash)
        shutil.rmtree(trash, ignore_errors=True)

    # -- verification -------------------------------------------------------------------------

    def verify(self, record: InstallRecord) -> list[str]:
        """Re-hash every file of an install; return one line per problem (empty = intact)."""
        problems = []
        expected = set()
        for item in record.files:
            where = f"{record.display_name}: {item.path}"
            expected.add(item.path)
            try:
                path = join_inside(record.directory, item.path, where=where)
            except UnsafePathError as exc:
                problems.append(exc.message)
                continue
            if path.is_symlink() or not path.is_file():
                problems.append(f"{where}: missing or not a regular file ({path})")
                continue
            size = path.stat().st_size
            if size != item.size:
                problems.append(f"{where}: size {size}, expected {item.size} ({path})")
                continue
            digest = sha256_file(path)
            if digest != item.sha256:
                problems.append(f"{where}: sha256 {digest}, expected {item.sha256} ({path})")
        for path in sorted(record.directory.rglob("*")):
            rel = path.relative_to(record.directory).as_posix()
            if (path.is_file() or path.is_symlink()) and rel not in expected:
                problems.append(f"{record.display_name}: unexpected file {rel} ({path})")
        return problems

    def verify_blobs(self) -> list[str]:
        problems = []
        if self.blobs.is_dir():
            for blob in sorted(self.blobs.glob("*/*")):
                if sha256_file(blob) != blob.name:
                    problems.append(f"blob {blob}: content does not match its sha256 name")
        return problems

    def check_or_raise(self, record: InstallRecord) -> InstallRecord:
        problems = self.verify(record)
        if problems:
            raise IntegrityError(
                f"the installed copy of {record.display_name} ({record.commit[:12]}) is corrupted",
                problems=problems,
                hint=f"reinstall it with `adapterhub install --force {record.display_name}`",
            )
        return record

    # -- housekeeping -------------------------------------------------------------------------

    def _key_dirs(self, root: Path) -> list[Path]:
        """``<root>/hf/<org>/<repo>`` and ``<root>/local/<name>`` directories."""
        if not root.is_dir():
            return []
        return sorted(p for p in [*root.glob("hf/*/*"), *root.glob("local/*")] if p.is_dir())

    def prune(self, *, min_age_s: float = 3600.0) -> dict[str, int]:
        """Delete unreferenced blobs, orphan install dirs, idle downloads and old staging dirs.

        Keys being installed right now (their lock is held) are skipped.
        """
        from filelock import Timeout

        removed = {"blobs": 0, "orphans": 0, "staging": 0, "bytes": 0}
        with self.gc_lock():
            records = self.records()
            referenced = {f.sha256 for r in records for f in r.files}
            for blob in self.blobs.glob("*/*") if self.blobs.is_dir() else []:
                if blob.name not in referenced:
                    removed["bytes"] += blob.stat().st_size
                    blob.unlink()
                    removed["blobs"] += 1
            for root, counter in ((self.installed, "orphans"), (self.downloads, "staging")):
                for key_dir in self._key_dirs(root):
                    key = key_dir.relative_to(root).as_posix()
                    with contextlib.suppress(Timeout), self.key_lock(key, timeout=0):
                        for commit_dir in [p for p in key_dir.iterdir() if p.is_dir()]:
                            if root is self.downloads or self.get(key, commit_dir.name) is None:
                                self._discard(commit_dir)
                                removed[counter] += 1
            now = time.time()
            for entry in self.tmp.iterdir() if self.tmp.is_dir() else []:
                if entry.name.startswith("trash-") or now - entry.stat().st_mtime >= min_age_s:
                    if entry.is_dir():
                        shutil.rmtree(entry, ignore_errors=True)
                    else:
                        entry.unlink(missing_ok=True)
                    removed["staging"] += 1
        return removed


@contextlib.contextmanager
def staging_dir(store: Store) -> Iterator[Path]:
    """A fresh staging dir, removed unless it was published (renamed away)."""
    path = store.new_staging_dir()
    try:
        yield path
    finally:
        if path.exists():
            shutil.rmtree(path, ignore_errors=True)
