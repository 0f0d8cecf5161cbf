"""Failed-bind counters (``bind_failures``): the store side of ``ldapsrv.auth.throttle``.

The policy (what counts, when a key locks out) lives in ``ldapsrv.auth``; this
mixin only reads and writes the counters, in ways that hold when several
servers share the database:

* ``bind_failure_counts`` is one query for the three keys of a bind;
* ``record_bind_failures`` locks the keys' rows (``SELECT ... FOR UPDATE``;
  on SQLite the transaction starts with ``BEGIN IMMEDIATE``) and writes what
  the policy computes from them, all in one transaction. Two servers failing
  the same key at once queue on the row lock, so the second reads the first's
  count and both failures add up. When the row does not exist yet both insert
  it; the loser hits the primary key, and ``run`` retries its whole
  transaction, which then finds and updates the winner's row.

Rows are found by ``key_hash`` (SHA-256 of kind and key): keys come from
clients, can be any length and hold any character, and the hash is a fixed
width every backend indexes.
"""

from __future__ import annotations

import functools
import hashlib
import re
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any, cast

from sqlalchemy import and_, bindparam, delete, insert, or_, select, update
from sqlalchemy.engine import Connection

from ldapsrv.auth.throttle import FailureCount, KeyKind, ListedFailure, ThrottleKey
from ldapsrv.store.base import StoreBase
from ldapsrv.store.changes import THROTTLE
from ldapsrv.store.engine import run
from ldapsrv.store.throttle_models import bind_failures

SUBJECT_LENGTH = 255
_UNPRINTABLE = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def key_hash(key: ThrottleKey) -> str:
    """The row's ``key_hash``: SHA-256 (hex) of the kind and the normalised key."""
    data = f"{key.kind}\x00{key.key}".encode("utf-8", "surrogatepass")
    return hashlib.sha256(data).hexdigest()


def printable_subject(subject: str) -> str:
    """``subject`` as stored for display: control characters and lone surrogates
    replaced, at most 255 characters (what clients send is not trusted)."""
    text = _UNPRINTABLE.sub("?", subject)
    text = text.encode("utf-8", "replace").decode("utf-8")
    if len(text) > SUBJECT_LENGTH:
        text = text[: SUBJECT_LENGTH - 3] + "..."
    return text


def _count(row: Any) -> FailureCount:
    return FailureCount(
        failures=int(row.failures),
        first_failure_at=row.first_failure_at,
        last_failure_at=row.last_failure_at,
        locked_until=row.locked_until,
    )


def _where_keys(hashes: dict[str, ThrottleKey]) -> Any:
    return or_(
        *(
            and_(bind_failures.c.key_kind == key.kind, bind_failures.c.key_hash == digest)
            for digest, key in hashes.items()
        )
    )


@functools.cache
def _counts_statement(keys: int) -> Any:
    """The counters of ``keys`` (kind, hash) pairs, parameters ``kind_<i>``/``hash_<i>``.
    Built once per size (every bind asks): building it costs more than running it."""
    return select(bind_failures).where(
        or_(
            *(
                and_(
                    bind_failures.c.key_kind == bindparam(f"kind_{i}"),
                    bind_failures.c.key_hash == bindparam(f"hash_{i}"),
                )
                for i in range(keys)
            )
        )
    )


class BindFailures(StoreBase):
    """The ``bind_failures`` counters (implements ``auth.throttle.ThrottleStore``)."""

    def bind_failure_counts(self, keys: Sequence[ThrottleKey]) -> dict[ThrottleKey, FailureCount]:
        hashes = {key_hash(key): key for key in keys}
        if not hashes:
            return {}

        params: dict[str, str] = {}
        for index, (digest, key) in enumerate(hashes.items()):
            params[f"kind_{index}"] = key.kind
            params[f"hash_{index}"] = digest

        def work(conn: Connection) -> dict[ThrottleKey, FailureCount]:
            rows = conn.execute(_counts_statement(len(hashes)), params)
            return {hashes[row.key_hash]: _count(row) for row in rows}

        return run(self.engine, work, write=False)

    def record_bind_failures(
        self,
        keys: Sequence[ThrottleKey],
        bump: Callable[[ThrottleKey, FailureCount | None], FailureCount],
    ) -> dict[ThrottleKey, FailureCount]:
        # Sorted, so that transactions touching the same rows lock them in
        # the same order (the SELECT locks what it finds; the INSERTs follow).
        hashes = dict(sorted((key_hash(key), key) for key in keys))
        if not hashes:
            return {}

        def work(conn: Connection) -> dict[ThrottleKey, FailureCount]:
            current = {
                row.key_hash: _count(row)
                for row in conn.execute(
                    select(bind_failures)
                    .where(_where_keys(hashes))
                    .order_by(bind_failures.c.key_kind, bind_failures.c.key_hash)
                    .with_for_update()
                )
            }
            result: dict[ThrottleKey, FailureCount] = {}
            for digest, key in hashes.items():
                new = bump(key, current.get(digest))
                values = {
                    "failures": new.failures,
                    "first_failure_at": new.first_failure_at,
                    "last_failure_at": new.last_failure_at,
                    "locked_until": new.locked_until,
                }
                if digest in current:
                    conn.execute(
                        update(bind_failures)
                        .where(
                            bind_failures.c.key_kind == key.kind,
                            bind_failures.c.key_hash == digest,
                        )
                        .values(**values)
                    )
                else:
                    # A concurrent first failure of this key makes this raise
                    # IntegrityError; run() retries the transaction.
                    conn.execute(
                        insert(bind_failures).values(
                            key_kind=key.kind,
                            key_hash=digest,
                            subject=printable_subject(key.subject),
                            **values,
                        )
                    )
                result[key] = new
            return result

        return run(self.engine, work, write=True, changes=(THROTTLE,))

    def clear_bind_failures(self, keys: Sequence[ThrottleKey]) -> None:
        hashes = {key_hash(key): key for key in keys}
        if not hashes:
            return

        def work(conn: Connection) -> None:
            conn.execute(delete(bind_failures).where(_where_keys(hashes)))

        run(self.engine, work, write=True, changes=(THROTTLE,))

    def active_bind_failures(
        self, *, now: datetime, since: datetime, limit: int
    ) -> list[ListedFailure]:
        def work(conn: Connection) -> list[ListedFailure]:
            rows = conn.execute(
                select(bind_failures)
                .where(
                    or_(
                        bind_failures.c.last_failure_at > since,
                        bind_failures.c.locked_until > now,
                    )
                )
                .order_by(
                    bind_failures.c.last_failure_at.desc(),
                    bind_failures.c.key_kind,
                    bind_failures.c.key_hash,
                )
                .limit(limit)
            )
            return [
                ListedFailure(cast(KeyKind, row.key_kind), row.subject, _count(row)) for row in rows
            ]

        return run(self.engine, work, write=False)

    def prune_bind_failures(self, before: datetime) -> int:
        def work(conn: Connection) -> int:
            result = conn.execute(
                delete(bind_failures).where(
                    bind_failures.c.last_failure_at < before,
                    or_(
                        bind_failures.c.locked_until.is_(None),
                        bind_failures.c.locked_until < before,
                    ),
                )
            )
            return int(result.rowcount)

        # Pruning only removes counters that no longer refuse anything: no bind
        # decision kept elsewhere can become wrong by it, so nothing is bumped.
        return run(self.engine, work, write=True, changes=())
