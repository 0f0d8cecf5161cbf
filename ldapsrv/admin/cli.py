"""``ldapsrv user|group|service-account|token|permission ...``, ``ldapsrv audit``
and ``ldapsrv health``: admin commands over the control socket.

Each sub-command is one row of ``_COMMANDS``: its wire command, how its
argv becomes wire arguments, and how the result is shown to a human. The
lead's ``ldapsrv/cli.py`` calls ``add_admin_commands`` while building its
parser and ``run_admin_command`` when the parsed namespace carries
``admin_command`` (see ``is_admin_command``). Later issues add rows (and
top-level groups such as ``service-account`` and ``token``) here.

Passwords never come from argv (visible in ``ps`` and shell history): only
from stdin with ``--password-stdin``, or typed at a terminal without echo.
Token values only ever travel the other way, in the answer to ``create``,
``view`` and ``rotate``.

``ldapsrv health`` is not one wire call but a whole check (``ldapsrv.health``);
it shares the connection options and is dispatched from ``run_admin_command``.
``ldapsrv audit`` is a row with no action: one wire call, straight under
``ldapsrv``.
"""

from __future__ import annotations

import argparse
import getpass
import json
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from ldapsrv.admin.client import DEFAULT_TIMEOUT, call
from ldapsrv.admin.errors import AdminError
from ldapsrv.config import ConfigError, load_config
from ldapsrv.directory.records import Permission

ADMIN_GROUPS = frozenset(
    {"user", "group", "service-account", "token", "permission", "audit", "status", "health"}
)
"""Top-level sub-commands this module owns."""

HEALTH = "health"
"""``admin_command`` of ``ldapsrv health`` (a check, not a wire command)."""


class CliError(Exception):
    """A problem on the client side (bad input, unreadable config): exit 1."""


# --- rendering ----------------------------------------------------------------

_USER_FIELDS = (
    "name",
    "dn",
    "uuid",
    "uid_number",
    "gid_number",
    "display_name",
    "given_name",
    "surname",
    "mail",
    "home_directory",
    "login_shell",
    "gecos",
    "groups",
    "created",
    "modified",
)
_GROUP_FIELDS = (
    "name",
    "dn",
    "uuid",
    "gid_number",
    "description",
    "members",
    "created",
    "modified",
)


_SERVICE_ACCOUNT_FIELDS = (
    "name",
    "dn",
    "kind",
    "uuid",
    "description",
    "groups",
    "created",
    "modified",
)
_TOKEN_FIELDS = (
    "identifier",
    "account",
    "account_kind",
    "intent",
    "description",
    "expiring",
    "expires",
    "lifetime_seconds",
    "created",
    "rotated",
    "last_used",
    "last_used_address",
    "viewable",
)


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, list):
        return ", ".join(_text(v) for v in value)
    if isinstance(value, bool):
        return "yes" if value else "no"
    return str(value)


def format_record(record: dict[str, Any], fields: Sequence[str]) -> str:
    """``key: value`` lines, known fields first in a fixed order; empty ones left out."""
    keys = [f for f in fields if f in record] + [k for k in record if k not in fields]
    rows = [(k, _text(record[k])) for k in keys if record[k] not in (None, "", [])]
    width = max((len(k) for k, _ in rows), default=0)
    return "\n".join(f"{k + ':':<{width + 1}} {v}" for k, v in rows)


def format_table(rows: Sequence[dict[str, Any]], columns: Sequence[tuple[str, str]]) -> str:
    """An aligned table; ``columns`` are (heading, record key) pairs."""
    cells = [[heading for heading, _ in columns]]
    cells += [[_text(row.get(key)) for _, key in columns] for row in rows]
    widths = [max(len(line[i]) for line in cells) for i in range(len(columns))]
    return "\n".join(
        "  ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=True)).rstrip()
        for line in cells
    )


