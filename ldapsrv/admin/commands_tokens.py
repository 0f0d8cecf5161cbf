"""token.* commands: app passwords and API tokens of any account but the server's own.

People may have app passwords too, so ``token.create`` takes any account
name; the store says NotFound when there is no such account. A token's value
is in the result of exactly three commands: ``create``, ``view`` and
``rotate``. Everywhere else (list, the audit trail, the log) only its
metadata appears: results are rendered from whitelisted fields, so neither the
bcrypt hash nor the encrypted copy can leak by accident.
"""

from __future__ import annotations

import functools

from ldapsrv.admin.context import AdminContext, Caller
from ldapsrv.admin.errors import FORBIDDEN, UNAVAILABLE, AdminError
from ldapsrv.admin.issuing import (
    DESCRIPTION,
    EXPIRES,
    EXPIRING,
    audit,
    copy_notice,
    new_token,
    refuse_internal_account,
    refuse_internal_token,
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
from ldapsrv.admin.render import iso_utc, render_token, token_viewable
from ldapsrv.auth.tokens import DEFAULT_LIFETIME
from ldapsrv.auth.vault import VaultError
from ldapsrv.directory.records import AccountKind, Permission, TokenIntent, TokenRecord
from ldapsrv.errors import NotFound

_INTENTS = tuple(i.value for i in TokenIntent)


def _intent(value: str) -> None:
    if value not in _INTENTS:
        raise ValueError(f"must be one of {', '.join(_INTENTS)}")


IDENTIFIER = Arg(
    "identifier",
    ArgType.STRING,
    required=True,
    checks=(non_empty, max_length(256)),
    help="the token's unique name, e.g. nas-backup",
)
ACCOUNT = Arg(
    "user",
    ArgType.STRING,
    checks=(non_empty, max_length(256)),
    help="the owning account: a person or a service account",
)


def _account_kind(ctx: AdminContext, name: str) -> AccountKind:
    """The kind of the account ``name``. Blocking. A name that is no service
    account is a person's or nobody's; ``create_token`` tells those apart."""
    try:
        return ctx.service_accounts.get_service_account(name).kind
    except NotFound:
        return AccountKind.USER


def _with_value(token: TokenRecord, value: str, ctx: AdminContext) -> JsonObject:
    result = render_token(token, ctx.config.tokens_viewable)
    result["value"] = value
    viewable = token_viewable(token, ctx.config.tokens_viewable)
    result["notice"] = copy_notice(token.identifier, viewable)
    return result


async def token_create(ctx: AdminContext, caller: Caller, args: Args) -> JsonObject:
    identifier = args.string("identifier")
    account = args.string("user")
    intent = TokenIntent(args.optional_string("intent") or TokenIntent.APP_PASSWORD.value)
    now = ctx.clock().replace(microsecond=0)  # the store keeps whole seconds
    expiry = resolve_expiry(args, now, DEFAULT_LIFETIME[intent])

    def create() -> JsonObject:
        refuse_internal_account(_account_kind(ctx, account), account, "given tokens")
        spec, issued = new_token(
            ctx,
            identifier=identifier,
            account_name=account,
            intent=intent,
            expiry=expiry,
            description=args.optional_string("description"),
        )
        event = audit(
            caller,
            "token.create",
            f"token {identifier}",
            account=account,
            intent=intent.value,
            expires=iso_utc(expiry.expires_at) if expiry.expires_at else "never",
        )
        token = ctx.tokens.create_token(spec, audit=event)
        return _with_value(token, issued.value, ctx)

    result = await ctx.blocking.run(create)
    ctx.tokens_changed()
    return result


async def token_list(ctx: AdminContext, caller: Caller, args: Args) -> JsonObject:
    tokens = await ctx.blocking.run(ctx.tokens.list_tokens, args.optional_string("user"))
    rendered: list[Json] = [render_token(t, ctx.config.tokens_viewable) for t in tokens]
    return {"tokens": rendered}


async def token_show(ctx: AdminContext, caller: Caller, args: Args) -> JsonObject:
    token = await ctx.blocking.run(ctx.tokens.get_token, args.string("identifier"))
    return render_token(token, ctx.config.tokens_viewable)


async def token_view(ctx: AdminContext, caller: Caller, args: Args) -> JsonObject:
    identifier = args.string("identifier")

    def view() -> JsonObject:
        token = ctx.tokens.get_token(identifier)
        refuse_internal_token(token, "viewed")
        if not ctx.config.tokens_viewable or token.encrypted_value is None or ctx.vault is None:
            why = (
                "viewable copies are off (tokens.viewable = false)"
                if not ctx.config.tokens_viewable
                else "the server kept no encrypted copy of it"
            )
            raise AdminError(
                FORBIDDEN,
                f"the value of token {token.identifier!r} was shown only once, when it was "
                f"created or last rotated, and cannot be shown again: {why}. "
                f"'ldapsrv token rotate {token.identifier}' makes a new value",
            )
        try:
            value = ctx.vault.decrypt(token.encrypted_value, token.lookup_id)
        except VaultError:
            raise AdminError(
                UNAVAILABLE,
                f"the stored copy of token {token.identifier!r} cannot be decrypted with the "
                "server's token key (tokens.key_file replaced?); rotate the token to get "
                "a new value",
            ) from None
        # Reading a secret changes nothing, but who read it belongs in the trail.
        ctx.service_accounts.record_audit(
            audit(caller, "token.view", f"token {token.identifier}", account=token.account_name)
        )
        return _with_value(token, value, ctx)

    return await ctx.blocking.run(view)


async def token_delete(ctx: AdminContext, caller: Caller, args: Args) -> JsonObject:
    identifier = args.string("identifier")

    def delete() -> JsonObject:
        token = ctx.tokens.get_token(identifier)
        refuse_internal_token(token, "deleted")
        event = audit(
            caller, "token.delete", f"token {token.identifier}", account=token.account_name
        )
        ctx.tokens.delete_token(token.identifier, audit=event)
        return {"identifier": token.identifier, "account": token.account_name, "deleted": True}

    return await ctx.blocking.run(delete)


async def token_rotate(ctx: AdminContext, caller: Caller, args: Args) -> JsonObject:
    identifier = args.string("identifier")
    rotator = ctx.rotator
    if rotator is None:
        raise AdminError(UNAVAILABLE, "token rotation is not set up on this server")

    def rotate() -> JsonObject:
        token = ctx.tokens.get_token(identifier)
        refuse_internal_token(token, "rotated")
        # The rotator writes the audit event and runs the rotation hook, the
        # same way for a rotation asked for here and one due to expiry.
        rotated, issued = rotator.rotate(
            token.identifier, actor=caller.describe(), channel=caller.channel
        )
        return _with_value(rotated, issued.value, ctx)

    result = await ctx.blocking.run(rotate)
    ctx.tokens_changed()
    return result


def token_owner(ctx: AdminContext, args: Args) -> str | None:
    """Blocking: the account the token named by ``identifier`` belongs to, or None
    when there is no such token (a self-service caller learns nothing more)."""
    try:
        return ctx.tokens.get_token(args.string("identifier")).account_name
    except NotFound:
        return None


def register(registry: CommandRegistry) -> None:
    """Add the token.* commands to ``registry``."""
    r = functools.partial(registry.register, access=Access(Permission.MANAGE_TOKENS))
    r(
        "token.create",
        token_create,
        (
            IDENTIFIER,
            Arg(ACCOUNT.name, ACCOUNT.type, True, checks=ACCOUNT.checks, help=ACCOUNT.help),
            Arg(
                "intent",
                ArgType.STRING,
                checks=(_intent,),
                help="app_password (LDAP bind, default, 1 year) or api (30 minutes)",
            ),
            EXPIRING,
            EXPIRES,
            DESCRIPTION,
        ),
        "create a token for a person or a service account (its value is shown here)",
    )
    r("token.list", token_list, (ACCOUNT,), "list tokens (of one account if given), no values")
    r("token.show", token_show, (IDENTIFIER,), "show one token's metadata, not its value")
    r("token.view", token_view, (IDENTIFIER,), "show a token's current value")
    r("token.delete", token_delete, (IDENTIFIER,), "revoke a token at once")
    r(
        "token.rotate",
        token_rotate,
        (IDENTIFIER,),
        "give a token a new value, same settings",
        access=Access(
            Permission.MANAGE_TOKENS, own=Permission.ROTATE_OWN_TOKENS, owner=token_owner
        ),
    )
