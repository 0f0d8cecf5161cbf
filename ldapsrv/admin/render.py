"""Records -> JSON objects for admin results.

One rendering for the wire, so ``--json`` output and the human tables agree.
Rendering starts from whitelisted fields: a secret (password hash, token
hash) can only reach an admin if someone adds it here by name.
"""

from __future__ import annotations

from datetime import UTC, datetime

from ldapsrv.admin.registry import Json, JsonObject
from ldapsrv.directory.dn import escape_value
from ldapsrv.directory.records import (
    AccountKind,
    GroupRecord,
    ServiceAccountRecord,
    TokenRecord,
    UserRecord,
)


def iso_utc(moment: datetime) -> str:
    """ISO 8601 in UTC with a ``Z``. Naive datetimes are UTC (SQLite drops the zone)."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def user_dn(name: str, base_dn: str | None) -> str | None:
    return f"cn={escape_value(name)},ou=users,{base_dn}" if base_dn else None


def group_dn(name: str, base_dn: str | None) -> str | None:
    return f"cn={escape_value(name)},ou=groups,{base_dn}" if base_dn else None


def render_user(user: UserRecord, base_dn: str | None) -> JsonObject:
    groups: list[Json] = list(user.group_names)
    result: JsonObject = {
        "name": user.name,
        "uuid": user.uuid,
        "uid_number": user.uid_number,
        "gid_number": user.gid_number,
        "display_name": user.display_name,
        "given_name": user.given_name,
        "surname": user.surname,
        "mail": user.mail,
        "home_directory": user.home_directory,
        "login_shell": user.login_shell,
        "gecos": user.gecos,
        "groups": groups,
        "disabled": user.disabled,
        "created": iso_utc(user.created),
        "modified": iso_utc(user.modified),
    }
    dn = user_dn(user.name, base_dn)
    if dn is not None:
        result["dn"] = dn
    return result


def render_group(group: GroupRecord, base_dn: str | None) -> JsonObject:
    members: list[Json] = list(group.member_names)
    result: JsonObject = {
        "name": group.name,
        "uuid": group.uuid,
        "gid_number": group.gid_number,
        "description": group.description,
        "members": members,
        "created": iso_utc(group.created),
        "modified": iso_utc(group.modified),
    }
    dn = group_dn(group.name, base_dn)
    if dn is not None:
        result["dn"] = dn
    return result


def _optional_time(moment: datetime | None) -> str | None:
    return iso_utc(moment) if moment is not None else None


def render_service_account(account: ServiceAccountRecord, base_dn: str | None) -> JsonObject:
    groups: list[Json] = list(account.group_names)
    result: JsonObject = {
        "name": account.name,
        "uuid": account.uuid,
        "kind": account.kind.value,
        "description": account.description,
        "groups": groups,
        "created": iso_utc(account.created),
        "modified": iso_utc(account.modified),
    }
    dn = user_dn(account.name, base_dn)
    if dn is not None:
        result["dn"] = dn
    return result


def token_viewable(token: TokenRecord, copies_on: bool) -> bool:
    """Whether ``token view`` will show this token's value: an encrypted copy
    exists, the config allows viewing, and it is not the server's own token."""
    return (
        copies_on
        and token.encrypted_value is not None
        and token.account_kind is not AccountKind.INTERNAL_SERVICE_ACCOUNT
    )


def render_token(token: TokenRecord, copies_on: bool) -> JsonObject:
    """A token's metadata. Whitelisted fields only: never ``secret_hash`` nor
    ``encrypted_value`` (the value itself is added by the three commands that
    may show it: create, view and rotate)."""
    return {
        "identifier": token.identifier,
        "account": token.account_name,
        "account_kind": token.account_kind.value,
        "intent": token.intent.value,
        "description": token.description,
        "expiring": token.expiring,
        "expires": _optional_time(token.expires_at),
        "lifetime_seconds": token.lifetime_seconds,
        "created": iso_utc(token.created),
        "last_used": _optional_time(token.last_used_at),
        "last_used_address": token.last_used_address,
        "rotated": _optional_time(token.rotated_at),
        "viewable": token_viewable(token, copies_on),
    }
