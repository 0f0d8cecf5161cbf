"""service_account.* commands: machine identities that bind with a token.

A service account is created together with its first token (an app password)
in one store transaction, so an admin never ends up with an account that
cannot bind, nor with a token whose account was refused. The token's value is
returned once, in the result of ``service_account.create``; it is neither
logged nor written to the audit trail.

Internal service accounts (the server's own, such as the health check's) are
listed with their kind so nothing is hidden, but the control socket offers no
way to create, change or delete one.
"""

from __future__ import annotations

import functools

from ldapsrv.admin.context import AdminContext, Caller
from ldapsrv.admin.errors import ALREADY_EXISTS, AdminError
from ldapsrv.admin.issuing import (
    DESCRIPTION,
    EXPIRES,
    EXPIRING,
    audit,
    copy_notice,
    new_token,
    refuse_internal_account,
    resolve_expiry,
)
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
from ldapsrv.admin.render import (
    iso_utc,
    render_service_account,
    render_token,
    token_viewable,
)
from ldapsrv.auth.ports import TokenStore
from ldapsrv.auth.tokens import SERVICE_ACCOUNT_TOKEN_LIFETIME
from ldapsrv.directory.names import validate_account_name
from ldapsrv.directory.records import Permission, TokenIntent
from ldapsrv.errors import NotFound

NAME = Arg(
    "name",
    ArgType.STRING,
    required=True,
    checks=(non_empty, max_length(256)),  # the store applies the full name rules
    help="account name (1-150 of A-Z a-z 0-9 . _ -), unique among all accounts",
)

_MAX_IDENTIFIER_TRIES = 100
_MAX_IDENTIFIER_LENGTH = 100
"""The store's limit on token identifiers; account names may be up to 150."""


def _free_identifier(tokens: TokenStore, name: str) -> str:
    """The first token's identifier: the account's name, so ``token view NAME``
    finds it, or ``NAME-2``, ``NAME-3``... when someone already took that one.
    Account names are made of the identifier alphabet, but may be longer, so
    the name is cut to fit. The store's unique index still decides if two
    admins race."""
    for attempt in range(1, _MAX_IDENTIFIER_TRIES + 1):
        suffix = "" if attempt == 1 else f"-{attempt}"
        candidate = name[: _MAX_IDENTIFIER_LENGTH - len(suffix)] + suffix
        try:
            tokens.get_token(candidate)
        except NotFound:
            return candidate
    raise AdminError(
        ALREADY_EXISTS,
        f"token identifiers {name!r} to {name}-{_MAX_IDENTIFIER_TRIES} are all taken; "
        "delete some of those tokens first",
    )


async def service_account_create(ctx: AdminContext, caller: Caller, args: Args) -> JsonObject:
    name = args.string("name")
    create_group = args.boolean("create_group")
    description = args.optional_string("description")
    now = ctx.clock().replace(microsecond=0)  # the store keeps whole seconds
    expiry = resolve_expiry(args, now, SERVICE_ACCOUNT_TOKEN_LIFETIME)

    def create() -> JsonObject:
        validate_account_name(name)  # before spending a bcrypt on a name the store refuses
        identifier = _free_identifier(ctx.tokens, name)
        spec, issued = new_token(
            ctx,
            identifier=identifier,
            account_name=name,
            intent=TokenIntent.APP_PASSWORD,
            expiry=expiry,
            description=f"created with service account {name}",
        )
        event = audit(
            caller,
            "service_account.create",
            f"service account {name}",
            create_group=str(create_group).lower(),
            token=identifier,
            expires=iso_utc(expiry.expires_at) if expiry.expires_at else "never",
        )
        account, token = ctx.service_accounts.create_service_account(
            name,
            description=description,
            create_group=create_group,
            token=spec,
            audit=event,
        )
        assert token is not None, "the store returns the token it was given"
        viewable = token_viewable(token, ctx.config.tokens_viewable)
        result = render_service_account(account, ctx.config.base_dn)
        result.update(
            token=issued.value,
            token_identifier=token.identifier,
            intent=token.intent.value,
            expiring=token.expiring,
            expires=iso_utc(token.expires_at) if token.expires_at is not None else None,
            group=name if create_group else None,
            notice=copy_notice(token.identifier, viewable),
        )
        return result

    result = await ctx.blocking.run(create)
    ctx.tokens_changed()
    return result


async def service_account_list(ctx: AdminContext, caller: Caller, args: Args) -> JsonObject:
    accounts = await ctx.blocking.run(ctx.service_accounts.list_service_accounts)
    rendered: list[Json] = [render_service_account(a, ctx.config.base_dn) for a in accounts]
    return {"service_accounts": rendered}


async def service_account_show(ctx: AdminContext, caller: Caller, args: Args) -> JsonObject:
    name = args.string("name")

    def show() -> JsonObject:
        account = ctx.service_accounts.get_service_account(name)
        tokens = ctx.tokens.list_tokens(account.name)
        result = render_service_account(account, ctx.config.base_dn)
        rendered: list[Json] = [render_token(t, ctx.config.tokens_viewable) for t in tokens]
        result["tokens"] = rendered
        return result

    return await ctx.blocking.run(show)


async def service_account_delete(ctx: AdminContext, caller: Caller, args: Args) -> JsonObject:
    name = args.string("name")

    def delete() -> JsonObject:
        account = ctx.service_accounts.get_service_account(name)
        refuse_internal_account(account.kind, account.name, "deleted")
        revoked = len(ctx.tokens.list_tokens(account.name))
        ctx.service_accounts.delete_service_account(
            account.name,
            audit=audit(
                caller,
                "service_account.delete",
                f"service account {account.name}",
                tokens_revoked=str(revoked),
            ),
        )
        return {"name": account.name, "deleted": True, "tokens_revoked": revoked}

    return await ctx.blocking.run(delete)


def register(registry: CommandRegistry) -> None:
    """Add the service_account.* commands to ``registry``."""
    r = functools.partial(registry.register, access=Access(Permission.MANAGE_ACCOUNTS))
    r(
        "service_account.create",
        service_account_create,
        (
            NAME,
            Arg(
                "create_group",
                ArgType.BOOLEAN,
                help="also create a group named after the account, with it as member",
            ),
            EXPIRING,
            EXPIRES,
            DESCRIPTION,
        ),
        "create a service account and its first token (an app password, shown once)",
    )
    r(
        "service_account.list",
        service_account_list,
        (),
        "list service accounts, internal ones included",
    )
    r(
        "service_account.show",
        service_account_show,
        (NAME,),
        "show a service account and its tokens (without their values)",
    )
    r(
        "service_account.delete",
        service_account_delete,
        (NAME,),
        "delete a service account: revokes its tokens, removes its memberships",
    )