def _show_user(result: Any, ns: argparse.Namespace) -> str:
    return format_record(result, _USER_FIELDS)


def _show_group(result: Any, ns: argparse.Namespace) -> str:
    return format_record(result, _GROUP_FIELDS)


def _list_users(result: Any, ns: argparse.Namespace) -> str:
    users = result["users"]
    if not users:
        return "no users"
    columns = [
        ("NAME", "name"),
        ("UID", "uid_number"),
        ("GID", "gid_number"),
        ("DISPLAY NAME", "display_name"),
        ("MAIL", "mail"),
        ("GROUPS", "groups"),
    ]
    return format_table(users, columns)


def _list_groups(result: Any, ns: argparse.Namespace) -> str:
    groups = result["groups"]
    if not groups:
        return "no groups"
    columns = [("NAME", "name"), ("GID", "gid_number"), ("MEMBERS", "members")]
    columns.append(("DESCRIPTION", "description"))
    return format_table(groups, columns)


def _list_service_accounts(result: Any, ns: argparse.Namespace) -> str:
    accounts = result["service_accounts"]
    if not accounts:
        return "no service accounts"
    columns = [("NAME", "name"), ("KIND", "kind"), ("GROUPS", "groups")]
    columns.append(("DESCRIPTION", "description"))
    return format_table(accounts, columns)


def _token_table(tokens: Sequence[dict[str, Any]]) -> str:
    rows = [{**t, "expires": t.get("expires") or "never"} for t in tokens]
    columns = [
        ("IDENTIFIER", "identifier"),
        ("ACCOUNT", "account"),
        ("INTENT", "intent"),
        ("EXPIRES", "expires"),
        ("LAST USED", "last_used"),
        ("DESCRIPTION", "description"),
    ]
    return format_table(rows, columns)


def _show_service_account(result: Any, ns: argparse.Namespace) -> str:
    text = format_record(
        {k: v for k, v in result.items() if k != "tokens"}, _SERVICE_ACCOUNT_FIELDS
    )
    tokens = result.get("tokens", [])
    return f"{text}\n\ntokens:\n{_token_table(tokens) if tokens else 'none'}"


def _created_service_account(result: Any, ns: argparse.Namespace) -> str:
    """What an admin pastes into a NAS or sssd.conf: username, bind DN, token."""
    rows = {
        "username": result["name"],
        "bind DN": result.get("dn"),
        "token": result["token"],
        "token identifier": result["token_identifier"],
        "expires": result.get("expires") or "never",
        "group": result.get("group"),
    }
    return f"{format_record(rows, list(rows))}\n\n{result['notice']}"


def _deleted_service_account(result: Any, ns: argparse.Namespace) -> str:
    revoked = result.get("tokens_revoked", 0)
    return f"deleted service account {result['name']} ({revoked} token(s) revoked)"


def _list_tokens(result: Any, ns: argparse.Namespace) -> str:
    tokens = result["tokens"]
    return _token_table(tokens) if tokens else "no tokens"


def _show_token(result: Any, ns: argparse.Namespace) -> str:
    return format_record({**result, "expires": result.get("expires") or "never"}, _TOKEN_FIELDS)


def _token_with_value(result: Any, ns: argparse.Namespace) -> str:
    """create/rotate: the metadata, then the value on a line of its own."""
    meta = {k: v for k, v in result.items() if k not in ("value", "notice")}
    return f"{_show_token(meta, ns)}\n\ntoken: {result['value']}\n\n{result['notice']}"


def _token_value(result: Any, ns: argparse.Namespace) -> str:
    """view: the bare value, so ``$(ldapsrv token view ID)`` is the token."""
    return str(result["value"])


_GRANT_COLUMNS = [
    ("PERMISSION", "permission"),
    ("USER", "user"),
    ("GROUP", "group"),
    ("SCOPE", "scope"),
    ("CREATED", "created"),
]


