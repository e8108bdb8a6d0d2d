"""Accounts on the local Hub: ``whoami``, user and organisation overviews, organisation members,
and the storage listing of one's repos (``list_user_repos``).

Organisations and their members come from the server's configuration (:mod:`.auth`); members write
to the organisation's namespace, so a team's adapters live under the team's name.
"""

from __future__ import annotations

from typing import Any

from flask import Request, Response

from .auth import Organization
from .errors import HubError
from .names import REPO_TYPES, name_key
from .read_api import paginate
from .routing import HubState, json_response, route


def _org_json(org: Organization, role: str | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"type": "org", "name": org.name, "fullname": org.fullname, "avatarUrl": "",
                           "isEnterprise": org.private_by_default}
    if role is not None:
        out["roleInOrg"] = role
    return out


@route("GET", "api/whoami-v2")
def whoami(state: HubState, req: Request) -> Response:
    user = state.require_user(req)
    account = state.auth.account(user)
    orgs = [_org_json(o, o.members[name_key(user)]) for o in state.auth.orgs_of(user)]
    return json_response(
        {
            "type": "user",
            "id": user,
            "name": user,
            "fullname": account.fullname if account else user,
            "email": account.email if account else None,
            "emailVerified": bool(account and account.email),
            "isPro": False,
            "orgs": orgs,
            "auth": {"type": "access_token", "accessToken": {"displayName": "adapterhub", "role": "write"}},
        }
    )


def _count(state: HubState, req: Request, namespace: str) -> dict[str, int]:
    counts = {}
    for repo_type in REPO_TYPES:
        counts[f"num{repo_type.capitalize()}"] = sum(
            1 for r in state.storage.list_repos(repo_type)
            if name_key(r.namespace) == name_key(namespace) and state.may_see(req, r)
        )
    return counts


@route("GET", "api/users/{user}/overview")
def user_overview(state: HubState, req: Request, user: str) -> Response:
    account = state.auth.account(user)
    if account is None:
        raise HubError(404, f"User {user!r} not found.")
    orgs = [_org_json(o) for o in state.auth.orgs_of(account.name)]
    return json_response({"user": account.name, "fullname": account.fullname, "avatarUrl": "", "type": "user",
                          "isPro": False, "orgs": orgs, **_count(state, req, account.name)})


@route("GET", "api/organizations/{org}/overview")
def org_overview(state: HubState, req: Request, org: str) -> Response:
    found = state.auth.org(org)
    if found is None:
        raise HubError(404, f"Organization {org!r} not found.")
    return json_response({**_org_json(found), "numUsers": len(found.members), **_count(state, req, found.name)})


@route("GET", "api/organizations/{org}/members")
def org_members(state: HubState, req: Request, org: str) -> Response:
    found = state.auth.org(org)
    if found is None:
        raise HubError(404, f"Organization {org!r} not found.")
    items = []
    for key, role in sorted(found.members.items()):
        account = state.auth.account(key)
        if account is not None:
            items.append({"user": account.name, "fullname": account.fullname, "avatarUrl": "", "type": "user",
                          "role": role})
    return paginate(req, state, items, f"/api/organizations/{org}/members")


@route("GET", "api/settings/repositories")
@route("GET", "api/organizations/{org}/settings/repositories")
def repo_storage(state: HubState, req: Request, org: str | None = None) -> Response:
    user = state.require_user(req)
    namespace = org or user
    if state.auth.role(user, namespace) is None:
        raise HubError(403, f"You are not a member of {namespace!r}.")
    items = []
    for repo_type in REPO_TYPES:
        for repo in state.storage.list_repos(repo_type):
            if name_key(repo.namespace) != name_key(namespace):
                continue
            head = state.storage.resolve(repo, "main")
            items.append({"id": repo.id, "type": repo.singular_type, "updatedAt": head.date,
                          "visibility": "private" if repo.private else "public",
                          "storage": sum(e.size for e in head.files.values()), "storagePercent": 0})
    return paginate(req, state, items, req.path)


@route("GET", "api/tasks")
def tasks(state: HubState, req: Request) -> Response:
    return json_response({})
