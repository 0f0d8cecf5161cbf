"""Two servers (two engines) on one database, many threads each: every uid and
gid handed out is distinct, and nothing fails with a lock or deadlock error."""

from __future__ import annotations

import threading

from ldapsrv.store.directory import NewUser, SqlDirectory
from ldapsrv.store.engine import make_engine

from .conftest import GID_RANGE, UID_RANGE

THREADS_PER_ENGINE = 4
USERS_PER_THREAD = 5


def test_concurrent_creation_from_two_engines_hands_out_distinct_numbers(database_url):
    engines = [make_engine(database_url, pool_size=THREADS_PER_ENGINE) for _ in range(2)]
    directories = [SqlDirectory(e, uid_range=UID_RANGE, gid_range=GID_RANGE) for e in engines]
    threads = 2 * THREADS_PER_ENGINE
    start = threading.Barrier(threads)
    errors: list[BaseException] = []

    def work(n: int) -> None:
        directory = directories[n % 2]
        try:
            start.wait()
            for i in range(USERS_PER_THREAD):
                # The very first calls all race to create the default group.
                directory.create_user(NewUser(f"u{n}x{i}"))
                directory.create_group(f"g{n}x{i}")
        except BaseException as exc:  # collected and re-raised in the main thread
            errors.append(exc)

    workers = [threading.Thread(target=work, args=(n,)) for n in range(threads)]
    try:
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join(timeout=120)
        assert not errors, errors
        users = directories[0].list_users()
        groups = directories[1].list_groups()
    finally:
        for engine in engines:
            engine.dispose()

    expected = threads * USERS_PER_THREAD
    assert len(users) == expected
    uids = [u.uid_number for u in users]
    assert len(set(uids)) == expected
    assert set(uids) == set(range(UID_RANGE[0], UID_RANGE[0] + expected))
    # One default group, created once, with everyone in it.
    default = [g for g in groups if g.name == "users"]
    assert len(default) == 1
    assert len(default[0].member_names) == expected
    assert {u.gid_number for u in users} == {default[0].gid_number}
    gids = [g.gid_number for g in groups]
    assert len(groups) == expected + 1
    assert len(set(gids)) == len(gids)