def _show_grant(result: Any, ns: argparse.Namespace) -> str:
    holder = f"user {result['user']}" if result.get("user") else f"group {result['group']}"
    scope = f" scoped to group {result['scope']}" if result.get("scope") else ""
    return f"granted {result['permission']}{scope} to {holder}"


def _revoked_grant(result: Any, ns: argparse.Namespace) -> str:
    holder = f"user {result['user']}" if result.get("user") else f"group {result['group']}"
    scope = f" scoped to group {result['scope']}" if result.get("scope") else ""
    return f"revoked {result['permission']}{scope} from {holder}"


def _list_grants(result: Any, ns: argparse.Namespace) -> str:
    grants = result["grants"]
    text = format_table(grants, _GRANT_COLUMNS) if grants else "no grants"
    effective = result.get("effective")
    if effective is None:
        return text
    rows = {
        "full directory search": effective["search_full_directory"],
        "search scoped to": effective["search_scopes"] or "none",
        "reset passwords of everyone": effective["reset_password_everyone"],
        "reset passwords in": effective["reset_password_scopes"] or "none",
    }
    return f"{text}\n\nin effect (own grants and its groups'):\n{format_record(rows, list(rows))}"


def _show_audit(result: Any, ns: argparse.Namespace) -> str:
    events = [
        {
            **e,
            "details": ", ".join(f"{k}={v}" for k, v in sorted(e.get("details", {}).items())),
        }
        for e in result["events"]
    ]
    columns = [
        ("AT", "at"),
        ("ACTION", "action"),
        ("TARGET", "target"),
        ("DETAILS", "details"),
        ("ACTOR", "actor"),
    ]
    text = format_table(events, columns) if events else "no events"
    uses = [{**t, "last_used": t.get("last_used") or "never"} for t in result["token_use"]]
    use_columns = [
        ("TOKEN", "identifier"),
        ("ACCOUNT", "account"),
        ("LAST USED", "last_used"),
        ("FROM", "last_used_address"),
    ]
    use_text = format_table(uses, use_columns) if uses else "no tokens"
    return f"{text}\n\ntoken use:\n{use_text}"


def _show_status(result: Any, ns: argparse.Namespace) -> str:
    lines = [
        f"version:    ldapsrv {result['version']}",
        f"started:    {result['started']} (up {result['uptime_seconds']} s)",
        f"listening:  {' '.join(result['listeners']) or 'nothing'}",
        f"base DN:    {result['base_dn']}",
        f"database:   {result['database']} ({_database_state(result)})",
        f"connections: {_connections(result.get('connections'))}",
        f"workers:    {_workers(result['workers'])}",
        f"certificate: {_certificate(result)}",
        f"metrics:    {result.get('metrics') or 'off'}",
        f"throttling: {result['throttling']}",
    ]
    processes = result["workers"].get("processes") or []
    if processes:
        lines += ["", "worker processes:", _worker_table(processes)]
    expiring = result.get("expiring_tokens") or []
    window = result.get("expiry_warning_days")
    if expiring:
        token_columns = [
            ("TOKEN", "identifier"),
            ("ACCOUNT", "account"),
            ("EXPIRES", "expires_at"),
            ("DAYS LEFT", "days_left"),
        ]
        lines += ["", f"tokens expiring within {window} days:"]
        lines.append(format_table(expiring, token_columns))
    else:
        lines.append(f"no token expires within {window} days")
    lines += [f"WARNING: {w}" for w in result.get("warnings") or []]
    lines.append("")
    throttled = [
        {**t, "locked_until": t["locked_until"] or "-", "delay": f"{t['delay_seconds']:g} s"}
        for t in result["throttled"]
    ]
    columns = [
        ("KIND", "kind"),
        ("SUBJECT", "subject"),
        ("FAILURES", "failures"),
        ("LAST FAILURE", "last_failure"),
        ("LOCKED UNTIL", "locked_until"),
        ("DELAY", "delay"),
    ]
    table = format_table(throttled, columns) if throttled else "nothing is throttled"
    return "\n".join(lines) + "\nfailed binds:\n" + table


