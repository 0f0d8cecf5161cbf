"""What the directory and the protocol need from the store, as Protocols.

All methods block (SQL): callers run them in the thread pool. ``visible_to``
trims each record's membership list (member names, group names) to what that
account may see; the rows themselves are restricted by the predicate.
"""

from __future__ import annotations

from typing import Protocol

from ldapsrv.directory.predicates import Predicate
from ldapsrv.directory.records import (
    Credentials,
    GroupRecord,
    ServiceAccountRecord,
    UserRecord,
)


class DirectoryReader(Protocol):
    def search_users(
        self,
        predicate: Predicate,
        *,
        after_id: int = 0,
        limit: int,
        name: str | None = None,
        visible_to: str | None = None,
    ) -> list[UserRecord]: ...

    def search_groups(
        self,
        predicate: Predicate,
        *,
        after_id: int = 0,
        limit: int,
        name: str | None = None,
        visible_to: str | None = None,
    ) -> list[GroupRecord]: ...

    def search_service_accounts(
        self,
        predicate: Predicate,
        *,
        after_id: int = 0,
        limit: int,
        name: str | None = None,
        visible_to: str | None = None,
    ) -> list[ServiceAccountRecord]: ...

    def get_credentials(self, name: str) -> Credentials | None: ...

    def set_password_hash(self, name: str, password_hash: str) -> None: ...
