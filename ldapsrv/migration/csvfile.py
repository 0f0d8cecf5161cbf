"""``ldapsrv import-csv``: a spreadsheet of people (one row each) and their groups.

The first row names the columns (any order, any case; unknown columns are an
error, so a typo does not silently drop data). Only ``uid`` is required:

=================  ===============================================================
uid                the username (required)
display_name / cn  the display name
given_name         given name (also ``givenName``)
surname            surname (also ``sn``)
mail               e-mail address
uid_number         uidNumber (empty: allocated)          also ``uidNumber``
gid_number         primary gidNumber (empty: the default primary group)  ``gidNumber``
home_directory     home directory (empty: the configured template)
login_shell        login shell (empty: the configured default)
gecos              GECOS field
groups             group names separated by ``;`` (created when missing, gid allocated)
password_hash      a hash another system made ({SSHA}..., {CRYPT}$6$..., or a bare
                   ``$6$...``/``$1$...``/``$2b$...`` from /etc/shadow); never a clear password
=================  ===============================================================

Empty cells mean "not said" (an existing person keeps that attribute).
"""

from __future__ import annotations

import csv
import io

from ldapsrv.directory.names import validate_account_name, validate_group_name
from ldapsrv.errors import InvalidValue
from ldapsrv.migration.mapping import MappingError, normalize_password_hash
from ldapsrv.migration.records import ImportBatch, ImportedGroup, ImportedPerson

_ALIASES = {
    "uid": "uid",
    "username": "uid",
    "display_name": "display_name",
    "displayname": "display_name",
    "cn": "display_name",
    "given_name": "given_name",
    "givenname": "given_name",
    "surname": "surname",
    "sn": "surname",
    "mail": "mail",
    "uid_number": "uid_number",
    "uidnumber": "uid_number",
    "gid_number": "gid_number",
    "gidnumber": "gid_number",
    "home_directory": "home_directory",
    "homedirectory": "home_directory",
    "login_shell": "login_shell",
    "loginshell": "login_shell",
    "gecos": "gecos",
    "groups": "groups",
    "password_hash": "password_hash",
}


def _columns(header: list[str]) -> list[str]:
    columns = []
    for name in header:
        key = _ALIASES.get(name.strip().lower())
        if key is None:
            raise MappingError(
                [f"line 1: unknown column {name!r} (known: {', '.join(sorted(set(_ALIASES)))})"]
            )
        if key in columns:
            raise MappingError([f"line 1: column {name!r} appears twice"])
        columns.append(key)
    if "uid" not in columns:
        raise MappingError(["line 1: the uid column is required"])
    return columns


def _number(row: dict[str, str], column: str, where: str) -> int | None:
    text = row.get(column, "").strip()
    if not text:
        return None
    if not text.isdigit() or int(text) < 1:
        raise InvalidValue(f"{where}: {column} {text!r} is not a positive number")
    return int(text)


def parse_csv(text: str) -> ImportBatch:
    """People and groups of a CSV file; MappingError lists every bad row."""
    reader = csv.reader(io.StringIO(text))
    rows = [row for row in reader]
    if not rows:
        raise MappingError(["the file is empty"])
    columns = _columns(rows[0])
    batch = ImportBatch()
    problems: list[str] = []
    members: dict[str, list[str]] = {}
    for number, values in enumerate(rows[1:], start=2):
        if not any(value.strip() for value in values):
            continue
        where = f"line {number}"
        if len(values) != len(columns):
            problems.append(f"{where}: {len(values)} cells, the header has {len(columns)}")
            continue
        row = {column: value.strip() for column, value in zip(columns, values, strict=True)}
        try:
            name = validate_account_name(row["uid"])
            where = f"line {number} ({name})"
            password_hash = None
            if row.get("password_hash"):
                password_hash, reason = normalize_password_hash(row["password_hash"])
                if password_hash is None:
                    batch.notes.append(f"no password for person {name} ({where}): {reason}")
            group_names = [g.strip() for g in row.get("groups", "").split(";") if g.strip()]
            for group in group_names:
                validate_group_name(group)
                members.setdefault(group, []).append(name)
            batch.people.append(
                ImportedPerson(
                    name=name,
                    source=where,
                    uid_number=_number(row, "uid_number", where),
                    gid_number=_number(row, "gid_number", where),
                    display_name=row.get("display_name") or None,
                    given_name=row.get("given_name") or None,
                    surname=row.get("surname") or None,
                    mail=row.get("mail") or None,
                    home_directory=row.get("home_directory") or None,
                    login_shell=row.get("login_shell") or None,
                    gecos=row.get("gecos") or None,
                    password_hash=password_hash,
                )
            )
        except InvalidValue as exc:
            text_ = str(exc)
            problems.append(text_ if text_.startswith("line ") else f"{where}: {text_}")
    if problems:
        raise MappingError(problems)
    batch.groups = [
        ImportedGroup(name=group, source=f"groups column ({group})", members=tuple(names))
        for group, names in members.items()
    ]
    return batch
