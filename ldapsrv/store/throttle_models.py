"""The ``bind_failures`` table (migration 0003), on the store's shared metadata.

One row per throttled key: a bind DN (``dn``), a client address (``address``)
or a (DN, address) pair (``pair``), found by ``key_hash`` (SHA-256 of the
normalised key: keys are attacker-controlled and unbounded, the hash has a
fixed, indexable width). ``subject`` is a printable, truncated copy for
``ldapsrv status``. The counters live in the database so that every server
sharing it sees, and enforces, the same lock-outs.
"""

from __future__ import annotations

from datetime import datetime
from typing import cast

from sqlalchemy import CheckConstraint, Index, Integer, String, Table
from sqlalchemy.orm import Mapped, mapped_column

from ldapsrv.store.models import MYSQL_TABLE_OPTIONS, Base, UtcDateTime

KEY_KINDS = ("dn", "address", "pair")
"""Kinds the ``bind_failures.key_kind`` CHECK allows."""


class BindFailure(Base):
    """Recent failed binds for one DN, one client address or one (DN, address) pair."""

    __tablename__ = "bind_failures"
    __table_args__ = (
        CheckConstraint("key_kind IN ('dn', 'address', 'pair')", name="key_kind"),
        Index(None, "last_failure_at"),
        MYSQL_TABLE_OPTIONS,
    )

    key_kind: Mapped[str] = mapped_column(String(8), primary_key=True)
    key_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    subject: Mapped[str] = mapped_column(String(255))
    failures: Mapped[int] = mapped_column(Integer)
    first_failure_at: Mapped[datetime] = mapped_column(UtcDateTime())
    last_failure_at: Mapped[datetime] = mapped_column(UtcDateTime())
    locked_until: Mapped[datetime | None] = mapped_column(UtcDateTime())


bind_failures = cast(Table, BindFailure.__table__)
