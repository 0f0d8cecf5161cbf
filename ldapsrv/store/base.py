"""What every part of the store shares: the engine and clock, name keys, value
checks, and the row helpers that more than one kind of write needs (group
rows, number allocation, "modified" stamps, membership names).

``SqlDirectory`` is assembled from mixins that each own one job (people and
groups, service accounts, tokens, audit); they all derive from ``StoreBase``
so they share these helpers instead of reaching into each other.
"""

from __future__ import annotations

import functools
import re
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterable
from contextlib import AbstractContextManager
from datetime import UTC, datetime
from typing import Any, Literal

from sqlalchemy import Engine, bindparam, insert, select, update
from sqlalchemy.engine import Connection

from ldapsrv.directory.records import AccountKind
from ldapsrv.errors import AlreadyExists, InvalidValue, RangeExhausted
from ldapsrv.store.engine import shared_reads
from ldapsrv.store.models import accounts, groups, id_allocators, memberships
from ldapsrv.store.sqlfilter import storable, visible_group

MAX_ID_NUMBER = 2**31 - 1
"""uid/gid numbers are signed 32-bit INTEGER columns on every backend."""

MAX_TEXT_LENGTH = 255
"""Width of the optional text columns (display name, mail, description, ...)."""

_ALLOCATION_WINDOW = 1024
"""How many taken numbers the allocator reads at a time while skipping."""

IN_CHUNK = 20000
"""Ids per IN list: below SQLite's 32766-variable limit, and far above any
page size, so a page's memberships are one query in practice."""

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")

IdKind = Literal["uid", "gid"]

_KIND_LABELS = {
    AccountKind.USER: "user",
    AccountKind.SERVICE_ACCOUNT: "service account",
    AccountKind.INTERNAL_SERVICE_ACCOUNT: "internal service account",
}


def name_key(name: str) -> str:
    """The ``name_lower`` to look ``name`` up by. A name no row can have (one
    with NUL, which PostgreSQL refuses even as a parameter) becomes "", which
    no valid name equals: the lookup finds nothing instead of failing."""
    return name.lower() if storable(name) else ""


def check_text(label: str, value: str | None, *, posix_field: bool = False) -> str | None:
    """Validate an optional attribute; '' means absent.

    Control characters are refused everywhere (they break LDIF, logs and
    terminals); ``:`` is refused in fields that end up in a passwd line.
    """
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise InvalidValue(f"{label} must be a string, got {value!r}")
    if len(value) > MAX_TEXT_LENGTH:
        raise InvalidValue(f"{label} must be at most {MAX_TEXT_LENGTH} characters long")
    if _CONTROL.search(value):
        raise InvalidValue(f"{label} must not contain control characters")
    if posix_field and ":" in value:
        raise InvalidValue(f"{label} must not contain ':' (it separates passwd fields)")
    return value


def check_id_number(kind: IdKind, number: object) -> int:
    if isinstance(number, bool) or not isinstance(number, int):
        raise InvalidValue(f"{kind} number must be an integer, got {number!r}")
    if not 1 <= number <= MAX_ID_NUMBER:
        # 0 is root: a directory must never hand out root's identity.
        raise InvalidValue(f"{kind} number must be from 1 to {MAX_ID_NUMBER}, got {number}")
    return number


def check_path(label: str, value: str | None) -> str | None:
    value = check_text(label, value, posix_field=True)
    if value is not None and not value.startswith("/"):
        raise InvalidValue(f"{label} must be an absolute path, got {value!r}")
    return value


def kind_label(kind: str) -> str:
    """How messages name an account of ``kind`` ("user", "service account", ...)."""
    return _KIND_LABELS.get(AccountKind(kind), kind)


