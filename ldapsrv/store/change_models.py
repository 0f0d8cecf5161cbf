"""The ``change_counters`` table: one row per kind of change, bumped by every
transaction that makes such a change.

In-memory caches (search results, warm token binds) are only ever answered
after reading these counters: an unchanged counter means nothing of that kind
was committed since the cached answer was computed, by this server or any
other sharing the database.
"""

from __future__ import annotations

from typing import cast

from sqlalchemy import BigInteger, String, Table
from sqlalchemy.orm import Mapped, mapped_column

from ldapsrv.store.models import MYSQL_TABLE_OPTIONS, Base


class ChangeCounter(Base):
    """``directory``: accounts, groups, memberships, tokens, grants (anything an
    LDAP answer or a bind decision reads); ``throttle``: failed-bind counters."""

    __tablename__ = "change_counters"
    __table_args__ = (MYSQL_TABLE_OPTIONS,)

    name: Mapped[str] = mapped_column(String(16), primary_key=True)
    value: Mapped[int] = mapped_column(BigInteger)


change_counters = cast(Table, ChangeCounter.__table__)
