"""``ldapsrv user ...`` and ``ldapsrv group ...``: admin commands over the control socket.

Each sub-command is one row of ``_COMMANDS``: its wire command, how its
argv becomes wire arguments, and how the result is shown to a human. The
lead's ``ldapsrv/cli.py`` calls ``add_admin_commands`` while building its
parser and ``run_admin_command`` when the parsed namespace carries
``admin_command`` (see ``is_admin_command``). Later issues add rows (and
top-level groups such as ``service-account`` and ``token``) here.

Passwords never come from argv (visible in ``ps`` and shell history): only
from stdin with ``--password-stdin``, or typed at a terminal without echo.
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

ADMIN_GROUPS = frozenset({"user", "group"})
"""Top-level sub-commands this module owns."""


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
)  # fmt: skip

_BY_WIRE = {c.wire: c for c in _COMMANDS}

_GROUP_HELP = {"user": "manage people", "group": "manage groups"}


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
    """Register ``user`` and ``group`` with their sub-commands on ``subparsers``.

    Every leaf parser sets ``admin_command`` (the wire command name) on the
    namespace; dispatch on it with ``is_admin_command``/``run_admin_command``.
    """
    common = _common_options()
    actions: dict[str, argparse._SubParsersAction[argparse.ArgumentParser]] = {}
    for group in dict.fromkeys(c.group for c in _COMMANDS):
        parser = subparsers.add_parser(group, help=_GROUP_HELP.get(group))
        actions[group] = parser.add_subparsers(dest="admin_action", metavar="ACTION")
        actions[group].required = True
    for command in _COMMANDS:
        leaf = actions[command.group].add_parser(
            command.action, help=command.help, description=command.help, parents=[common]
        )
        command.configure(leaf)
        leaf.set_defaults(admin_command=command.wire)


def is_admin_command(args: argparse.Namespace) -> bool:
    return isinstance(getattr(args, "admin_command", None), str)


def socket_path(args: argparse.Namespace) -> Path:
    """``--socket`` if given, else ``server.control_socket`` of ``--config`` (or defaults)."""
    if args.socket is not None:
        return Path(args.socket)
    return load_config(args.config).control_socket


def run_admin_command(args: argparse.Namespace, timeout: float = DEFAULT_TIMEOUT) -> int:
    """Run the parsed admin command; print its result. Returns the exit status."""
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


def main(argv: Sequence[str] | None = None) -> int:
    """Admin commands on their own (``python -m ldapsrv.admin.cli``), for tests
    and for running before ``ldapsrv/cli.py`` wires them in."""
    parser = argparse.ArgumentParser(prog="ldapsrv")
    add_admin_commands(parser.add_subparsers(dest="command", metavar="COMMAND", required=True))
    return run_admin_command(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
