"""Users, organisations and tokens of the local Hub, who may do what, and self-authorising URLs.

A user may read everything public and write to its own namespace. An organisation's members have a
role in it: ``read`` (see its private repos), ``write`` (also create repos and push) or ``admin``
(also delete, move and change settings). Names follow the Hub's rule and are case-insensitive;
they are checked when the server starts (:func:`build_accounts`), so a name that could never own a
repo is refused up front. Tokens are compared in constant time and never logged.

Accounts come from ``--user NAME:TOKEN`` / ``$ADAPTERHUB_HUB_USERS``, ``--org NAME:MEMBER,...`` /
``$ADAPTERHUB_HUB_ORGS`` and a TOML ``--config`` file (:func:`load_config`)::

    [users.alice]
    token = "..."
    fullname = "Alice Martin"        # optional

    [orgs.nlp-team]
    fullname = "NLP team"             # optional
    members = { alice = "admin", bob = "write" }   # or a list: ["alice", "bob"] (write)
    private_by_default = true         # new repos are private unless asked otherwise
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import time
import tomllib
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .names import NAME_RULE, is_valid_name, name_key

USERS_ENV = "ADAPTERHUB_HUB_USERS"
ORGS_ENV = "ADAPTERHUB_HUB_ORGS"
ROLES = ("read", "write", "admin")


@dataclass(frozen=True)
class Account:
    name: str
    token: str = field(repr=False)
    fullname: str = ""
    email: str | None = None


@dataclass(frozen=True)
class Organization:
    name: str
    fullname: str = ""
    members: dict[str, str] = field(default_factory=dict)  # lower-case user name -> role
    private_by_default: bool = False


@dataclass(frozen=True)
class Accounts:
    """The validated users and organisations of one server."""

    users: dict[str, Account] = field(default_factory=dict)  # lower-case name -> account
    orgs: dict[str, Organization] = field(default_factory=dict)


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


def parse_orgs(specs: list[str] | tuple[str, ...] | str | None) -> dict[str, dict[str, str]]:
    """``["team:alice=admin,bob"]`` or ``"team:alice,bob;other:carol"`` to ``{org: {member: role}}``."""
    if not specs:
        return {}
    if isinstance(specs, str):
        specs = [s for s in specs.replace("\n", ";").split(";") if s.strip()]
    orgs: dict[str, dict[str, str]] = {}
    for spec in specs:
        name, sep, members = spec.strip().partition(":")
        if not sep or not name:
            raise ValueError(f"invalid organisation spec {spec!r}: expected NAME:MEMBER[=ROLE],...")
        table = orgs.setdefault(name, {})
        for member in filter(None, (m.strip() for m in members.split(","))):
            user, _, role = member.partition("=")
            table[user] = role or "write"
    return orgs


def load_config(path: Path) -> tuple[dict[str, dict[str, Any]], dict[str, dict[str, Any]]]:
    """The ``[users.*]`` and ``[orgs.*]`` tables of a TOML config file."""
    try:
        data = tomllib.loads(Path(path).read_text("utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ValueError(f"cannot read the hub config {path}: {exc}") from None
    unknown = set(data) - {"users", "orgs"}
    if unknown:
        raise ValueError(f"{path}: unknown section(s) {sorted(unknown)}; expected [users.NAME] and [orgs.NAME]")
    return dict(data.get("users", {})), dict(data.get("orgs", {}))


def _check_name(name: str, what: str) -> None:
    if not isinstance(name, str) or not is_valid_name(name):
        raise ValueError(f"invalid {what} name {name!r}: a {what} owns repos, so its name must use {NAME_RULE}")


def build_accounts(
    users: dict[str, str] | dict[str, dict[str, Any]] | None = None,
    orgs: dict[str, Any] | None = None,
) -> Accounts:
    """Validate users (``{name: token}`` or ``{name: {"token", "fullname", "email"}}``) and
    organisations (``{name: [members]}``, ``{name: {member: role}}`` or ``{name: {"members",
    "fullname", "private_by_default"}}``); ``ValueError`` names the first problem."""
    accounts: dict[str, Account] = {}
    for name, spec in (users or {}).items():
        _check_name(name, "user")
        info = spec if isinstance(spec, dict) else {"token": spec}
        token = info.get("token")
        if not isinstance(token, str) or not token.strip():
            raise ValueError(f"user {name!r} has no token")
        if name_key(name) in accounts:
            raise ValueError(f"user {name!r} is given twice (names are case-insensitive)")
        accounts[name_key(name)] = Account(name, token.strip(), str(info.get("fullname") or name), info.get("email"))
    tokens = [a.token for a in accounts.values()]
    if len(set(tokens)) != len(tokens):
        raise ValueError("two users share a token: every user needs a token of their own")
    organizations: dict[str, Organization] = {}
    for name, spec in (orgs or {}).items():
        _check_name(name, "organisation")
        if name_key(name) in accounts or name_key(name) in organizations:
            raise ValueError(f"organisation {name!r} has the name of a user or of another organisation")
        info = spec if isinstance(spec, dict) and "members" in spec else {"members": spec}
        raw = info.get("members") or {}
        members = {m: "write" for m in raw} if isinstance(raw, list) else dict(raw)
        table = {}
        for member, role in members.items():
            if name_key(member) not in accounts:
                raise ValueError(f"organisation {name!r}: member {member!r} is not a user of this server")
            if role not in ROLES:
                raise ValueError(f"organisation {name!r}: role {role!r} of {member!r} is not one of {ROLES}")
            table[name_key(member)] = role
        organizations[name_key(name)] = Organization(
            name, str(info.get("fullname") or name), table, bool(info.get("private_by_default", False))
        )
    return Accounts(accounts, organizations)


class Auth:
    """Maps bearer tokens to users, answers who may do what, and signs upload URLs."""

    def __init__(self, accounts: Accounts | dict[str, str], root: Path) -> None:
        self.accounts = accounts if isinstance(accounts, Accounts) else build_accounts(accounts)
        self._by_token = {hashlib.sha256(a.token.encode()).digest(): a.name for a in self.accounts.users.values()}
        self.users = frozenset(a.name for a in self.accounts.users.values())
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

    def account(self, name: str) -> Account | None:
        return self.accounts.users.get(name_key(name))

    def org(self, name: str) -> Organization | None:
        return self.accounts.orgs.get(name_key(name))

    def orgs_of(self, user: str) -> list[Organization]:
        return [o for o in self.accounts.orgs.values() if name_key(user) in o.members]

    def role(self, user: str | None, namespace: str) -> str | None:
        """``admin`` in one's own namespace, the member's role in an organisation, else None."""
        if user is None:
            return None
        if name_key(user) == name_key(namespace):
            return "admin"
        org = self.org(namespace)
        return org.members.get(name_key(user)) if org else None

    def can_read(self, user: str | None, namespace: str, private: bool) -> bool:
        return not private or self.role(user, namespace) is not None

    def can_write(self, user: str | None, namespace: str) -> bool:
        return self.role(user, namespace) in ("write", "admin")

    def is_admin(self, user: str | None, namespace: str) -> bool:
        return self.role(user, namespace) == "admin"

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
