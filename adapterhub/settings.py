"""Where adapterhub keeps its state and how it reaches the Hub, read from the environment at call time.

huggingface_hub freezes its own environment at import; adapterhub therefore reads everything here
when a command runs, and :mod:`adapterhub.client.remote` passes ``endpoint=``/``token=``/
``cache_dir=`` explicitly. The token is held only in memory: it is never logged, printed, or
written to any file. URLs that carry credentials (``https://user:secret@host``) are shown only
through :func:`public_url` and :func:`scrub_secrets`.

Used by the client, the runtime (``load_adapter`` of a name), publishing and the CLI.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

DEFAULT_ENDPOINT = "https://huggingface.co"
_TRUE = {"1", "true", "yes", "on"}


def _env_flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in _TRUE


def default_home() -> Path:
    import platformdirs

    return Path(platformdirs.user_cache_dir("adapterhub", appauthor=False))


@dataclass(frozen=True)
class Settings:
    """One resolved configuration for a client operation."""

    home: Path
    endpoint: str
    offline: bool = False
    index: str | None = None  # a path, http(s) URL or hf://ns/repo/path@rev; None = bundled index
    token: str | None = field(default=None, repr=False)  # repr=False keeps it out of logs/tracebacks
    max_workers: int = 8
    # How patient downloads are (adapterhub.client.retry): further attempts per file after a transfer
    # error, the longest silence of a read, the cap on a server's Retry-After, all waiting of an install.
    retries: int = 5
    read_timeout: float = 30.0
    retry_after_max: float = 60.0
    max_wait: float = 180.0

    def with_overrides(self, **changes: object) -> Settings:
        return replace(self, **{k: v for k, v in changes.items() if v is not None})

    @property
    def public_endpoint(self) -> str:
        """The endpoint without ``user:password@``, for messages: credentials never reach output."""
        return public_url(self.endpoint)

    def write_token(self) -> str | None:
        """The token for a push: ``token`` (``HF_TOKEN``, or ``--token``), else a saved Hub login."""
        if self.token:
            return self.token
        from huggingface_hub import get_token

        return get_token()

    def scrub(self, text: str) -> str:
        """``text`` with the endpoint's credentials and the token masked (for error messages)."""
        return scrub_secrets(text, urls=[self.endpoint], token=self.token)

    @property
    def hf_cache_dir(self) -> Path:
        """huggingface_hub cache used for index files fetched from a Hub (ETag cache)."""
        if os.environ.get("HF_HUB_CACHE"):
            return Path(os.environ["HF_HUB_CACHE"])
        if os.environ.get("HF_HOME"):
            return Path(os.environ["HF_HOME"]) / "hub"
        return self.home / "hf-cache"


def public_url(url: str, *, drop_query: bool = False) -> str:
    """``url`` without ``user:password@``, for messages and lock files; other URLs unchanged.

    ``drop_query`` also drops ``?query`` and ``#fragment`` (where tokens travel too): for URLs that
    are recorded, such as an index URL in a lock file.
    """
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(url)
    if "@" not in parts.netloc and not (drop_query and (parts.query or parts.fragment)):
        return url
    parts = parts._replace(netloc=parts.netloc.rsplit("@", 1)[-1])
    if drop_query:
        parts = parts._replace(query="", fragment="")
    return urlunsplit(parts)


def scrub_secrets(text: str, *, urls: Sequence[str] = (), token: str | None = None) -> str:
    """Mask the credentials of ``urls`` and ``token`` wherever they appear in ``text``.

    Libraries put URLs (and, in parse errors, bare fragments of them) into exception messages.
    """
    from urllib.parse import unquote, urlsplit

    secrets: list[str] = [token] if token else []
    for url in urls:
        netloc = urlsplit(url).netloc
        if "@" in netloc:
            userinfo = netloc.rsplit("@", 1)[0]
            text = text.replace(url, public_url(url))
            password = userinfo.partition(":")[2]
            secrets += [userinfo, password, unquote(password)]
    for secret in sorted({s for s in secrets if len(s) >= 4}, key=len, reverse=True):
        text = text.replace(secret, "***")
    return text


def get_settings(
    *,
    home: str | Path | None = None,
    endpoint: str | None = None,
    offline: bool | None = None,
    index: str | None = None,
) -> Settings:
    """Settings from explicit arguments, then the environment, then defaults.

    * home: ``ADAPTERHUB_HOME``, else the platform user cache dir.
    * endpoint: ``--endpoint``, else ``HF_ENDPOINT``, else huggingface.co.
    * token: ``HF_TOKEN`` (or the legacy ``HUGGING_FACE_HUB_TOKEN``).
    * offline: ``--offline``, ``HF_HUB_OFFLINE`` or ``ADAPTERHUB_OFFLINE``.
    * index: ``--index``, else ``ADAPTERHUB_INDEX``, else the bundled index.
    * downloads: ``ADAPTERHUB_RETRIES`` (5 further attempts per file), ``ADAPTERHUB_READ_TIMEOUT``
      (30 s of silence), ``ADAPTERHUB_RETRY_AFTER_MAX`` (60 s), ``ADAPTERHUB_MAX_WAIT`` (180 s of
      waiting per install in all); see :mod:`adapterhub.client.retry`.
    """
    home_path = Path(home or os.environ.get("ADAPTERHUB_HOME") or default_home()).expanduser()
    resolved_endpoint = (endpoint or os.environ.get("HF_ENDPOINT") or DEFAULT_ENDPOINT).rstrip("/")
    is_offline = bool(offline) or _env_flag("HF_HUB_OFFLINE") or _env_flag("ADAPTERHUB_OFFLINE")
    token = os.environ.get("HF_TOKEN") or os.environ.get("HUGGING_FACE_HUB_TOKEN") or None
    workers = os.environ.get("ADAPTERHUB_MAX_WORKERS", "")
    return Settings(
        home=home_path.resolve(),
        endpoint=resolved_endpoint,
        offline=is_offline,
        index=index or os.environ.get("ADAPTERHUB_INDEX") or None,
        token=token,
        max_workers=int(workers) if workers.isdigit() and int(workers) > 0 else 8,
        retries=int(_env_number("ADAPTERHUB_RETRIES", 5, integer=True)),
        read_timeout=_env_number("ADAPTERHUB_READ_TIMEOUT", 30.0, positive=True),
        retry_after_max=_env_number("ADAPTERHUB_RETRY_AFTER_MAX", 60.0),
        max_wait=_env_number("ADAPTERHUB_MAX_WAIT", 180.0),
    )


def _env_number(name: str, default: float, *, integer: bool = False, positive: bool = False) -> float:
    """A non-negative number (``positive``: above 0) from environment variable ``name``, else ``default``."""
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw) if integer else float(raw)
    except ValueError:
        value = -1
    if value < 0 or (positive and value == 0) or value != value or value == float("inf"):
        kind = "a whole number" if integer else "a number of seconds"
        raise ValueError(f"{name}={raw!r} is not {kind}{' above 0' if positive else ''} "
                         f"(unset it to use the default, {default:g})")
    return value
