"""user.* and group.* commands: populate the directory while the server runs.

Each handler does its blocking work (SQL, bcrypt) in one ``blocking.run`` call,
so a command costs one thread hop and never blocks the reactor. Name rules
live in the store (``ldapsrv.directory.names``), not here, so there is exactly
one definition of a valid name.
"""

from __future__ import annotations

from dataclasses import replace

from ldapsrv.admin.context import AdminContext, Caller
from ldapsrv.admin.errors import FORBIDDEN, INVALID, NOT_FOUND, AdminError
from ldapsrv.admin.issuing import audit
from ldapsrv.admin.ports import NewUser
from ldapsrv.admin.registry import (
    Access,
    Arg,
    Args,
    ArgType,
    CommandRegistry,
    Handler,
    Json,
    JsonObject,
    int_range,
    max_length,
    non_empty,
)
from ldapsrv.admin.render import render_group, render_user
from ldapsrv.auth.passwords import PasswordRejected, hash_password
from ldapsrv.directory.records import AccountKind, GroupRecord, Permission, UserRecord
from ldapsrv.errors import NotFound

_ID_NUMBER = (int_range(1, 2**31 - 1),)
_NAME = (non_empty, max_length(256))
_TEXT = (max_length(1024),)


def _utf8(value: str) -> None:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("is not valid Unicode (lone surrogate)") from None


def _hash(password: str, cost: int) -> str:
    """bcrypt a password; runs in the thread pool. Rule violations name the argument."""
    try:
        return hash_password(password.encode("utf-8"), cost)
    except PasswordRejected as exc:
        raise AdminError(INVALID, f"argument 'password': {exc}") from None


USER_NAME = Arg("name", ArgType.STRING, required=True, checks=_NAME, help="account name")
GROUP_NAME = Arg("name", ArgType.STRING, required=True, checks=_NAME, help="group name")
PASSWORD = Arg("password", ArgType.STRING, secret=True, checks=(_utf8,), help="new password")


async def user_add(ctx: AdminContext, caller: Caller, args: Args) -> JsonObject:
    password = args.optional_string("password")
    cost = ctx.config.bcrypt_cost
    spec = NewUser(
        name=args.string("name"),
        uid_number=args.optional_integer("uid_number"),
        gid_number=args.optional_integer("gid_number"),
        mail=args.optional_string("mail"),
        display_name=args.optional_string("display_name"),
        given_name=args.optional_string("given_name"),
        # person MUSTs sn: without a surname the name stands in, as adduser-like tools do
        surname=args.optional_string("surname") or args.string("name"),
    )

    # The event says whether a password was set, never what it is.
    event = audit(
        caller, "user.add", f"user {spec.name}", password_set=str(password is not None).lower()
    )

    def create() -> UserRecord:
        if password is None:
            return ctx.directory.create_user(spec, audit=event)
        hashed = replace(spec, password_hash=_hash(password, cost))
        return ctx.directory.create_user(hashed, audit=event)

    user = await ctx.blocking.run(create)
    return render_user(user, ctx.config.base_dn)


async def user_list(ctx: AdminContext, caller: Caller, args: Args) -> JsonObject:
    users = await ctx.blocking.run(ctx.directory.list_users)
    rendered: list[Json] = [render_user(u, ctx.config.base_dn) for u in users]
    return {"users": rendered}


def _not_a_person(ctx: AdminContext, name: str) -> AccountKind | None:
    """The kind of the service account ``name``, or None. Blocking. The store's
    people-side methods never see service accounts, so their NotFound alone
    would tell an admin who typed a service account's name the wrong story."""
    try:
        return ctx.service_accounts.get_service_account(name).kind
    except NotFound:
        return None


def _person_only(ctx: AdminContext, name: str, instead: str) -> None:
    kind = _not_a_person(ctx, name)
    if kind is not None:
        label = kind.value.replace("_", " ")
        raise AdminError(NOT_FOUND, f"{name!r} is a {label}, not a person: {instead}")


async def user_show(ctx: AdminContext, caller: Caller, args: Args) -> JsonObject:
    name = args.string("name")

    def show() -> UserRecord:
        try:
            return ctx.directory.get_user(name)
        except NotFound:
            _person_only(ctx, name, f"use 'ldapsrv service-account show {name}'")
            raise

    return render_user(await ctx.blocking.run(show), ctx.config.base_dn)


async def user_delete(ctx: AdminContext, caller: Caller, args: Args) -> JsonObject:
    name = args.string("name")

    def delete() -> None:
        try:
            ctx.directory.delete_user(name, audit=audit(caller, "user.delete", f"user {name}"))
        except NotFound:
            _person_only(ctx, name, f"use 'ldapsrv service-account delete {name}'")
            raise

    await ctx.blocking.run(delete)
    return {"name": name, "deleted": True}


async def user_set_password(ctx: AdminContext, caller: Caller, args: Args) -> JsonObject:
    name = args.string("name")
    password = args.string("password")
    cost = ctx.config.bcrypt_cost

    def set_password() -> None:
        try:
            event = audit(caller, "user.set_password", f"user {name}")  # no secret in it
            ctx.directory.set_password_hash(name, _hash(password, cost), audit=event)
        except NotFound:
            if _not_a_person(ctx, name) is not None:
                raise AdminError(
                    FORBIDDEN,
                    f"{name!r} is a service account: service accounts have no password "
                    "and bind only with an app-password token "
                    f"('ldapsrv token create --user {name}' or 'ldapsrv token rotate')",
                ) from None
            raise

    await ctx.blocking.run(set_password)
    return {"name": name, "password_set": True}