@functools.lru_cache(maxsize=256)
def _related_statement(key: Any, other_key: Any, other: Any, only: Any) -> Any:
    """The names-across-memberships query of ``related_names``, ids as the expanding
    parameter ``ids``. Built once per (direction, condition): ``only`` comes from the
    memoised visibility conditions, so a viewer's searches reuse one statement and
    SQLAlchemy's cache key for it, which cost more than running it."""
    query = (
        select(key, other.c.name)
        .join(other, other.c.id == other_key)
        .where(key.in_(bindparam("ids", expanding=True)))
    )
    if only is not None and only is not True:
        query = query.where(only)
    return query.order_by(other.c.name_lower)


def related_names(
    conn: Connection,
    ids: list[int],
    *,
    key: Any,
    other_key: Any,
    other: Any,
    only: Any = None,
) -> dict[int, tuple[str, ...]]:
    """For each id in ``ids``, the names on the other side of its memberships,
    ordered case-insensitively: one query per page of ids.

    ``only``, a condition on ``other``, keeps just the names it holds for (the
    counterparts a viewer may see), in the same query."""
    if only is False:
        return {}
    found: defaultdict[int, list[str]] = defaultdict(list)
    query = _related_statement(key, other_key, other, only)
    for start in range(0, len(ids), IN_CHUNK):
        rows = conn.execute(query, {"ids": ids[start : start + IN_CHUNK]}).all()
        for owner, name in rows:
            found[owner].append(name)
    return {owner: tuple(names) for owner, names in found.items()}


def account_group_names(
    conn: Connection, rows: Iterable[Any], visible_to: str | None
) -> dict[int, tuple[str, ...]]:
    """The groups of each account row (people and service accounts alike), trimmed
    to the groups ``visible_to`` may see when set: one query per page."""
    return related_names(
        conn,
        [row.id for row in rows],
        key=memberships.c.account_id,
        other_key=memberships.c.group_id,
        other=groups,
        only=None if visible_to is None else visible_group(groups, visible_to),
    )


