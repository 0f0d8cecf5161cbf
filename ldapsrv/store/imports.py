"""Importing people and groups from another directory, in one transaction.

The whole file is compared with the store and applied in a single transaction:
either every change is written, or (on any error, or for a dry run) none is.
Problems are collected, each naming its entry, and reported together. Re-running
the same import changes nothing: what already matches is "unchanged".

Rules: attributes the source does not carry are left as they are; an import
adds people, groups and memberships and updates attributes, but never deletes
anything or ends a membership. Imported uid/gid numbers are kept and the
allocator's counters are moved past them first (see ``_reserve_numbers``). A password
hash is replaced only while the stored one is still an imported one: once a
person has bound (and the hash was upgraded) or changed the password in
ldapsrv, ldapsrv's hash is the newer one and stays.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from datetime import datetime
from typing import Any

from sqlalchemy import insert, select, update
from sqlalchemy.engine import Connection

from ldapsrv.directory.records import AccountKind, AuditEvent
from ldapsrv.errors import DomainError, InvalidValue
from ldapsrv.migration.records import Change, ImportBatch, ImportedGroup, ImportedPerson
from ldapsrv.store.audit import AuditLog
from ldapsrv.store.base import (
    IN_CHUNK,
    IdKind,
    check_id_number,
    check_path,
    check_text,
    name_key,
)
from ldapsrv.store.engine import run
from ldapsrv.store.models import accounts, groups, memberships

# person attribute -> (column, label for messages)
_PERSON_TEXT = (
    ("display_name", "display name"),
    ("given_name", "given name"),
    ("surname", "surname"),
    ("mail", "mail"),
    ("gecos", "gecos"),
)
_PERSON_PATHS = (("home_directory", "home directory"), ("login_shell", "login shell"))


class ImportRefused(DomainError):
    """The import cannot be applied; ``problems`` names every entry at fault."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


class _RollBack(Exception):
    """Ends a dry run's transaction without committing, carrying its plan."""

    def __init__(self, changes: list[Change]) -> None:
        self.changes = changes


def _person_values(person: ImportedPerson) -> dict[str, Any]:
    """The columns ``person`` sets, checked like an admin's input (absent: left out)."""
    values: dict[str, Any] = {}
    for column, label in _PERSON_TEXT:
        checked = check_text(label, getattr(person, column), posix_field=column == "gecos")
        if checked is not None:
            values[column] = checked
    for column, label in _PERSON_PATHS:
        checked = check_path(label, getattr(person, column))
        if checked is not None:
            values[column] = checked
    if person.password_hash is not None:
        values["password_hash"] = check_text("password hash", person.password_hash)
    return values


