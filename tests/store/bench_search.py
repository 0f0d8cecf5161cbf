"""Measure paged searches over 10,000 users on each configured backend.

Not collected by pytest (run it by hand)::

    LDAPSRV_TEST_POSTGRESQL_URL=... LDAPSRV_TEST_MARIADB_URL=... \
        python -m tests.store.bench_search [USERS] [PAGE]

It fills a fresh database with USERS users (every one in "users", a third in
one of 20 other groups), then reports the time per page of PAGE users with
their group names, for an all-users filter, an SSSD-style equality lookup, a
membership filter and a negated substring filter, and the time per page of groups.
"""

from __future__ import annotations

import statistics
import sys
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime

from sqlalchemy import insert

from ldapsrv.directory.predicates import (
    TRUE,
    AllOf,
    FieldEquals,
    FieldPresent,
    FieldSubstrings,
    InGroup,
    Negation,
    Predicate,
)
from ldapsrv.store.directory import SqlDirectory
from ldapsrv.store.engine import make_engine
from ldapsrv.store.models import accounts, groups, memberships

from .dbs import KINDS, fresh_database, missing_reason


def _fill(engine: object, users: int) -> None:
    now = datetime.now(UTC)
    group_rows = [
        {
            "id": g + 1,
            "uuid": str(uuid.uuid4()),
            "name": name,
            "name_lower": name,
            "gid_number": 20000 + g,
            "created_at": now,
            "modified_at": now,
        }
        for g, name in enumerate(["users"] + [f"team{i}" for i in range(20)])
    ]
    user_rows = [
        {
            "id": i + 1,
            "uuid": str(uuid.uuid4()),
            "kind": "user",
            "name": f"user{i:05d}",
            "name_lower": f"user{i:05d}",
            "disabled": False,
            "uid_number": 10000 + i,
            "gid_number": 20000,
            "display_name": f"User Number {i}",
            "given_name": "User",
            "surname": f"Number{i}",
            "mail": f"user{i}@example.org" if i % 4 else None,
            "home_directory": f"/home/user{i:05d}",
            "login_shell": "/bin/bash",
            "created_at": now,
            "modified_at": now,
        }
        for i in range(users)
    ]
    member_rows = [{"group_id": 1, "account_id": i + 1} for i in range(users)] + [
        {"group_id": 2 + i % 20, "account_id": i + 1} for i in range(0, users, 3)
    ]
    with engine.begin() as conn:  # type: ignore[attr-defined]
        conn.execute(insert(groups), group_rows)
        for start in range(0, users, 2000):
            conn.execute(insert(accounts), user_rows[start : start + 2000])
        for start in range(0, len(member_rows), 5000):
            conn.execute(insert(memberships), member_rows[start : start + 5000])


def _page_all(search: Callable[..., list], pred: Predicate, page: int) -> list[float]:
    times, after = [], 0
    while True:
        t0 = time.perf_counter()
        batch = search(pred, after_id=after, limit=page)
        times.append(time.perf_counter() - t0)
        if len(batch) < page:
            return times
        after = batch[-1].id


def main() -> None:
    users = int(sys.argv[1]) if len(sys.argv) > 1 else 10_000
    page = int(sys.argv[2]) if len(sys.argv) > 2 else 500
    sssd = AllOf(
        (
            FieldEquals("name", "user04242"),
            FieldPresent("name"),
            AllOf((FieldPresent("uid_number"), Negation(FieldEquals("uid_number", 0)))),
        )
    )
    for kind in KINDS:
        if missing_reason(kind):
            print(f"{kind}: skipped ({missing_reason(kind)})")
            continue
        with fresh_database(kind) as url:
            engine = make_engine(url)
            try:
                _fill(engine, users)
                d = SqlDirectory(engine, uid_range=(10000, 99999), gid_range=(20000, 29999))
                d.search_users(TRUE, limit=10)  # warm the pool
                all_pages = _page_all(d.search_users, TRUE, page)
                group_pages = _page_all(d.search_groups, TRUE, page)
                member_pages = _page_all(d.search_users, InGroup("team7"), page)
                negated = _page_all(
                    d.search_users, Negation(FieldSubstrings("mail", None, ("9",), None)), page
                )
                lookups = []
                for _ in range(50):
                    t0 = time.perf_counter()
                    assert len(d.search_users(sssd, limit=page)) == 1
                    lookups.append(time.perf_counter() - t0)
            finally:
                engine.dispose()

        def ms(values: list[float]) -> str:
            return f"{statistics.median(values) * 1000:.1f} ms (max {max(values) * 1000:.1f})"

        print(f"{kind}: {users} users, pages of {page}")
        print(f"  all users with groups:   {ms(all_pages)} per page, {len(all_pages)} pages")
        print(f"  InGroup(team7):          {ms(member_pages)} per page")
        print(f"  !(mail=*9*):             {ms(negated)} per page")
        print(f"  SSSD uid lookup:         {ms(lookups)} per lookup")
        print(f"  groups with members:     {ms(group_pages)} per page")


if __name__ == "__main__":
    main()
