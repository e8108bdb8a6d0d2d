"""Which files are LFS files and which are ignored: ``.gitattributes`` and ``.gitignore`` patterns.

The Hub stores a file through git-LFS when the repo's ``.gitattributes`` gives it
``filter=lfs`` or when it is at least 10 MiB, and it writes :func:`default_gitattributes` into
every new repo. :class:`LfsRule` applies that rule (with the server's size threshold);
:class:`GitIgnore` answers ``shouldIgnore`` in ``preupload``. Patterns follow git's syntax:
``*``, ``?``, ``[...]``, ``**``, a leading ``/`` or an inner ``/`` anchors to the repo root, a
trailing ``/`` matches folders, and (in ``.gitignore``) ``!`` re-includes.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass

#: The Hub's size threshold: files from 10 MiB on are LFS files whatever their name.
HUB_LFS_THRESHOLD = 10 * 1024 * 1024

_LFS = "filter=lfs diff=lfs merge=lfs -text"
_MODEL_PATTERNS = (
    "*.7z *.arrow *.bin *.bz2 *.ckpt *.ftz *.gz *.h5 *.joblib *.lfs.* *.mlmodel *.model *.msgpack *.npy *.npz "
    "*.onnx *.ot *.parquet *.pb *.pickle *.pkl *.pt *.pth *.rar *.safetensors saved_model/**/* *.tar.* *.tar "
    "*.tflite *.tgz *.wasm *.xz *.zip *.zst *tfevents*"
).split()
_DATASET_EXTRA = (
    "*.lz4 *.mds *.pcm *.sam *.raw *.aac *.flac *.mp3 *.ogg *.wav *.bmp *.gif *.png *.tiff *.jpg *.jpeg *.webp "
    "*.mp4 *.webm"
).split()


def default_gitattributes(repo_type: str) -> bytes:
    """The ``.gitattributes`` the Hub writes into a new repo of ``repo_type`` (plural)."""
    patterns = _MODEL_PATTERNS + (_DATASET_EXTRA if repo_type == "datasets" else [])
    return "".join(f"{p} {_LFS}\n" for p in patterns).encode()


@functools.lru_cache(maxsize=4096)
def _compile(pattern: str) -> re.Pattern[str]:
    """A git wildmatch pattern (without its ``!`` or trailing ``/``) as a regex over a full path."""
    anchored = "/" in pattern
    pattern = pattern.lstrip("/")
    out, i = [], 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
        elif pattern.startswith("/**", i) and i + 3 == len(pattern):
            out.append("/.*")
            i += 3
        elif pattern.startswith("**", i):
            out.append(".*")
            i += 2
        elif pattern[i] == "*":
            out.append("[^/]*")
            i += 1
        elif pattern[i] == "?":
            out.append("[^/]")
            i += 1
        elif pattern[i] == "[" and (end := pattern.find("]", i + 2)) != -1:
            body = pattern[i + 1 : end].replace("\\", "\\\\")
            if body.startswith("!"):
                body = "^" + body[1:]
            out.append(f"[{body}]")
            i = end + 1
        elif pattern[i] == "\\" and i + 1 < len(pattern):
            out.append(re.escape(pattern[i + 1]))
            i += 2
        else:
            out.append(re.escape(pattern[i]))
            i += 1
    prefix = "" if anchored else "(?:.*/)?"
    return re.compile(f"^{prefix}{''.join(out)}$", re.DOTALL)


def _parents(path: str) -> list[str]:
    parts = path.split("/")
    return ["/".join(parts[:i]) for i in range(1, len(parts))]


@dataclass(frozen=True)
class _Line:
    regex: re.Pattern[str]
    dir_only: bool
    value: bool  # gitignore: ignored (False for "!"); gitattributes: filter=lfs set


def _matches(line: _Line, path: str) -> bool:
    if not line.dir_only and line.regex.match(path):
        return True
    return any(line.regex.match(parent) for parent in _parents(path))


class _PatternFile:
    def __init__(self, lines: list[_Line]) -> None:
        self.lines = lines

    def last_value(self, path: str) -> bool | None:
        """The value of the last line matching ``path`` (or one of its folders), None if none."""
        value = None
        for line in self.lines:
            if _matches(line, path):
                value = line.value
        return value


class GitIgnore(_PatternFile):
    """A ``.gitignore``: :meth:`ignores` says whether a file path is excluded."""

    @classmethod
    def parse(cls, text: str) -> GitIgnore:
        lines = []
        for raw in text.splitlines():
            pattern = raw.rstrip()
            if not pattern or pattern.startswith("#"):
                continue
            negate = pattern.startswith("!")
            pattern = pattern[1:] if negate else pattern
            dir_only = pattern.endswith("/")
            pattern = pattern.rstrip("/")
            if pattern:
                lines.append(_Line(_compile(pattern), dir_only, not negate))
        return cls(lines)

    def ignores(self, path: str) -> bool:
        return bool(self.last_value(path))


class GitAttributes(_PatternFile):
    """A ``.gitattributes``: :meth:`is_lfs` says whether it gives a path ``filter=lfs``."""

    @classmethod
    def parse(cls, text: str) -> GitAttributes:
        lines = []
        for raw in text.splitlines():
            fields = raw.split()
            if not fields or fields[0].startswith("#") or fields[0].startswith("["):
                continue
            pattern, attrs = fields[0], fields[1:]
            value = None
            for attr in attrs:
                if attr == "filter=lfs":
                    value = True
                elif attr.startswith(("-filter", "!filter")) or (attr.startswith("filter=") and attr != "filter=lfs"):
                    value = False
            if value is None:
                continue
            dir_only = pattern.endswith("/")
            pattern = pattern.rstrip("/")
            if pattern:
                lines.append(_Line(_compile(pattern), dir_only, value))
        return cls(lines)

    def is_lfs(self, path: str) -> bool:
        return bool(self.last_value(path))


@dataclass(frozen=True)
class LfsRule:
    """The Hub's rule: ``filter=lfs`` in ``.gitattributes``, or at least ``threshold`` bytes.

    Empty files are never LFS files (the client always sends them inline).
    """

    attributes: GitAttributes
    threshold: int = HUB_LFS_THRESHOLD

    def is_lfs(self, path: str, size: int) -> bool:
        if size == 0:
            return False
        return size >= self.threshold or self.attributes.is_lfs(path)
