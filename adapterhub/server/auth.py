"""Users and tokens of the local Hub, and the self-authorising URLs that LFS uploads use.

A user ``NAME:TOKEN`` may read everything public plus its own private repos, and write to its own
namespace. Tokens are compared in constant time and never logged.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import time
import uuid
from pathlib import Path

USERS_ENV = "ADAPTERHUB_HUB_USERS"


def parse_users(specs: list[str] | tuple[str, ...] | str | None) -> dict[str, str]:
    """``["alice:tok", ...]`` or ``"alice:tok,bob:tok2"`` to ``{"alice": "tok", ...}``."""
    if not specs:
        return {}
    if isinstance(specs, str):
        specs = [s for s in specs.replace("\n", ",").split(",") if s.strip()]
    users: dict[str, str] = {}
    for spec in specs:
        name, sep, token = spec.strip().partition(":")
        if not sep or not name or not token:
            # Name only, so a mistyped token is not echoed back.
            raise ValueError(f"invalid user spec for {name or '?'!r}: expected NAME:TOKEN")
        users[name] = token
    return users


class Auth:
    """Maps bearer tokens to users and signs upload URLs with a secret kept under the root."""

    def __init__(self, users: dict[str, str], root: Path) -> None:
        self._by_token = {hashlib.sha256(tok.encode()).digest(): name for name, tok in users.items()}
        self.users = frozenset(users)
        self._secret = _load_secret(root)

    def user_for(self, authorization: str | None) -> str | None:
        """The user a ``Bearer`` header belongs to, or None (missing or unknown token)."""
        if not authorization:
            return None
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return None
        digest = hashlib.sha256(token.strip().encode()).digest()
        for known, name in self._by_token.items():
            if hmac.compare_digest(known, digest):
                return name
        return None

    def sign(self, *parts: str, ttl_s: int = 3600) -> tuple[str, str]:
        """A (expiry, signature) pair that authorises exactly ``parts`` until the expiry."""
        expires = str(int(time.time()) + ttl_s)
        return expires, self._mac(expires, *parts)

    def verify(self, expires: str, signature: str, *parts: str) -> bool:
        try:
            if int(expires) < time.time():
                return False
        except ValueError:
            return False
        return hmac.compare_digest(self._mac(expires, *parts), signature)

    def _mac(self, *parts: str) -> str:
        return hmac.new(self._secret, "\n".join(parts).encode(), hashlib.sha256).hexdigest()


def _load_secret(root: Path) -> bytes:
    path = Path(root) / "secret"
    if not path.is_file():
        tmp = path.with_name(f".secret.{uuid.uuid4().hex}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(secrets.token_bytes(32))
            fh.flush()
            os.fsync(fh.fileno())
        try:
            os.link(tmp, path)  # first writer wins; a concurrent start reads the same secret
        except FileExistsError:
            pass
        finally:
            os.unlink(tmp)
    return path.read_bytes()
