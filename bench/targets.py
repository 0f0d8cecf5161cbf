"""The servers of one benchmark run, started together and stopped together."""

from __future__ import annotations

import contextlib
import secrets
from collections.abc import Iterator
from dataclasses import dataclass, replace

from sqlalchemy import create_engine
from sqlalchemy.engine import make_url

from bench.dataset import DataSet
from bench.ldapsrv_target import LdapsrvOptions, Secrets, start_ldapsrv
from bench.processes import ServerProcess
from bench.slapd_target import start_slapd


@dataclass
class Target:
    """A running server under test and the credentials its workloads use."""

    label: str  # "ldapsrv-sqlite", "ldapsrv-postgresql", "slapd"
    server: ServerProcess
    secrets: Secrets

    @property
    def is_slapd(self) -> bool:
        return self.label == "slapd"


@contextlib.contextmanager
def scratch_postgresql(admin_url: str) -> Iterator[str]:
    """A database of its own on the server ``admin_url`` names, dropped afterwards."""
    name = f"ldapsrv_bench_{secrets.token_hex(6)}"
    engine = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            conn.exec_driver_sql(f"CREATE DATABASE {name}")
        try:
            yield make_url(admin_url).set(database=name).render_as_string(hide_password=False)
        finally:
            with engine.connect() as conn:
                conn.exec_driver_sql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    finally:
        engine.dispose()


@contextlib.contextmanager
def started_targets(
    data: DataSet,
    options: LdapsrvOptions,
    *,
    postgresql_url: str | None,
    with_slapd: bool,
    server_cpus: tuple[int, ...],
    uncached: bool = False,
) -> Iterator[list[Target]]:
    """ldapsrv on SQLite, with its caches off too when ``uncached``, on PostgreSQL
    when a URL is given, and slapd when wanted; every one stopped (by PID) on the
    way out."""
    targets: list[Target] = []
    with contextlib.ExitStack() as stack:
        server, creds = start_ldapsrv(data, options)
        stack.callback(server.stop)
        targets.append(Target("ldapsrv-sqlite", server, creds))
        if uncached:
            bare = replace(options, caches=False, backend_label="sqlite-uncached")
            server, creds = start_ldapsrv(data, bare)
            stack.callback(server.stop)
            targets.append(Target("ldapsrv-sqlite-uncached", server, creds))
        if postgresql_url:
            url = stack.enter_context(scratch_postgresql(postgresql_url))
            pg_options = replace(options, database_url=url, backend_label="postgresql")
            server, creds = start_ldapsrv(data, pg_options)
            stack.callback(server.stop)
            targets.append(Target("ldapsrv-postgresql", server, creds))
        if with_slapd:
            server, creds = start_slapd(data, server_cpus)
            stack.callback(server.stop)
            targets.append(Target("slapd", server, creds))
        yield targets
