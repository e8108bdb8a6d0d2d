"""Staging: every missing file of every planned adapter, fetched (or copied) and verified before any is used.

Files land in ``downloads-v1/<key>/<commit>/`` under flat, hashed names (never the server's paths),
as ``*.incomplete`` files that a rerun resumes. Each is checked here, once, against what the plan
expects of it (:func:`mismatch`): the size, and the sha256 from the index, the lock or the Hub's LFS
metadata, else the Hub's git blob id. A blob the store already holds is re-hashed and reused.
Nothing is published from here; :mod:`adapterhub.client.install` does that with what this returns.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from ..errors import IntegrityError
from ..settings import Settings
from .hashing import StreamHasher
from .models import FileEntry, Resolution
from .paths import join_inside
from .plan import PlanItem
from .download import Fetched, FetchJob, fetch_files
from .store import Store

#: path -> (verified file to add to the blob store, or None when the blob is already there; its sha256)
Staged = dict[str, tuple[Path | None, str]]


def partial_path(work_dir: Path, relpath: str) -> Path:
    """A flat, safe name per file in the download dir (never derived from server paths' layout)."""
    return work_dir / (hashlib.sha256(relpath.encode()).hexdigest()[:32] + ".incomplete")


def mismatch(expected: FileEntry, size: int | None, sha256: str, git_oid: str | None = None) -> str | None:
    """Why bytes of ``size`` (None: more than expected) hashing to ``sha256`` are not ``expected``, or None."""
    if size is None or size != expected.size:
        got = f"more than {expected.size}" if size is None else str(size)
        return f"{expected.path}: size {got}, but {expected.expected_from} says {expected.size} (wrong size)"
    if expected.sha256 and sha256 != expected.sha256:
        return f"{expected.path}: sha256 {sha256}, but {expected.expected_from} says {expected.sha256}"
    if not expected.sha256 and git_oid is not None and git_oid != expected.git_oid:
        return f"{expected.path}: git blob id differs from the Hub's tree listing ({expected.git_oid})"
    return None


def _problem(fetched: Fetched) -> str | None:
    return mismatch(fetched.job.file, fetched.size, fetched.sha256, fetched.git_oid)


def copy_local(r: Resolution, needed: list[FileEntry], work_dir: Path) -> list[tuple[FileEntry, Path, str, str | None]]:
    """Copy (hashing while copying) files of a local folder: ``(file, copy, sha256, problem)`` each;
    they must still match the plan."""
    assert r.local_path is not None
    work_dir.mkdir(parents=True, exist_ok=True)
    out = []
    for f in needed:
        src = join_inside(r.local_path, f.path, where=str(r.local_path))
        dst = partial_path(work_dir, f.path)
        hasher, size = StreamHasher(f.size), 0
        with open(src, "rb") as fin, open(dst, "wb") as fout:
            while chunk := fin.read(1 << 20):
                size += len(chunk)
                hasher.update(chunk)
                fout.write(chunk)
            fout.flush()
            os.fsync(fout.fileno())
        out.append((f, dst, hasher.sha256, mismatch(f, size, hasher.sha256)))
    return out


def stage_missing(items: tuple[PlanItem, ...], *, store: Store, settings: Settings, progress: bool,
                  force: bool) -> dict[tuple[str, str], Staged]:
    """For each (key, commit) that needs installing, every file verified and ready to publish.

    Raises IntegrityError, listing every bad file, before anything is published if any file fails.
    """
    staged: dict[tuple[str, str], Staged] = {}
    jobs: list[FetchJob] = []
    owner: dict[FetchJob, Resolution] = {}
    problems: dict[str, list[str]] = {}
    for item in items:
        r = item.resolved
        ident = (r.key, r.commit)
        if ident in staged or (not force and store.get(r.key, r.commit) is not None):
            continue
        files: Staged = {}
        staged[ident] = files
        needed = []
        for f in r.files:
            if f.sha256 and store.blob_ok(f.sha256, f.size):
                files[f.path] = (None, f.sha256)
            else:
                needed.append(f)
        work_dir = store.downloads / r.key / r.commit
        if r.kind == "local":
            for f, copy, sha, problem in copy_local(r, needed, work_dir):
                if problem:
                    problems.setdefault(r.label, []).append(problem)
                else:
                    files[f.path] = (copy, sha)
            continue
        for f in needed:
            job = FetchJob(r.repo_id or "", r.commit, f, partial_path(work_dir, f.path))
            owner[job] = r
            jobs.append(job)
    if jobs and not problems:
        labels = sorted({owner[j].label for j in jobs})
        desc = labels[0] if len(labels) == 1 else f"{len(labels)} adapters"
        fetched_all = fetch_files(settings, jobs, progress=progress, desc=desc)
        # A resumed file that does not verify may owe it to its old partial bytes (changed on disk,
        # or served differently before): fetch those once more from scratch before calling it bad.
        stale = [f for f in fetched_all if f.resumed and _problem(f)]
        if stale:
            for f in stale:
                f.job.partial.unlink(missing_ok=True)
            again = {f.job: f for f in fetch_files(settings, [f.job for f in stale], progress=progress, desc=desc)}
            fetched_all = [again.get(f.job, f) for f in fetched_all]
        for fetched in fetched_all:
            r, f = owner[fetched.job], fetched.job.file
            problem = _problem(fetched)
            if problem:
                fetched.job.partial.unlink(missing_ok=True)  # a rerun fetches fresh bytes
                problems.setdefault(r.label, []).append(problem)
            else:
                staged[(r.key, r.commit)][f.path] = (fetched.job.partial, fetched.sha256)
    if problems:
        first = next(label for label in [i.resolved.label for i in items] if label in problems)
        listed = [p if len(problems) == 1 else f"{label}: {p}" for label, ps in problems.items() for p in ps]
        origin = f" from {settings.public_endpoint}" if jobs else ""
        raise IntegrityError(
            f"{first}: {len(listed)} file(s){origin} failed verification; nothing was installed",
            problems=listed,
            hint="the server or the connection delivered wrong bytes; retry, and report it if it persists",
        )
    return staged
