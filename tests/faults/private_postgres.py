"""A private PostgreSQL server for tests that stop and restart the database.

The machine's shared PostgreSQL (the one ``LDAPSRV_TEST_POSTGRESQL_URL`` names) is
never touched: this is a cluster of our own, created with ``initdb`` in a temporary
directory, listening on a free loopback port and a private socket directory, and
removed afterwards. Only ``pg_ctl`` on that data directory starts and stops it.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from e2e.harness import LOOPBACK, free_ports, unavailable

COMMAND_TIMEOUT = 60.0


def _binaries() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    return Path(found[-1]).parent if found else None


def _as_postgres() -> list[str]:
    """Run as the postgres user when we are root (initdb refuses to run as root)."""
    if os.geteuid() != 0:
        return []
    return ["runuser", "-u", "postgres", "--"]


@dataclass
class PrivatePostgres:
    bin_dir: Path
    root: Path
    port: int

    @property
    def data_dir(self) -> Path:
        return self.root / "data"

    @property
    def log_file(self) -> Path:
        return self.root / "postgres.log"

    @property
    def admin_url(self) -> str:
        return f"postgresql+psycopg2://postgres@{LOOPBACK}:{self.port}/postgres"

    def url(self, database: str) -> str:
        return f"postgresql+psycopg2://postgres@{LOOPBACK}:{self.port}/{database}"

    def _pg_ctl(self, *args: str) -> None:
        argv = [*_as_postgres(), str(self.bin_dir / "pg_ctl"), "-D", str(self.data_dir), *args]
        result = subprocess.run(argv, capture_output=True, text=True, timeout=COMMAND_TIMEOUT)
        if result.returncode != 0:
            raise RuntimeError(
                f"pg_ctl {' '.join(args)} exited {result.returncode}:\n"
                f"{result.stdout}{result.stderr}\n{self.log_text()}"
            )

    def start(self) -> None:
        options = f"-p {self.port} -k {self.root} -c listen_addresses={LOOPBACK} -c fsync=off"
        self._pg_ctl("-o", options, "-l", str(self.log_file), "-w", "-t", "30", "start")

    def stop(self, mode: str = "immediate") -> None:
        """Stop the server the way a crash would (``immediate``: no checkpoint, every
        backend killed at once) or cleanly (``fast``)."""
        self._pg_ctl("-m", mode, "-w", "-t", "30", "stop")

    def is_running(self) -> bool:
        return (self.data_dir / "postmaster.pid").exists()

    def create_database(self, name: str) -> str:
        from sqlalchemy import create_engine

        engine = create_engine(self.admin_url, isolation_level="AUTOCOMMIT")
        try:
            with engine.connect() as connection:
                connection.exec_driver_sql(f'CREATE DATABASE "{name}"')
        finally:
            engine.dispose()
        return self.url(name)

    def log_text(self) -> str:
        try:
            return self.log_file.read_text(errors="replace")
        except OSError:
            return ""

    def log_sections(self) -> list[tuple[str, str]]:
        return [(f"private PostgreSQL log (port {self.port})", self.log_text()[-6000:])]


@contextlib.contextmanager
def private_postgres() -> Iterator[PrivatePostgres]:
    """A started private PostgreSQL cluster, stopped and deleted afterwards."""
    bin_dir = _binaries()
    if bin_dir is None:
        unavailable("private PostgreSQL", "no /usr/lib/postgresql/*/bin/initdb (postgresql)")
    if os.geteuid() == 0:
        try:
            owner = pwd.getpwnam("postgres")
        except KeyError:
            unavailable("private PostgreSQL", "running as root but there is no postgres user")
    root = Path(tempfile.mkdtemp(prefix="ldapsrv-pg-", dir="/tmp"))
    if os.geteuid() == 0:
        os.chown(root, owner.pw_uid, owner.pw_gid)
    server = PrivatePostgres(bin_dir, root, free_ports(1)[0])
    try:
        initdb = [
            *_as_postgres(),
            str(bin_dir / "initdb"),
            "-D", str(server.data_dir),
            "-U", "postgres",
            "-A", "trust",
            "--no-sync",
            "-E", "UTF8",
        ]  # fmt: skip
        result = subprocess.run(initdb, capture_output=True, text=True, timeout=COMMAND_TIMEOUT)
        if result.returncode != 0:
            raise RuntimeError(f"initdb failed:\n{result.stdout}{result.stderr}")
        server.start()
        try:
            yield server
        finally:
            if server.is_running():
                with contextlib.suppress(RuntimeError):
                    server.stop("immediate")
    finally:
        shutil.rmtree(root, ignore_errors=True)