def _database_state(result: Any) -> str:
    reachable = result.get("database_reachable")
    if reachable is None:
        return str(result.get("database_kind"))
    if reachable:
        return f"{result['database_kind']}, reachable, {result['database_ms']:.1f} ms"
    return f"{result['database_kind']}, UNREACHABLE: {result.get('database_error')}"


def _workers(workers: Any) -> str:
    processes = workers.get("processes") or []
    if not processes:
        return f"{workers['threads']} threads (pid {workers['pid']})"
    return (
        f"{len(processes)} processes of {workers['threads']} threads each "
        f"(supervisor pid {workers['pid']}; connections above are their sum)"
    )


def _worker_table(processes: list[Any]) -> str:
    rows = [
        {
            "slot": p["slot"],
            "pid": p["pid"] or "-",
            "state": "serving" if p["ready"] else ("starting" if p["pid"] else "restarting"),
            "restarts": p["restarts"],
            "started": p["started"] or "-",
            "active": p["connections"]["active"],
            "accepted": p["connections"]["accepted"],
        }
        for p in processes
    ]
    columns = [
        ("SLOT", "slot"),
        ("PID", "pid"),
        ("STATE", "state"),
        ("RESTARTS", "restarts"),
        ("STARTED", "started"),
        ("ACTIVE", "active"),
        ("ACCEPTED", "accepted"),
    ]
    return format_table(rows, columns)


def _connections(connections: Any) -> str:
    if not connections:
        return "unknown"
    return f"{connections['active']} active, {connections['accepted']} accepted since start"


def _certificate(result: Any) -> str:
    cert = result.get("certificate")
    if cert is None:
        return f"unreadable ({result.get('certificate_error')})"
    return f"{cert['path']} expires {cert['not_after']} ({cert['days_left']} days left)"


def _said(template: str) -> Callable[[Any, argparse.Namespace], str]:
    def render(result: Any, ns: argparse.Namespace) -> str:
        return template.format(**vars(ns))

    return render


# --- argv -> wire arguments -----------------------------------------------------


def read_password(stdin: TextIO) -> str:
    """One password from stdin: the first line minus its line ending, nothing else.

    At a terminal it is typed twice without echo; from a pipe it is read as
    bytes so a password with leading or trailing spaces survives intact.
    """
    if stdin.isatty():
        first = getpass.getpass("Password: ")
        if getpass.getpass("Retype password: ") != first:
            raise CliError("passwords do not match")
        password = first
    else:
        raw = stdin.buffer.readline()
        if raw.endswith(b"\n"):
            raw = raw[:-1]
            if raw.endswith(b"\r"):
                raw = raw[:-1]
        try:
            password = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise CliError("the password on stdin is not valid UTF-8") from None
    if not password:
        raise CliError("no password given on stdin")
    return password


def _user_add_args(ns: argparse.Namespace) -> dict[str, Any]:
    args: dict[str, Any] = {"name": ns.name}
    for key in ("uid_number", "gid_number", "mail", "display_name", "given_name", "surname"):
        if getattr(ns, key) is not None:
            args[key] = getattr(ns, key)
    if ns.password_stdin:
        args["password"] = read_password(sys.stdin)
    return args


def _set_password_args(ns: argparse.Namespace) -> dict[str, Any]:
    return {"name": ns.name, "password": read_password(sys.stdin)}


def _group_add_args(ns: argparse.Namespace) -> dict[str, Any]:
    args: dict[str, Any] = {"name": ns.name}
    if ns.gid_number is not None:
        args["gid_number"] = ns.gid_number
    if ns.description is not None:
        args["description"] = ns.description
    return args


def _name_arg(ns: argparse.Namespace) -> dict[str, Any]:
    return {"name": ns.name}


