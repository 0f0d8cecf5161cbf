"""The rules account and group names must follow.

A name becomes a POSIX user or group name on every host that reads the
directory (through SSSD or nslcd), an RDN value in a DN, and a key the store
compares case-insensitively. The rules are the portable intersection of those
uses: ASCII letters, digits and ``._-`` (what ``useradd`` and NAS firmware
accept; ASCII also makes case folding identical in Python and every database),
not starting with ``-`` or ``.`` (a leading ``-`` reads as a command-line option,
a leading ``.`` as a hidden file in home directories), and no trailing ``.``
(Samba and Windows clients strip it, making two names collide).
"""

from __future__ import annotations

import re

from ldapsrv.errors import InvalidValue

MAX_NAME_LENGTH = 150
"""Matches the width of the ``name`` columns in the store."""

_ALLOWED = re.compile(r"[A-Za-z0-9._-]*")
_FIRST = re.compile(r"[A-Za-z0-9_]")


def _validate(kind: str, name: object) -> str:
    if not isinstance(name, str):
        raise InvalidValue(f"{kind} name must be a string")
    if not 1 <= len(name) <= MAX_NAME_LENGTH:
        raise InvalidValue(
            f"{kind} name must be 1 to {MAX_NAME_LENGTH} characters long, got {len(name)}"
        )
    if _ALLOWED.fullmatch(name) is None:
        bad = next(c for c in name if _ALLOWED.fullmatch(c) is None)
        raise InvalidValue(
            f"{kind} name {name!r} may contain only ASCII letters, digits, '.', '_' and '-'"
            f" (found {bad!r})"
        )
    if _FIRST.fullmatch(name[0]) is None:
        raise InvalidValue(
            f"{kind} name {name!r} must start with a letter, a digit or an underscore"
        )
    if name.endswith("."):
        raise InvalidValue(f"{kind} name {name!r} must not end with a dot")
    return name


def validate_account_name(name: str) -> str:
    """Return ``name`` unchanged if it is a valid account name, else raise InvalidValue."""
    return _validate("account", name)


def validate_group_name(name: str) -> str:
    """Return ``name`` unchanged if it is a valid group name, else raise InvalidValue."""
    return _validate("group", name)
