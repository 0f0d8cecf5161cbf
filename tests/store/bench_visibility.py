"""Measure restricted (``VisibleTo``) searches against unrestricted ones.

Not collected by pytest (run it by hand)::

    LDAPSRV_TEST_POSTGRESQL_URL=... LDAPSRV_TEST_MARIADB_URL=... \\
        python -m tests.store.bench_visibility [USERS] [GROUPS] [PAGE]

It fills a fresh database with USERS users and GROUPS groups (every user in
"users" and in one team), and service accounts holding: full search through
a group, search scoped to "users" (everyone, so pages are full), search scoped
to one team (a few dozen rows out of all), and nothing. Each search pages
through everything it may see, as the LDAP layer does (``AllOf(filter,
VisibleTo(viewer))`` plus ``visible_to`` trimming of the membership lists),
and the time per page is reported next to the unrestricted search.
"""

from __future__ import annotations

import statistics
import sys
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import insert

from ldapsrv.directory.predicates import TRUE, AllOf, Predicate, VisibleTo
from ldapsrv.directory.records import Permission
from ldapsrv.store.directory import SqlDirectory
from ldapsrv.store.engine import make_engine
from ldapsrv.store.models import accounts, groups, memberships

from .dbs import KINDS, fresh_database, missing_reason

GROUP_BASE, ACCOUNT_BASE = 1000, 100_000
"""Ids of the bulk-inserted rows start high: explicit ids do not advance
PostgreSQL's sequences, and the viewers the store creates afterwards take
theirs from the sequences."""


def _fill(engine: Any, users: int, teams: int) -> None:
    now = datetime.now(UTC)
    names = ["users"] + [f"team{i}" for i in range(teams - 1)]
    group_rows = [
        {
            "id": GROUP_BASE + g,
            "uuid": str(uuid.uuid4()),
            "name": name,
            "name_lower": name,
            "gid_number": 20000 + g,
            "created_at": now,
            "modified_at": now,
        }
        for g, name in enumerate(names)
    ]
    user_rows = [
        {
            "id": ACCOUNT_BASE + i,
            "uuid": str(uuid.uuid4()),
            "kind": "user",
            "name": f"user{i:05d}",
            "name_lower": f"user{i:05d}",
            "disabled": False,
            "uid_number": 10000 + i,
            "gid_number": 20000,
            "home_directory": f"/home/user{i:05d}",
            "login_shell": "/bin/bash",
            "created_at": now,
            "modified_at": now,
        }
        for i in range(users)
    ]
    member_rows = [
        {"group_id": GROUP_BASE, "account_id": ACCOUNT_BASE + i} for i in range(users)
    ] + [
        {"group_id": GROUP_BASE + 1 + i % (teams - 1), "account_id": ACCOUNT_BASE + i}
        for i in range(users)
    ]
    with engine.begin() as conn:
        conn.execute(insert(groups), group_rows)
        for start in range(0, users, 2000):
            conn.execute(insert(accounts), user_rows[start : start + 2000])
        for start in range(0, len(member_rows), 5000):
            conn.execute(insert(memberships), member_rows[start : start + 5000])


def _viewers(d: SqlDirectory) -> None:
    d.create_group("admins")
    d.grant(Permission.SEARCH_FULL_DIRECTORY, group="admins")
    for name, scope in (("full", None), ("wide", "users"), ("narrow", "team7"), ("none", None)):
        d.create_service_account(name)
        if name == "full":
            d.add_member("admins", name)
        elif scope is not None:
            d.create_group(f"{name}-svc")
            d.add_member(f"{name}-svc", name)
            d.grant(Permission.SEARCH, group=f"{name}-svc", scope_group=scope)


def _pages(search: Callable[..., list[Any]], pred: Predicate, page: int, **kw: Any) -> list[float]:
    times: list[float] = []
    after = 0
    while True:
        t0 = time.perf_counter()
        batch = search(pred, after_id=after, limit=page, **kw)
        times.append(time.perf_counter() - t0)
        if len(batch) < page:
            return times
        after = batch[-1].id


def main() -> None:
    users = int(sys.argv[1]) if len(sys.argv) > 1 else 10_000
    teams = int(sys.argv[2]) if len(sys.argv) > 2 else 500
    page = int(sys.argv[3]) if len(sys.argv) > 3 else 500
    for kind in KINDS:
        if missing_reason(kind):
            print(f"{kind}: skipped ({missing_reason(kind)})")
            continue
        with fresh_database(kind) as url:
            engine = make_engine(url)
            try:
                _fill(engine, users, teams)
                d = SqlDirectory(engine, uid_range=(10000, 99999), gid_range=(20000, 29999))
                _viewers(d)
                d.search_users(TRUE, limit=10)  # warm the pool
                results: list[tuple[str, list[float], int]] = []

                def run(
                    label: str,
                    search: Callable[..., list[Any]],
                    viewer: str | None,
                    results: list[tuple[str, list[float], int]] = results,
                ) -> None:
                    pred: Predicate = TRUE if viewer is None else AllOf((TRUE, VisibleTo(viewer)))
                    _pages(search, pred, page, visible_to=viewer)  # warm caches and plans
                    times = _pages(search, pred, page, visible_to=viewer)
                    results.append((label, times, len(times)))

                run("users, unrestricted", d.search_users, None)
                run("users, full via group", d.search_users, "full")
                run("users, scoped to all", d.search_users, "wide")
                run("users, scoped to team", d.search_users, "narrow")
                run("users, no grant", d.search_users, "none")
                run("groups, unrestricted", d.search_groups, None)
                run("groups, full via group", d.search_groups, "full")
                run("groups, scoped to all", d.search_groups, "wide")
                run("groups, scoped to team", d.search_groups, "narrow")
            finally:
                engine.dispose()
        print(f"{kind}: {users} users, {teams} groups, pages of {page}")
        for label, times, pages in results:
            median = statistics.median(times) * 1000
            print(
                f"  {label:<24} {median:7.1f} ms/page (max {max(times) * 1000:.1f}), {pages} pages"
            )


if __name__ == "__main__":
    main()