def _no_args(ns: argparse.Namespace) -> dict[str, Any]:
    return {}


def _membership_args(ns: argparse.Namespace) -> dict[str, Any]:
    return {"group": ns.group, "user": ns.user}


def _expiry_args(ns: argparse.Namespace, args: dict[str, Any]) -> dict[str, Any]:
    if ns.no_expiring:
        args["expiring"] = False
    if ns.expires is not None:
        args["expires"] = ns.expires
    if ns.description is not None:
        args["description"] = ns.description
    return args


def _service_account_create_args(ns: argparse.Namespace) -> dict[str, Any]:
    args: dict[str, Any] = {"name": ns.name}
    if ns.create_group:
        args["create_group"] = True
    return _expiry_args(ns, args)


def _token_create_args(ns: argparse.Namespace) -> dict[str, Any]:
    args = {"identifier": ns.identifier, "user": ns.user, "intent": ns.intent}
    return _expiry_args(ns, args)


def _token_list_args(ns: argparse.Namespace) -> dict[str, Any]:
    return {"user": ns.user} if ns.user is not None else {}


def _identifier_arg(ns: argparse.Namespace) -> dict[str, Any]:
    return {"identifier": ns.identifier}


def _holder_args(ns: argparse.Namespace) -> dict[str, Any]:
    args: dict[str, Any] = {}
    if ns.user is not None:
        args["user"] = ns.user
    if ns.group is not None:
        args["group"] = ns.group
    return args


def _grant_args(ns: argparse.Namespace) -> dict[str, Any]:
    args = {"permission": ns.permission, **_holder_args(ns)}
    if ns.scope is not None:
        args["scope"] = ns.scope
    return args


def _audit_args(ns: argparse.Namespace) -> dict[str, Any]:
    args: dict[str, Any] = {}
    if ns.since is not None:
        args["since"] = ns.since
    if ns.limit is not None:
        args["limit"] = ns.limit
    return args


# --- the table --------------------------------------------------------------------

Configure = Callable[[argparse.ArgumentParser], None]


@dataclass(frozen=True, slots=True)
class CliCommand:
    group: str
    action: str
    wire: str
    help: str
    configure: Configure
    build_args: Callable[[argparse.Namespace], dict[str, Any]]
    render: Callable[[Any, argparse.Namespace], str]


def _positional(*names: str) -> Configure:
    def configure(parser: argparse.ArgumentParser) -> None:
        for name in names:
            parser.add_argument(name, metavar=name.upper())

    return configure


def _number(text: str) -> int:
    try:
        value = int(text, 10)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a number from 1, got {value}")
    return value