class DirectoryImport(AuditLog):
    """``import_directory``: a batch of people and groups, compared and applied."""

    home_template: str
    default_shell: str

    def import_directory(
        self,
        batch: ImportBatch,
        *,
        dry_run: bool,
        keep_password: Callable[[str], bool],
        audit: AuditEvent | None = None,
    ) -> list[Change]:
        """Apply ``batch`` (or, with ``dry_run``, only say what would change).

        ``keep_password(stored_hash)`` is true for hashes an import must not
        replace (ldapsrv's own). Raises ImportRefused with every problem found;
        then nothing is written."""

        def work(conn: Connection) -> list[Change]:
            changes: list[Change] = []
            problems: list[str] = []
            now = self._now()
            self._reserve_numbers(conn, batch)
            for group in batch.groups:
                self._guard(problems, group.source, self._import_group, conn, group, now, changes)
            for person in batch.people:
                self._guard(
                    problems,
                    person.source,
                    self._import_person,
                    conn,
                    person,
                    now,
                    changes,
                    keep_password,
                )
            if problems:
                raise ImportRefused(problems)
            for group in batch.groups:
                self._import_members(conn, group, now, changes)
            changed = [c for c in changes if c.action in ("create", "update")]
            if audit is not None and changed and not dry_run:
                details = (
                    ("created", str(sum(c.action == "create" for c in changed))),
                    ("updated", str(sum(c.action == "update" for c in changed))),
                )
                self._insert_audit(conn, replace(audit, details=audit.details + details))
            if dry_run:
                raise _RollBack(changes)
            return changes

        try:
            return run(self.engine, work, write=True)
        except _RollBack as done:
            return done.changes

    # ------------------------------------------------------------ helpers

    @staticmethod
    def _guard(problems: list[str], source: str, step: Callable[..., None], *args: Any) -> None:
        try:
            step(*args)
        except DomainError as exc:
            problems.append(f"{source}: {exc}")

    def _reserve_numbers(self, conn: Connection, batch: ImportBatch) -> None:
        """Move the counters past the highest number of the file in each range,
        before anything is allocated: no number the file names is handed out,
        to an entry of this import (one without a number) or ever after."""
        wanted: dict[IdKind, list[int | None]] = {
            "uid": [person.uid_number for person in batch.people],
            "gid": [person.gid_number for person in batch.people]
            + [group.gid_number for group in batch.groups],
        }
        for kind, numbers in wanted.items():
            low, high = self.uid_range if kind == "uid" else self.gid_range
            in_range = [n for n in numbers if isinstance(n, int) and low <= n <= high]
            if in_range:
                self._reserve_number(conn, kind, max(in_range))

    def _taken_by_other(self, conn: Connection, kind: IdKind, number: int, own_id: int) -> None:
        owner = self._number_owner(conn, kind, number, own_id)
        if owner is not None:
            raise InvalidValue(f'{kind} number {number} is already taken by "{owner}"')

    def _import_group(
        self, conn: Connection, group: ImportedGroup, now: datetime, changes: list[Change]
    ) -> None:
        target = f"group {group.name}"
        gid = None if group.gid_number is None else check_id_number("gid", group.gid_number)
        description = check_text("description", group.description)
        row = conn.execute(
            select(groups.c.id, groups.c.gid_number, groups.c.description).where(
                groups.c.name_lower == name_key(group.name)
            )
        ).first()
        if row is None:
            if gid is not None:
                self._taken_by_other(conn, "gid", gid, 0)
            else:
                gid = self._allocate(conn, "gid")
            self._insert_group(conn, group.name, gid, description, now)
            changes.append(Change("create", target, f"gidNumber {gid}"))
            return
        diff: dict[str, Any] = {}
        if gid is not None and gid != row.gid_number:
            self._taken_by_other(conn, "gid", gid, row.id)
            diff["gid_number"] = gid
        if description is not None and description != row.description:
            diff["description"] = description
        if not diff:
            changes.append(Change("unchanged", target))
            return
        conn.execute(update(groups).where(groups.c.id == row.id).values(modified_at=now, **diff))
        changes.append(Change("update", target, ", ".join(sorted(diff))))

    def _import_person(
        self,
        conn: Connection,
        person: ImportedPerson,
        now: datetime,
        changes: list[Change],
        keep_password: Callable[[str], bool],
    ) -> None:
        target = f"person {person.name}"
        values = _person_values(person)
        uid = None if person.uid_number is None else check_id_number("uid", person.uid_number)
        gid = None if person.gid_number is None else check_id_number("gid", person.gid_number)
        row = conn.execute(
            select(accounts).where(accounts.c.name_lower == name_key(person.name))
        ).first()
        if row is None:
            self._create_person(conn, person, values, uid, gid, now)
            changes.append(Change("create", target, self._password_note(values)))
            return
        if row.kind != AccountKind.USER:
            raise InvalidValue(f'"{row.name}" is a service account in ldapsrv, not a person')
        diff = {column: value for column, value in values.items() if value != row._mapping[column]}
        kept = ""
        if "password_hash" in diff and row.password_hash and keep_password(row.password_hash):
            del diff["password_hash"]
            kept = "password kept (changed or upgraded in ldapsrv since the last import)"
        if uid is not None and uid != row.uid_number:
            self._taken_by_other(conn, "uid", uid, row.id)
            diff["uid_number"] = uid
        if gid is not None and gid != row.gid_number:
            diff["gid_number"] = gid
        if person.disabled is not None and person.disabled != bool(row.disabled):
            diff["disabled"] = person.disabled
        if not diff:
            changes.append(Change("unchanged", target, kept))
            return
        conn.execute(
            update(accounts).where(accounts.c.id == row.id).values(modified_at=now, **diff)
        )
        names = ["password" if c == "password_hash" else c for c in sorted(diff)]
        changes.append(Change("update", target, ", ".join(names) + (f"; {kept}" if kept else "")))

    def _create_person(
        self,
        conn: Connection,
        person: ImportedPerson,
        values: dict[str, Any],
        uid: int | None,
        gid: int | None,
        now: datetime,
    ) -> None:
        primary_group_id: int | None = None
        if gid is None:
            primary_group_id, gid = self._ensure_group(conn, self.default_primary_group, now)
        if uid is None:
            uid = self._allocate(conn, "uid")
        else:
            self._taken_by_other(conn, "uid", uid, 0)
        values.setdefault("home_directory", self.home_template.format(name=person.name))
        values.setdefault("login_shell", self.default_shell)
        account_id = self._insert_person(
            conn, person.name, uid, gid, now, values, disabled=bool(person.disabled)
        )
        if primary_group_id is not None:
            conn.execute(
                insert(memberships).values(group_id=primary_group_id, account_id=account_id)
            )

    @staticmethod
    def _password_note(values: dict[str, Any]) -> str:
        stored = values.get("password_hash")
        if stored is None:
            return "no password"
        scheme = stored[1 : stored.index("}")] if stored.startswith("{") else "ldapsrv"
        return f"password ({scheme})"

    def _import_members(
        self, conn: Connection, group: ImportedGroup, now: datetime, changes: list[Change]
    ) -> None:
        """Add the memberships ``group`` lacks: a few queries per group, not per member."""
        group_row = self._group_row(conn, group.name)
        wanted = {name_key(member): member for member in group.members}
        found: dict[str, int] = {}
        keys = list(wanted)
        for start in range(0, len(keys), IN_CHUNK):
            rows = conn.execute(
                select(accounts.c.id, accounts.c.name_lower).where(
                    accounts.c.name_lower.in_(keys[start : start + IN_CHUNK])
                )
            )
            found.update({row.name_lower: int(row.id) for row in rows})
        present = set(
            conn.execute(
                select(memberships.c.account_id).where(memberships.c.group_id == group_row.id)
            ).scalars()
        )
        added: list[int] = []
        for key, member in wanted.items():
            account_id = found.get(key)
            target = f"membership {group.name}/{member}"
            if account_id is None:
                changes.append(Change("skip", target, f"no account {member!r} in the file or here"))
            elif account_id not in present:
                present.add(account_id)
                added.append(account_id)
                changes.append(Change("create", target))
        if added:
            conn.execute(
                insert(memberships),
                [{"group_id": group_row.id, "account_id": account_id} for account_id in added],
            )
            self._touch_groups(conn, [group_row.id], now)
            for start in range(0, len(added), IN_CHUNK):
                self._touch_accounts(conn, added[start : start + IN_CHUNK], now)
