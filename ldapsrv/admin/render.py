"""Records -> JSON objects for admin results.

One rendering for the wire, so ``--json`` output and the human tables agree.
Rendering starts from whitelisted fields: a secret (password hash, token
hash) can only reach an admin if someone adds it here by name.
"""

from __future__ import annotations

from datetime import UTC, datetime

from ldapsrv.admin.registry import Json, JsonObject
from ldapsrv.directory.dn import escape_value
from ldapsrv.directory.records import GroupRecord, UserRecord


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
