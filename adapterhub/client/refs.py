"""Parse what a user asks to install: a registry name (+ version spec: ``NAME@SPEC`` or pip's ``NAME==1.0``),
a Hub repo id (+ revision), a dir.

Parsing is purely syntactic. Whether ``ns/name`` is a registry name or a repo id is decided by
:mod:`adapterhub.client.resolve`, which has the index at hand.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from ..errors import UsageError

_SEGMENT = r"[A-Za-z0-9][A-Za-z0-9._-]*"
_REPO_ID = re.compile(rf"^{_SEGMENT}/{_SEGMENT}$")
_BARE_NAME = re.compile(rf"^{_SEGMENT}$")
#: pip's form, a name directly followed by a PEP 440 operator: ``ns/name==1.0.0``, ``name>=1,<2``
_PIP_STYLE = re.compile(rf"^(?P<name>{_SEGMENT}(?:/{_SEGMENT})?)(?P<spec>(?:===|==|!=|~=|>=|<=|<|>).+)$")


@dataclass(frozen=True)
class SourceRef:
    """One parsed install request.

    kind: ``"name"`` (registry name or repo id, decided later), ``"hf"`` (explicit ``hf://``: always
    a Hub repo), or ``"local"`` (a directory).
    """

    raw: str
    kind: str
    name: str  # "ns/name", a bare name, a repo id, or the directory path
    spec: str | None = None  # text after "@": a version spec or a revision

    @property
    def path(self) -> Path:
        return Path(self.name)


def _looks_local(text: str) -> bool:
    return (
        text.startswith(("./", "../", "/", "~", ".\\"))
        or text in (".", "..")
        or (len(text) > 1 and text[1] == ":")
    )


def parse_source(text: str, revision: str | None = None) -> SourceRef:
    """Parse one SOURCE argument (see ``adapterhub install --help``)."""
    raw = text.strip()
    if not raw:
        raise UsageError("empty adapter source", hint="give a registry name, a Hub repo id or a directory")
    if raw.startswith("hf://"):
        body = raw[len("hf://"):]
        repo, _, rev = body.partition("@")
        if not _REPO_ID.match(repo):
            raise UsageError(f"{raw!r}: expected hf://<namespace>/<repo>[@revision]")
        if rev and revision and rev != revision:
            raise UsageError(f"{raw!r}: revision given twice ({rev!r} and {revision!r})")
        return SourceRef(raw, "hf", repo, rev or revision or None)
    pip_style = None if "@" in raw or _looks_local(raw) else _PIP_STYLE.match(raw)
    if pip_style:
        spec = pip_style["spec"]
        if revision and spec != revision:
            raise UsageError(f"{raw!r}: version given twice ({spec!r} and {revision!r})")
        return SourceRef(raw, "name", pip_style["name"], spec)
    name_part = raw.split("@")[0]
    is_name_like = bool(_REPO_ID.match(name_part) or _BARE_NAME.match(name_part))
    # A path-like string that is also name-like stays a name: resolve() reports the ambiguity.
    if _looks_local(raw) or (not is_name_like and Path(raw).expanduser().is_dir()):
        return SourceRef(raw, "local", str(Path(raw).expanduser()))
    name, at, spec = raw.partition("@")
    if at and not spec:
        raise UsageError(f"{raw!r}: nothing after '@'", hint="write NAME@VERSION-SPEC or REPO@REVISION")
    if not (_REPO_ID.match(name) or _BARE_NAME.match(name)):
        raise UsageError(
            f"{raw!r} is not a registry name, a Hub repo id or an existing directory",
            hint="registry names look like 'sentiment/sst2' (with a version: 'sentiment/sst2@^1', "
            "'sentiment/sst2==1.0.0'), repo ids like 'org/repo', local dirs like './my-adapter'",
        )
    if spec and revision and spec != revision:
        raise UsageError(f"{raw!r}: revision given twice ({spec!r} and {revision!r})")
    return SourceRef(raw, "name", name, spec or revision or None)


def parse_hf_file_url(url: str) -> tuple[str, str, str | None]:
    """``hf://ns/repo/path/in/repo.json[@rev]`` -> ``(repo_id, path, revision)``."""
    body = url[len("hf://"):] if url.startswith("hf://") else url
    body, _, rev = body.partition("@")
    parts = body.split("/")
    if len(parts) < 3 or not _REPO_ID.match("/".join(parts[:2])) or not all(parts[2:]):
        raise UsageError(f"{url!r}: expected hf://<namespace>/<repo>/<path/to/index.json>[@revision]")
    return "/".join(parts[:2]), "/".join(parts[2:]), rev or None
