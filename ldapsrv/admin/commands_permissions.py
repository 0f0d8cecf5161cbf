"""permission.* commands: grant, revoke and list what accounts may see and do.

The rules (exactly one holder, which permissions take a scope) are the store's;
this module turns the holder arguments into the store's keywords, refuses
internal service accounts with the rule spelled out (they are the server's own,
and get permissions only through a group an admin can inspect), and audits
every change in the store's transaction.
"""

from __future__ import annotations

import functools

from ldapsrv.admin.context import AdminContext, Caller
from ldapsrv.admin.errors import FORBIDDEN, INVALID, UNAVAILABLE, AdminError
from ldapsrv.admin.issuing import audit
from ldapsrv.admin.registry import (
    Access,
    Arg,
    Args,
    ArgType,
    CommandRegistry,
    Json,
    JsonObject,
    max_length,
    non_empty,
)
from ldapsrv.admin.render import iso_utc
from ldapsrv.auth.ports import PermissionStore
from ldapsrv.directory.records import AccountKind, EffectivePermissions, GrantRecord, Permission
from ldapsrv.errors import NotFound

_NAME = (non_empty, max_length(256))
PERMISSION_NAMES = tuple(p.value for p in Permission)


def _known_permission(value: str) -> None:
    if value not in PERMISSION_NAMES:
        raise ValueError(f"must be one of {', '.join(PERMISSION_NAMES)}")


PERMISSION = Arg(
    "permission",
    ArgType.STRING,
    required=True,
    checks=(_known_permission,),
    help="search_full_directory, search (needs a scope), reset_password (scope optional), "
    "or a management permission (no scope): manage_accounts, manage_groups, manage_tokens, "
    "manage_permissions, read_audit, rotate_own_tokens",
)
USER = Arg("user", ArgType.STRING, checks=_NAME, help="the account (person or service account)")
GROUP = Arg("group", ArgType.STRING, checks=_NAME, help="the group (its members inherit it)")
SCOPE = Arg("scope", ArgType.STRING, checks=_NAME, help="the group the permission applies to")


def render_grant(grant: GrantRecord) -> JsonObject:
    return {
        "id": grant.id,
        "permission": grant.permission.value,
        "user": grant.account_name,
        "group": grant.group_name,
        "scope": grant.scope_group,
        "created": iso_utc(grant.created),
    }


def render_effective(effective: EffectivePermissions) -> JsonObject:
    search: list[Json] = list(sorted(effective.search_scopes))
    reset: list[Json] = list(sorted(effective.reset_password_scopes))
    management: list[Json] = [p.value for p in sorted(effective.management)]
    return {
        "search_full_directory": effective.full_directory,
        "search_scopes": search,
        "reset_password_everyone": effective.reset_password_everyone,
        "reset_password_scopes": reset,
        "management": management,
    }


def _store(ctx: AdminContext) -> PermissionStore:
    if ctx.permissions is None:
        raise AdminError(UNAVAILABLE, "this server was started without access control wired in")
    return ctx.permissions


def _holder(args: Args, *, required: bool) -> tuple[str | None, str | None]:
    user, group = args.optional_string("user"), args.optional_string("group")
    if user is not None and group is not None:
        raise AdminError(INVALID, "give either 'user' or 'group', not both")
    if required and user is None and group is None:
        raise AdminError(INVALID, "give the holder: 'user' (an account) or 'group'")
    return user, group


def _refuse_internal(ctx: AdminContext, user: str | None) -> None:
    """Blocking. An internal service account may not hold a grant directly."""
    if user is None:
        return
    try:
        account = ctx.service_accounts.get_service_account(user)
    except NotFound:
        return
    if account.kind is AccountKind.INTERNAL_SERVICE_ACCOUNT:
        raise AdminError(
            FORBIDDEN,
            f"{account.name!r} is an internal service account that ldapsrv manages itself: "
            "it cannot receive a grant directly; grant it to a group the account is in",
        )


def _target(user: str | None, group: str | None) -> str:
    return f"user {user}" if user is not None else f"group {group}"


async def permission_grant(ctx: AdminContext, caller: Caller, args: Args) -> JsonObject:
    store = _store(ctx)
    permission = Permission(args.string("permission"))
    user, group = _holder(args, required=True)
    scope = args.optional_string("scope")
    details = {"permission": permission.value, **({"scope": scope} if scope else {})}
    event = audit(caller, "permission.grant", _target(user, group), **details)

    def grant() -> GrantRecord:
        _refuse_internal(ctx, user)
        return store.grant(permission, account=user, group=group, scope_group=scope, audit=event)

    return render_grant(await ctx.blocking.run(grant))


async def permission_revoke(ctx: AdminContext, caller: Caller, args: Args) -> JsonObject:
    store = _store(ctx)
    permission = Permission(args.string("permission"))
    user, group = _holder(args, required=True)
    scope = args.optional_string("scope")
    details = {"permission": permission.value, **({"scope": scope} if scope else {})}
    event = audit(caller, "permission.revoke", _target(user, group), **details)
    await ctx.blocking.run(
        store.revoke, permission, account=user, group=group, scope_group=scope, audit=event
    )
    return {
        "permission": permission.value,
        "user": user,
        "group": group,
        "scope": scope,
        "revoked": True,
    }


async def permission_list(ctx: AdminContext, caller: Caller, args: Args) -> JsonObject:
    """Direct grants (all, an account's or a group's). For an account the answer
    also holds what it has in effect, its groups' grants included, since that
    is what decides what it sees."""
    store = _store(ctx)
    user, group = _holder(args, required=False)

    def list_() -> JsonObject:
        grants: list[Json] = [render_grant(g) for g in store.list_grants(account=user, group=group)]
        result: JsonObject = {"grants": grants}
        if user is not None:
            result["effective"] = render_effective(store.effective_permissions(user))
        return result

    return await ctx.blocking.run(list_)


def register(registry: CommandRegistry) -> None:
    """Add the permission.* commands to ``registry``."""
    holder = (PERMISSION, USER, GROUP, SCOPE)
    r = functools.partial(registry.register, access=Access(Permission.MANAGE_PERMISSIONS))
    r("permission.grant", permission_grant, holder, "give an account or a group a permission")
    r("permission.revoke", permission_revoke, holder, "take a permission back (same arguments)")
    r("permission.list", permission_list, (USER, GROUP), "list grants (of one account or group)")