def _configure_user_add(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("name", metavar="NAME")
    parser.add_argument(
        "--password-stdin",
        action="store_true",
        help="read the password from the first line of stdin (without one the user cannot bind)",
    )
    parser.add_argument("--uid-number", type=_number, metavar="N")
    parser.add_argument("--gid-number", type=_number, metavar="N")
    parser.add_argument("--mail", metavar="M")
    parser.add_argument("--display-name", metavar="D")
    parser.add_argument("--given-name", metavar="G")
    parser.add_argument("--surname", metavar="S")


def _configure_set_password(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("name", metavar="NAME")
    parser.add_argument(
        "--password-stdin",
        action="store_true",
        required=True,
        help="read the new password from the first line of stdin",
    )


def _configure_group_add(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("name", metavar="NAME")
    parser.add_argument("--gid-number", type=_number, metavar="N")
    parser.add_argument("--description", metavar="D")


def _expiry_options(parser: argparse.ArgumentParser, default: str, description: str) -> None:
    when = parser.add_mutually_exclusive_group()
    when.add_argument(
        "--expires",
        metavar="DATE|DURATION",
        help=f"when the token expires: 2027-01-31, 2027-01-31T12:00:00Z, 90d, 12h, 1y "
        f"(default: {default}); it is then rotated automatically",
    )
    when.add_argument(
        "--no-expiring",
        action="store_true",
        help="the token never expires (and is never rotated automatically)",
    )
    parser.add_argument("--description", metavar="D", help=description)


def _configure_service_account_create(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("name", metavar="NAME")
    parser.add_argument(
        "--create-group",
        action="store_true",
        help="also create a group named NAME with the account as its member",
    )
    _expiry_options(parser, "360 days", "what the account is for")


def _configure_token_create(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--identifier", required=True, metavar="ID", help="unique token name")
    parser.add_argument(
        "--user", required=True, metavar="NAME", help="owning person or service account"
    )
    parser.add_argument(
        "--intent",
        choices=("app_password", "api"),
        default="app_password",
        help="app_password binds over LDAP (default); api is for the management API",
    )
    _expiry_options(parser, "1 year for app_password, 30 minutes for api", "what the token is for")


def _configure_token_list(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--user", metavar="NAME", help="only the tokens of this account")


_PERMISSIONS = tuple(p.value for p in Permission)


def _holder_options(parser: argparse.ArgumentParser, *, required: bool) -> None:
    holder = parser.add_mutually_exclusive_group(required=required)
    holder.add_argument("--user", metavar="NAME", help="a person or service account")
    holder.add_argument("--group", metavar="NAME", help="a group (its members inherit it)")


def _configure_grant(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "permission",
        metavar="PERMISSION",
        choices=_PERMISSIONS,
        help="search_full_directory, search (needs --scope), reset_password (--scope optional), "
        "or a management API permission (no --scope): manage_accounts, manage_groups, "
        "manage_tokens, manage_permissions, read_audit, rotate_own_tokens",
    )
    _holder_options(parser, required=True)
    parser.add_argument("--scope", metavar="GROUP", help="the group the permission applies to")


def _configure_permission_list(parser: argparse.ArgumentParser) -> None:
    _holder_options(parser, required=False)


def _configure_audit(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--since",
        metavar="WHEN",
        help="only events since then: a duration ago (1h, 7d), a date or an ISO date-time",
    )
    parser.add_argument("--limit", type=_number, metavar="N", help="the newest N (default 1000)")


_COMMANDS: tuple[CliCommand, ...] = (
    CliCommand(
        "user", "add", "user.add", "create a person",
        configure=_configure_user_add, build_args=_user_add_args, render=_show_user,
    ),
    CliCommand(
        "user", "list", "user.list", "list people",
        configure=_positional(), build_args=_no_args, render=_list_users,
    ),
    CliCommand(
        "user", "show", "user.show", "show a person",
        configure=_positional("name"), build_args=_name_arg, render=_show_user,
    ),
    CliCommand(
        "user", "delete", "user.delete", "delete a person",
        configure=_positional("name"), build_args=_name_arg,
        render=_said("deleted user {name}"),
    ),
    CliCommand(
        "user", "set-password", "user.set_password", "set a person's password",
        configure=_configure_set_password, build_args=_set_password_args,
        render=_said("password set for {name}"),
    ),
    CliCommand(
        "user", "disable", "user.disable", "stop a person from binding (kept, not deleted)",
        configure=_positional("name"), build_args=_name_arg,
        render=_said("disabled user {name}"),
    ),
    CliCommand(
        "user", "enable", "user.enable", "let a disabled person bind again",
        configure=_positional("name"), build_args=_name_arg,
        render=_said("enabled user {name}"),
    ),
    CliCommand(
        "group", "add", "group.add", "create a group",
        configure=_configure_group_add, build_args=_group_add_args, render=_show_group,
    ),
    CliCommand(
        "group", "list", "group.list", "list groups",
        configure=_positional(), build_args=_no_args, render=_list_groups,
    ),
    CliCommand(
        "group", "show", "group.show", "show a group",
        configure=_positional("name"), build_args=_name_arg, render=_show_group,
    ),
    CliCommand(
        "group", "delete", "group.delete", "delete a group",
        configure=_positional("name"), build_args=_name_arg,
        render=_said("deleted group {name}"),
    ),
    CliCommand(
        "group", "add-member", "group.add_member", "add a person to a group",
        configure=_positional("group", "user"), build_args=_membership_args,
        render=_said("added {user} to group {group}"),
    ),
    CliCommand(
        "group", "remove-member", "group.remove_member", "remove a person from a group",
        configure=_positional("group", "user"), build_args=_membership_args,
        render=_said("removed {user} from group {group}"),
    ),
    CliCommand(
        "service-account", "create", "service_account.create",
        "create a service account and its first token (shown once)",
        configure=_configure_service_account_create,
        build_args=_service_account_create_args, render=_created_service_account,
    ),
    CliCommand(
        "service-account", "list", "service_account.list", "list service accounts",
        configure=_positional(), build_args=_no_args, render=_list_service_accounts,
    ),
    CliCommand(
        "service-account", "show", "service_account.show",
        "show a service account and its tokens",
        configure=_positional("name"), build_args=_name_arg, render=_show_service_account,
    ),
    CliCommand(
        "service-account", "delete", "service_account.delete",
        "delete a service account, revoking its tokens",
        configure=_positional("name"), build_args=_name_arg, render=_deleted_service_account,
    ),
    CliCommand(
        "token", "create", "token.create", "create a token for a person or service account",
        configure=_configure_token_create, build_args=_token_create_args,
        render=_token_with_value,
    ),
    CliCommand(
        "token", "list", "token.list", "list tokens (no values)",
        configure=_configure_token_list, build_args=_token_list_args, render=_list_tokens,
    ),
    CliCommand(
        "token", "show", "token.show", "show a token's settings (not its value)",
        configure=_positional("identifier"), build_args=_identifier_arg, render=_show_token,
    ),
    CliCommand(
        "token", "view", "token.view", "print a token's current value",
        configure=_positional("identifier"), build_args=_identifier_arg, render=_token_value,
    ),
    CliCommand(
        "token", "delete", "token.delete", "revoke a token at once",
        configure=_positional("identifier"), build_args=_identifier_arg,
        render=_said("deleted token {identifier}"),
    ),
    CliCommand(
        "token", "rotate", "token.rotate", "give a token a new value (same settings)",
        configure=_positional("identifier"), build_args=_identifier_arg,
        render=_token_with_value,
    ),
    CliCommand(
        "permission", "grant", "permission.grant", "give an account or a group a permission",
        configure=_configure_grant, build_args=_grant_args, render=_show_grant,
    ),
    CliCommand(
        "permission", "revoke", "permission.revoke",
        "take a permission back (same arguments as grant)",
        configure=_configure_grant, build_args=_grant_args, render=_revoked_grant,
    ),
    CliCommand(
        "permission", "list", "permission.list",
        "list grants; for a user also what it has in effect through its groups",
        configure=_configure_permission_list, build_args=_holder_args, render=_list_grants,
    ),
    CliCommand(
        "audit", "", "audit.list", "show the audit trail and each token's last use",
        configure=_configure_audit, build_args=_audit_args, render=_show_audit,
    ),
    CliCommand(
        "status", "", "server.status",
        "show uptime, connections, workers, database, expiries, throttle",
        configure=_positional(), build_args=_no_args, render=_show_status,
    ),
)  # fmt: skip

_BY_WIRE = {c.wire: c for c in _COMMANDS}

_GROUP_HELP = {
    "user": "manage people",
    "group": "manage groups",
    "service-account": "manage service accounts (machines that bind with a token)",
    "token": "manage tokens (app passwords and API tokens)",
    "permission": "manage permissions (who may see and do what)",
}


def _common_options() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    where = common.add_argument_group("connection")
    where.add_argument(
        "--socket",
        type=Path,
        metavar="PATH",
        help="control socket of the running server (default: from --config)",
    )
    where.add_argument(
        "--config",
        type=Path,
        metavar="FILE",
        help="server config file to take the socket path from "
        "(default: built-in settings, i.e. ./data/control.sock)",
    )
    common.add_argument("--json", action="store_true", help="print the result as JSON")
    return common


def add_admin_commands(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``user``, ``group``, ``service-account``, ``token`` and
    ``permission`` with their sub-commands, and ``audit`` and ``health``, on
    ``subparsers``.

    Every leaf parser sets ``admin_command`` (the wire command name) on the
    namespace; dispatch on it with ``is_admin_command``/``run_admin_command``.
    """
    common = _common_options()
    actions: dict[str, argparse._SubParsersAction[argparse.ArgumentParser]] = {}
    for group in dict.fromkeys(c.group for c in _COMMANDS if c.action):
        parser = subparsers.add_parser(group, help=_GROUP_HELP.get(group))
        actions[group] = parser.add_subparsers(dest="admin_action", metavar="ACTION")
        actions[group].required = True
    for command in _COMMANDS:
        if not command.action:  # a top-level command such as ``ldapsrv audit``
            leaf = subparsers.add_parser(
                command.group, help=command.help, description=command.help, parents=[common]
            )
        else:
            leaf = actions[command.group].add_parser(
                command.action, help=command.help, description=command.help, parents=[common]
            )
        command.configure(leaf)
        leaf.set_defaults(admin_command=command.wire)
    from ldapsrv.health import configure_parser

    health_help = "check that a client can bind and search (exit 1 naming the failed step)"
    health = subparsers.add_parser(
        HEALTH, help=health_help, description=health_help, parents=[common]
    )
    configure_parser(health)
    health.set_defaults(admin_command=HEALTH)


def is_admin_command(args: argparse.Namespace) -> bool:
    return isinstance(getattr(args, "admin_command", None), str)


def socket_path(args: argparse.Namespace) -> Path:
    """``--socket`` if given, else ``server.control_socket`` of ``--config`` (or defaults)."""
    if args.socket is not None:
        return Path(args.socket)
    return load_config(args.config).control_socket


def run_admin_command(args: argparse.Namespace, timeout: float = DEFAULT_TIMEOUT) -> int:
    """Run the parsed admin command; print its result. Returns the exit status."""
    if getattr(args, "admin_command", None) == HEALTH:
        return _run_health(args)
    command = _BY_WIRE.get(getattr(args, "admin_command", None) or "")
    if command is None:
        print("ldapsrv: error: not an admin command", file=sys.stderr)
        return 2
    try:
        path = socket_path(args)
        result = call(path, command.wire, command.build_args(args), timeout=timeout)
    except (AdminError, ConfigError, CliError) as exc:
        print(f"ldapsrv: error: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(result, indent=2, ensure_ascii=False))
        return 0
    try:
        text = command.render(result, args)
    except (KeyError, TypeError, AttributeError):  # a server of another version
        print(
            f"ldapsrv: error: cannot display the server's answer to {command.wire}; "
            "--json shows it as is",
            file=sys.stderr,
        )
        return 1
    print(text)
    return 0


def _run_health(args: argparse.Namespace) -> int:
    from ldapsrv.health import run_health

    try:
        path = socket_path(args)
    except ConfigError as exc:
        print(f"ldapsrv: error: {exc}", file=sys.stderr)
        return 1
    return run_health(path, as_json=args.json, timeout=args.timeout)


def main(argv: Sequence[str] | None = None) -> int:
    """Admin commands on their own (``python -m ldapsrv.admin.cli``), for tests
    and for running before ``ldapsrv/cli.py`` wires them in."""
    parser = argparse.ArgumentParser(prog="ldapsrv")
    add_admin_commands(parser.add_subparsers(dest="command", metavar="COMMAND", required=True))
    return run_admin_command(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
