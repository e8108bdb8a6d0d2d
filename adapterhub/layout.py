"""What an adapter folder is on disk (placeholder until the client redesign lands its version)."""

from __future__ import annotations

from pathlib import Path

PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl", ".pickle")


def adapter_files(root: str | Path, *, for_publish: bool = False) -> list[str]:
    root = Path(root)
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())
