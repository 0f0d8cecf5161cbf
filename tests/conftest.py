"""Shared fixtures: throwaway databases for store tests, a real server for e2e tests.

Database-backed fixtures run on SQLite always, and on PostgreSQL and MariaDB when
``LDAPSRV_TEST_POSTGRESQL_URL`` / ``LDAPSRV_TEST_MARIADB_URL`` are set; without them
those variants skip with the reason, and under ``LDAPSRV_REQUIRE_ALL=1`` (CI) they fail,
so CI cannot pass by skipping.
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest
from e2e.harness import (
    BACKENDS,
    LdapServer,
    fresh_database,
    require_service,
    start_server,
)

_SERVER_LOG_KEY = pytest.StashKey[list[LdapServer]]()


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    e2e_dir = Path(__file__).parent / "e2e"
    for item in items:
        if e2e_dir in Path(str(item.path)).parents:
            item.add_marker(pytest.mark.e2e)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """Attach the logs of the servers (and SSSDs) a failed test used to its report.

    Any fixture value with a ``log_sections()`` method contributes.
    """
    report = yield
    if report.failed:
        sources: list[Any] = list(getattr(item, "funcargs", {}).values())
        started = item.stash.get(_SERVER_LOG_KEY, None)
        if started:
            sources += started
        seen: set[int] = set()
        for source in sources:
            log_sections = getattr(source, "log_sections", None)
            if callable(log_sections) and id(source) not in seen:
                seen.add(id(source))
                report.sections.extend(log_sections())
    return report


@pytest.fixture(name="require_service")
def require_service_fixture() -> Callable[[str], str]:
    """``require_service(name)``: skip (or fail under LDAPSRV_REQUIRE_ALL) without it."""
    return require_service


@pytest.fixture(params=BACKENDS)
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A URL to an empty database: SQLite file, or a fresh PostgreSQL/MariaDB database."""
    with fresh_database(str(request.param), tmp_path) as url:
        yield url


@pytest.fixture(scope="module", params=BACKENDS)
def ldap_server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LdapServer]:
    """A running ``ldapsrv serve`` on an empty database, shared by one test module."""
    backend = str(request.param)
    workdir = tmp_path_factory.mktemp(f"ldapsrv-{backend}")
    with fresh_database(backend, workdir) as url:
        server = start_server(workdir, url)
        try:
            yield server
        finally:
            server.stop()


@pytest.fixture
def ldap_server_factory(
    request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[Callable[..., LdapServer]]:
    """Start extra servers (SQLite) with their own settings; all stopped after the test.

    ``factory(settings={"security": {"anonymous_read": True}})``
    """
    started: list[LdapServer] = []
    request.node.stash[_SERVER_LOG_KEY] = started

    with ExitStack() as stack:

        def factory(**kwargs: Any) -> LdapServer:
            workdir = tmp_path / f"server{len(started)}"
            workdir.mkdir()
            url = stack.enter_context(fresh_database("sqlite", workdir))
            server = start_server(workdir, url, **kwargs)
            started.append(server)
            stack.callback(server.stop)
            return server

        yield factory
