"""The audit trail: an append-only record of who changed what.

Writes that change something an admin cares about (a service account created,
a token rotated or deleted) pass their ``AuditEvent`` to the store, which
inserts it in the *same* transaction as the change: the trail can neither miss
a change that happened nor record one that rolled back. ``record_audit`` is
for events with no other write attached (a refused attempt, a rotation hook's
outcome). Nothing here updates or deletes an audit row.

Event times keep the clock's full precision (unlike entry timestamps, which
are whole seconds because LDAP shows seconds): the order of events a second
apart matters to someone reading the trail.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime

from sqlalchemy import insert, select
from sqlalchemy.engine import Connection

from ldapsrv.directory.records import AuditEvent
from ldapsrv.errors import InvalidValue
from ldapsrv.store.base import StoreBase
from ldapsrv.store.engine import run
from ldapsrv.store.models import audit_events

_WIDTHS = {"actor": 255, "channel": 32, "action": 64, "target": 255}


def _fit(label: str, value: str) -> str:
    """``value`` cut to its column: an audit line must never make the change it
    records fail, so an over-long name is shortened (and marked) rather than
    refused."""
    width = _WIDTHS[label]
    return value if len(value) <= width else value[: width - 1] + "…"


def encode_details(details: tuple[tuple[str, str], ...]) -> str:
    """``details`` as a JSON object (readable in SQL); keys must be distinct,
    since a JSON object would silently keep only the last of a repeated key."""
    keys = [key for key, _ in details]
    if len(set(keys)) != len(keys):
        raise InvalidValue(f"audit details repeat a key: {keys!r}")
    return json.dumps(dict(details), ensure_ascii=False, separators=(",", ":"))


def decode_details(text: str) -> tuple[tuple[str, str], ...]:
    return tuple((str(key), str(value)) for key, value in json.loads(text).items())


class AuditLog(StoreBase):
    """Appending to and reading the audit trail."""

    def _insert_audit(self, conn: Connection, event: AuditEvent) -> None:
        """Append ``event`` inside the caller's transaction."""
        conn.execute(
            insert(audit_events).values(
                at=self._clock().astimezone(UTC),
                actor=_fit("actor", event.actor),
                channel=_fit("channel", event.channel),
                action=_fit("action", event.action),
                target=_fit("target", event.target),
                details=encode_details(event.details),
            )
        )

    def record_audit(self, event: AuditEvent) -> None:
        """Append ``event`` on its own (for events with no change to go with)."""
        encode_details(event.details)  # refuse bad details before opening a transaction

        def work(conn: Connection) -> None:
            self._insert_audit(conn, event)

        run(self.engine, work, write=True, changes=())  # an audit line changes no answer

    def list_audit(
        self, *, since: datetime | None = None, limit: int = 1000
    ) -> list[tuple[datetime, AuditEvent]]:
        """The newest ``limit`` events at or after ``since``, oldest first (newest
        last, as a log reads). Ties in time keep insertion order."""
        if limit <= 0:
            return []

        def work(conn: Connection) -> list[tuple[datetime, AuditEvent]]:
            query = select(audit_events)
            if since is not None:
                query = query.where(audit_events.c.at >= since)
            rows = conn.execute(
                query.order_by(audit_events.c.at.desc(), audit_events.c.id.desc()).limit(limit)
            ).all()
            return [
                (
                    row.at,
                    AuditEvent(
                        actor=row.actor,
                        channel=row.channel,
                        action=row.action,
                        target=row.target,
                        details=decode_details(row.details),
                    ),
                )
                for row in reversed(rows)
            ]

        return run(self.engine, work, write=False)