class StoreBase:
    """The engine, the clock and the row helpers shared by the store's mixins."""

    engine: Engine
    _clock: Callable[[], datetime]
    uid_range: tuple[int, int]
    gid_range: tuple[int, int]
    default_primary_group: str

    def reading(self) -> AbstractContextManager[None]:
        """A block whose reads on this thread share one transaction (see
        ``engine.shared_reads``): what one bind asks the store, in one round trip
        to the pool instead of one per question."""
        return shared_reads(self.engine)

    def _now(self) -> datetime:
        # Whole seconds: LDAP shows createTimestamp/modifyTimestamp to the
        # second, and a filter on them must compare what clients see.
        return self._clock().astimezone(UTC).replace(microsecond=0)

    def _refuse_existing_account(self, conn: Connection, name: str) -> None:
        """AlreadyExists when any account, of any kind, has ``name`` in any case:
        people and service accounts share ``ou=users`` and one bind namespace."""
        row = conn.execute(
            select(accounts.c.name, accounts.c.kind).where(accounts.c.name_lower == name_key(name))
        ).first()
        if row is None:
            return
        if row.kind == AccountKind.USER:
            raise AlreadyExists(f'user "{row.name}" already exists')
        raise AlreadyExists(f'account "{row.name}" already exists (a {kind_label(row.kind)})')

    def _group_row(self, conn: Connection, name: str) -> Any:
        return conn.execute(
            select(groups.c.id, groups.c.name, groups.c.gid_number).where(
                groups.c.name_lower == name_key(name)
            )
        ).first()

    def _insert_group(
        self, conn: Connection, name: str, gid: int, description: str | None, now: datetime
    ) -> int:
        group_id = conn.execute(
            insert(groups).values(
                uuid=str(uuid.uuid4()),
                name=name,
                name_lower=name.lower(),
                gid_number=gid,
                description=description,
                created_at=now,
                modified_at=now,
            )
        ).inserted_primary_key[0]  # type: ignore[index]
        return int(group_id)

    def _insert_person(
        self,
        conn: Connection,
        name: str,
        uid: int,
        gid: int,
        now: datetime,
        values: dict[str, Any],
        disabled: bool = False,
    ) -> int:
        """Insert a person's row (``values``: the checked optional columns); its id."""
        account_id = conn.execute(
            insert(accounts).values(
                uuid=str(uuid.uuid4()),
                kind="user",
                name=name,
                name_lower=name.lower(),
                disabled=disabled,
                uid_number=uid,
                gid_number=gid,
                created_at=now,
                modified_at=now,
                **values,
            )
        ).inserted_primary_key[0]  # type: ignore[index]
        return int(account_id)

    def _reserve_number(self, conn: Connection, kind: IdKind, number: int) -> None:
        """Move counter ``kind`` past ``number`` (one assigned from outside, e.g.
        imported) when it lies in the range ahead of the counter, so that the
        allocator never hands it out, even after its owner is deleted."""
        low, high = self.uid_range if kind == "uid" else self.gid_range
        if low <= number <= high and self._lock_counter(conn, kind) <= number:
            conn.execute(
                update(id_allocators)
                .where(id_allocators.c.name == kind)
                .values(next_value=number + 1)
            )

    def _number_owner(
        self, conn: Connection, kind: IdKind, number: int, except_id: int = 0
    ) -> str | None:
        """The name of the account (uid) or group (gid) holding ``number``, other
        than the row ``except_id``; None when it is free."""
        table = accounts if kind == "uid" else groups
        column = accounts.c.uid_number if kind == "uid" else groups.c.gid_number
        owner = conn.execute(
            select(table.c.name).where(column == number, table.c.id != except_id)
        ).scalar()
        return None if owner is None else str(owner)

    def _lock_counter(self, conn: Connection, kind: IdKind) -> int:
        """Lock counter ``kind`` until the transaction ends; return its next value."""
        next_value = conn.execute(
            select(id_allocators.c.next_value).where(id_allocators.c.name == kind).with_for_update()
        ).scalar()
        if next_value is None:
            # The migration seeds both rows; recreate one if someone removed
            # it. Two servers racing here collide on the primary key and the
            # loser's transaction is retried, finding the row.
            conn.execute(insert(id_allocators).values(name=kind, next_value=0))
            return 0
        return int(next_value)

    def _allocate(self, conn: Connection, kind: IdKind) -> int:
        """Hand out the next free number of ``kind`` from its range, or RangeExhausted."""
        low, high = self.uid_range if kind == "uid" else self.gid_range
        column = accounts.c.uid_number if kind == "uid" else groups.c.gid_number
        candidate = max(self._lock_counter(conn, kind), low)
        while candidate <= high:
            window_end = min(high, candidate + _ALLOCATION_WINDOW - 1)
            taken = set(
                conn.execute(
                    select(column).where(column >= candidate, column <= window_end)
                ).scalars()
            )
            while candidate <= window_end and candidate in taken:
                candidate += 1
            if candidate <= window_end:
                conn.execute(
                    update(id_allocators)
                    .where(id_allocators.c.name == kind)
                    .values(next_value=candidate + 1)
                )
                return candidate
        raise RangeExhausted(f"no free {kind} number left in the range {low}-{high}")

    def _touch_groups(self, conn: Connection, ids: Iterable[int], now: datetime) -> None:
        ids = list(ids)
        if ids:
            conn.execute(update(groups).where(groups.c.id.in_(ids)).values(modified_at=now))

    def _touch_accounts(self, conn: Connection, ids: Iterable[int], now: datetime) -> None:
        ids = list(ids)
        if ids:
            conn.execute(update(accounts).where(accounts.c.id.in_(ids)).values(modified_at=now))

    def _ensure_group(self, conn: Connection, name: str, now: datetime) -> tuple[int, int]:
        """(id, gid) of group ``name``, creating it with an allocated gid if missing."""
        row = self._group_row(conn, name)
        if row is None:
            # Serialise creators on the gid counter's lock, then look again:
            # another server may have created the group while we waited
            # (READ COMMITTED lets this statement see it).
            self._lock_counter(conn, "gid")
            row = self._group_row(conn, name)
        if row is not None:
            return int(row.id), int(row.gid_number)
        gid = self._allocate(conn, "gid")
        return self._insert_group(conn, name, gid, None, now), gid
