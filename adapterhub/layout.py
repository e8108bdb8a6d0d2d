"""What an adapter folder is on disk: which files belong to it, and which of them are pickles.

One rule, used by install (a local folder), method detection, validation, the manifest, push and
``adapterhub convert``, so that they can never disagree about what an adapter is:

* the files of an adapter are its regular files (a symlink to a file counts as the file it points
  at), as relative POSIX paths, sorted;
* hidden entries (any path segment starting with ``.``: ``.git/``, ``.cache/``, ``.DS_Store``,
  ``.gitattributes``) and ``__pycache__`` folders are never part of it;
* symlinked folders are not descended into (a link out of the folder must not pull files in);
* for a publish (``for_publish=True``) an ``adapterhub.json`` at the top is left out as well: it is
  the manifest of an earlier release, and a push always writes a fresh one.

Pure standard library: importable anywhere without torch.
"""

from __future__ import annotations

import os
from pathlib import Path

#: File name suffixes of pickled weights (``torch.save`` / ``pickle``): refused by the runtime unless
#: ``allow_pickle``, never published, and what ``adapterhub convert`` turns into safetensors.
PICKLE_SUFFIXES: tuple[str, ...] = (".bin", ".pt", ".pth", ".ckpt", ".pkl", ".pickle")
#: The release manifest a push writes into every release (see :mod:`adapterhub.publish.manifest`).
MANIFEST_NAME = "adapterhub.json"
#: Folder names skipped wherever they appear (besides hidden ones).
SKIPPED_DIRS = frozenset({"__pycache__"})


#: What a training loop saves next to the adapter in a checkpoint folder (transformers' Trainer,
#: accelerate): optimizer and scheduler state, random-number state, the training arguments. None of
#: it is part of the adapter, and the pickled ones hold Python objects, not just tensors.
TRAINING_STATE_PATTERNS: tuple[str, ...] = (
    "optimizer.pt", "optimizer.bin", "optimizer_*.bin", "scheduler.pt", "scheduler*.bin", "scaler.pt",
    "rng_state.pth", "rng_state_*.pth", "random_states_*.pkl", "training_args.bin", "trainer_state.json",
)


def is_training_state(name: str | os.PathLike[str]) -> bool:
    """Whether ``name`` (a file name or relative path) is a training-state file of a checkpoint folder."""
    from fnmatch import fnmatch

    base = os.fspath(name).replace("\\", "/").rsplit("/", 1)[-1]
    return any(fnmatch(base, pattern) for pattern in TRAINING_STATE_PATTERNS)


def matches_any(relpath: str, patterns: "tuple[str, ...] | list[str]") -> bool:
    """Whether a relative POSIX path matches one of the glob ``patterns`` (``--exclude``): the
    whole path (``ckpt/*.pt``) or its file name (``optimizer.pt``)."""
    from fnmatch import fnmatch

    name = relpath.rsplit("/", 1)[-1]
    return any(fnmatch(relpath, p) or fnmatch(name, p) for p in patterns)


def is_pickle(name: str | os.PathLike[str]) -> bool:
    """Whether ``name`` (a file name or path) names a pickled weights file, by its suffix."""
    return os.fspath(name).lower().endswith(PICKLE_SUFFIXES)


def is_skipped(relpath: str) -> bool:
    """Whether a relative POSIX path is outside every adapter: hidden, or inside ``__pycache__``."""
    return any(part.startswith(".") or part in SKIPPED_DIRS for part in relpath.split("/"))


def adapter_files(root: str | os.PathLike[str], *, for_publish: bool = False) -> list[str]:
    """The files that make up the adapter in ``root``: relative POSIX paths, sorted.

    See the module docstring for the rule. ``for_publish`` also leaves out a top-level
    ``adapterhub.json`` (the manifest of an earlier release).
    """
    base = Path(root)
    found: list[str] = []
    for directory, dirnames, filenames in os.walk(base):
        here = Path(directory)
        rel_dir = here.relative_to(base).as_posix()
        prefix = "" if rel_dir == "." else rel_dir + "/"
        # os.walk does not descend into symlinked folders; hidden and skipped ones are pruned here.
        dirnames[:] = sorted(d for d in dirnames if not is_skipped(d))
        for name in filenames:
            rel = prefix + name
            if is_skipped(name) or not (here / name).is_file():
                continue
            if for_publish and rel == MANIFEST_NAME:
                continue
            found.append(rel)
    return sorted(found)


def skipped_files(root: str | os.PathLike[str], *, for_publish: bool = False) -> list[str]:
    """Regular files under ``root`` that :func:`adapter_files` leaves out (for "skipped" reports)."""
    base = Path(root)
    kept = set(adapter_files(base, for_publish=for_publish))
    every = (p.relative_to(base).as_posix() for p in base.rglob("*") if p.is_file())
    return sorted(rel for rel in every if rel not in kept)


def links_leaving(root: str | os.PathLike[str]) -> list[str]:
    """Relative paths of the symlinks in the adapter (to files or folders) that resolve outside ``root``."""
    base = Path(root)
    real_root = os.path.realpath(base)
    leaving = []
    for directory, dirnames, filenames in os.walk(base):
        dirnames[:] = [d for d in dirnames if not is_skipped(d)]
        here = Path(directory)
        for name in [*dirnames, *filenames]:
            path = here / name
            if is_skipped(name) or not path.is_symlink():
                continue
            target = os.path.realpath(path)
            if os.path.commonpath([real_root, target]) != real_root:
                leaving.append(path.relative_to(base).as_posix())
    return sorted(leaving)