async def _set_disabled(
    ctx: AdminContext, caller: Caller, args: Args, disabled: bool
) -> JsonObject:
    """user.disable / user.enable: people only. A disabled person cannot bind,
    and shows the lock attributes SSSD understands; nothing else changes."""
    name = args.string("name")
    action = "user.disable" if disabled else "user.enable"

    def change() -> UserRecord:
        try:
            event = audit(caller, action, f"user {name}")
            ctx.directory.set_disabled(name, disabled, audit=event)
        except NotFound:
            _person_only(
                ctx,
                name,
                "service accounts bind only with tokens: revoke them with "
                "'ldapsrv token delete IDENTIFIER' (see 'ldapsrv token list --user "
                f"{name}')",
            )
            raise
        return ctx.directory.get_user(name)

    return render_user(await ctx.blocking.run(change), ctx.config.base_dn)


async def user_disable(ctx: AdminContext, caller: Caller, args: Args) -> JsonObject:
    return await _set_disabled(ctx, caller, args, True)


async def user_enable(ctx: AdminContext, caller: Caller, args: Args) -> JsonObject:
    return await _set_disabled(ctx, caller, args, False)


async def group_add(ctx: AdminContext, caller: Caller, args: Args) -> JsonObject:
    name = args.string("name")
    group = await ctx.blocking.run(
        ctx.directory.create_group,
        name,
        gid_number=args.optional_integer("gid_number"),
        description=args.optional_string("description"),
        audit=audit(caller, "group.add", f"group {name}"),
    )
    return render_group(group, ctx.config.base_dn)


async def group_list(ctx: AdminContext, caller: Caller, args: Args) -> JsonObject:
    groups = await ctx.blocking.run(ctx.directory.list_groups)
    rendered: list[Json] = [render_group(g, ctx.config.base_dn) for g in groups]
    return {"groups": rendered}


async def group_show(ctx: AdminContext, caller: Caller, args: Args) -> JsonObject:
    group = await ctx.blocking.run(ctx.directory.get_group, args.string("name"))
    return render_group(group, ctx.config.base_dn)


async def group_delete(ctx: AdminContext, caller: Caller, args: Args) -> JsonObject:
    name = args.string("name")
    event = audit(caller, "group.delete", f"group {name}")
    await ctx.blocking.run(ctx.directory.delete_group, name, audit=event)
    return {"name": name, "deleted": True}


async def group_add_member(ctx: AdminContext, caller: Caller, args: Args) -> JsonObject:
    group_name, user_name = args.string("group"), args.string("user")

    event = audit(caller, "group.add_member", f"group {group_name}", member=user_name)

    def add() -> GroupRecord:
        ctx.directory.add_member(group_name, user_name, audit=event)
        return ctx.directory.get_group(group_name)

    return render_group(await ctx.blocking.run(add), ctx.config.base_dn)


async def group_remove_member(ctx: AdminContext, caller: Caller, args: Args) -> JsonObject:
    group_name, user_name = args.string("group"), args.string("user")

    event = audit(caller, "group.remove_member", f"group {group_name}", member=user_name)

    def remove() -> GroupRecord:
        ctx.directory.remove_member(group_name, user_name, audit=event)
        return ctx.directory.get_group(group_name)

    return render_group(await ctx.blocking.run(remove), ctx.config.base_dn)


def register(registry: CommandRegistry) -> None:
    """Add the user.* and group.* commands to ``registry``."""
    accounts = Access(Permission.MANAGE_ACCOUNTS)
    groups = Access(Permission.MANAGE_GROUPS)

    def r(name: str, handler: Handler, args: tuple[Arg, ...], summary: str) -> None:
        access = accounts if name.startswith("user.") else groups
        registry.register(name, handler, args, summary, access=access)

    membership = (
        Arg("group", ArgType.STRING, required=True, checks=_NAME, help="group name"),
        Arg("user", ArgType.STRING, required=True, checks=_NAME, help="account name"),
    )
    r(
        "user.add",
        user_add,
        (
            USER_NAME,
            PASSWORD,
            Arg("uid_number", ArgType.INTEGER, checks=_ID_NUMBER),
            Arg("gid_number", ArgType.INTEGER, checks=_ID_NUMBER),
            Arg("mail", ArgType.STRING, checks=_TEXT),
            Arg("display_name", ArgType.STRING, checks=_TEXT),
            Arg("given_name", ArgType.STRING, checks=_TEXT),
            Arg("surname", ArgType.STRING, checks=_TEXT),
        ),
        "create a person (uid/gid numbers allocated unless given)",
    )
    r("user.list", user_list, (), "list every person")
    r("user.show", user_show, (USER_NAME,), "show one person")
    r("user.delete", user_delete, (USER_NAME,), "delete a person and their memberships")
    r(
        "user.set_password",
        user_set_password,
        (USER_NAME, Arg("password", ArgType.STRING, True, True, (_utf8,))),
        "set a person's password",
    )
    r("user.disable", user_disable, (USER_NAME,), "stop a person from binding (kept, not deleted)")
    r("user.enable", user_enable, (USER_NAME,), "let a disabled person bind again")
    r(
        "group.add",
        group_add,
        (
            GROUP_NAME,
            Arg("gid_number", ArgType.INTEGER, checks=_ID_NUMBER),
            Arg("description", ArgType.STRING, checks=_TEXT),
        ),
        "create a group (gid number allocated unless given)",
    )
    r("group.list", group_list, (), "list every group")
    r("group.show", group_show, (GROUP_NAME,), "show one group")
    r("group.delete", group_delete, (GROUP_NAME,), "delete a group")
    r("group.add_member", group_add_member, membership, "add a person to a group")
    r("group.remove_member", group_remove_member, membership, "remove a person from a group")
