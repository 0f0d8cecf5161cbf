"""An ldapsrv for the benchmark: its config, the data set loaded in bulk, the process.

People, groups and memberships go in with SQLAlchemy Core inserts on ldapsrv's own
tables (thousands of rows per statement), all people sharing one bcrypt hash of
the bench password at the configured cost: a bind checks one hash at that cost
whatever the salt, and hashing 100,000 distinct ones would only slow the set-up.
Service accounts, their tokens and grants go through the store layer, as the
admin commands do (tokens hashed at the configured token cost).
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
import uuid
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import bcrypt
from sqlalchemy import Engine, insert

from bench.dataset import (
    BASE_DN,
    FULL_READER,
    PRIMARY_GID,
    PRIMARY_GROUP,
    SCOPE_GROUP,
    SCOPED_READER,
    DataSet,
)
from bench.processes import LOOPBACK, ServerProcess, free_port, pinned, run_checked, start_process
from ldapsrv.auth.passwords import hash_password
from ldapsrv.auth.ports import NewToken
from ldapsrv.auth.tokens import issue_token
from ldapsrv.config import ConfigError, load_config
from ldapsrv.directory.records import Permission, TokenIntent
from ldapsrv.store.directory import SqlDirectory
from ldapsrv.store.engine import make_engine
from ldapsrv.store.models import accounts, groups, memberships, utcnow

CHUNK = 2_000
LDAPSRV_COMMAND = (sys.executable, "-m", "ldapsrv")


@dataclass(frozen=True)
class LdapsrvOptions:
    database_url: str = ""  # "" = a SQLite file in the work directory
    bcrypt_cost: int = 4
    token_bcrypt_cost: int = 10
    workers: str | None = None  # [server] workers, written only when given
    cold_tokens: int = 0
    cpus: tuple[int, ...] = ()
    backend_label: str = "sqlite"
    caches: bool = True  # False: [cache] off, every answer read from the database


@dataclass
class Secrets:
    """What the load generator binds with (never printed)."""

    full_token: str
    scoped_token: str
    cold_tokens: list[str] = field(default_factory=list)


def workers_setting(value: str) -> Any:
    """``value`` as the TOML value for ``[server] workers`` (a number or a word)."""
    return int(value) if value.isdigit() else value


def workers_supported(value: str) -> bool:
    """Whether this ldapsrv's configuration accepts ``[server] workers = value``."""
    with tempfile.TemporaryDirectory(prefix="ldapsrv-bench-probe-") as tmp:
        path = Path(tmp) / "probe.toml"
        path.write_text(render_toml({"server": {"workers": workers_setting(value)}}))
        try:
            load_config(path, environ={})
        except ConfigError:
            return False
    return True


def _toml(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    return json.dumps(str(value))


def render_toml(sections: dict[str, dict[str, object]]) -> str:
    lines: list[str] = []
    for section, values in sections.items():
        lines.append(f"[{section}]")
        lines.extend(f"{key} = {_toml(value)}" for key, value in values.items())
    return "\n".join(lines) + "\n"


def bench_config(workdir: Path, port: int, options: LdapsrvOptions) -> dict[str, dict[str, object]]:
    server: dict[str, object] = {
        "listen": f"{LOOPBACK}:{port}",
        "ldaps_listen": "",
        "base_dn": BASE_DN,
        "data_dir": str(workdir / "data"),
        "control_socket": str(workdir / "control.sock"),
    }
    if options.workers is not None:
        server["workers"] = workers_setting(options.workers)
    cache: dict[str, object] = {}
    if not options.caches:
        cache = {"search_results_mib": 0, "token_binds": 0}
    return {
        "server": server,
        **({"cache": cache} if cache else {}),
        "database": {"url": options.database_url or f"sqlite:///{workdir / 'ldapsrv.db'}"},
        "security": {"bcrypt_cost": options.bcrypt_cost},
        "tokens": {"bcrypt_cost": options.token_bcrypt_cost, "viewable": False},
        # No access log: slapd runs with loglevel 0, so neither server logs per operation
        # (ldapsrv's access log costs ~0.1 ms an operation; see README "Monitoring").
        "logging": {"level": "warning", "access_log": False},
    }


def _chunks(rows: Sequence[dict[str, Any]]) -> Iterator[Sequence[dict[str, Any]]]:
    for start in range(0, len(rows), CHUNK):
        yield rows[start : start + CHUNK]


def bulk_load(engine: Engine, data: DataSet, bcrypt_cost: int) -> None:
    """People, groups and memberships in a few large INSERTs (ids in data set order)."""
    now = utcnow().replace(microsecond=0)
    password_hash = hash_password(data.password.encode(), bcrypt_cost)
    people = [
        {
            "id": index + 1,
            "uuid": str(uuid.UUID(int=index + 1)),
            "kind": "user",
            "name": p.name,
            "name_lower": p.name.lower(),
            "password_hash": password_hash,
            "disabled": False,
            "uid_number": p.uid_number,
            "gid_number": PRIMARY_GID,
            "display_name": p.display_name,
            "given_name": p.given_name,
            "surname": p.surname,
            "mail": p.mail,
            "home_directory": f"/home/{p.name}",
            "login_shell": "/bin/bash",
            "created_at": now,
            "modified_at": now,
        }
        for index, p in enumerate(data.people)
    ]
    group_rows = [
        {
            "id": 1,
            "uuid": str(uuid.UUID(int=1 << 64)),
            "name": PRIMARY_GROUP,
            "name_lower": PRIMARY_GROUP,
            "gid_number": PRIMARY_GID,
            "created_at": now,
            "modified_at": now,
        }
    ]
    member_rows: list[dict[str, Any]] = []
    for index, group in enumerate(data.groups, start=2):
        group_rows.append(
            {
                "id": index,
                "uuid": str(uuid.UUID(int=(1 << 64) + index)),
                "name": group.name,
                "name_lower": group.name.lower(),
                "gid_number": group.gid_number,
                "created_at": now,
                "modified_at": now,
            }
        )
        member_rows.extend({"group_id": index, "account_id": m + 1} for m in group.members)
    with engine.begin() as conn:
        for table, rows in ((accounts, people), (groups, group_rows), (memberships, member_rows)):
            for chunk in _chunks(rows):
                conn.execute(insert(table), list(chunk))
    if engine.dialect.name == "postgresql":  # explicit ids leave the sequences behind
        with engine.begin() as conn:
            for name in ("accounts", "groups"):
                conn.exec_driver_sql(
                    f"SELECT setval(pg_get_serial_sequence('{name}', 'id'), "
                    f"(SELECT max(id) FROM {name}))"
                )


def _new_token(identifier: str, account: str, cost: int) -> tuple[str, NewToken]:
    issued = issue_token(cost, None)
    now = utcnow()
    spec = NewToken(
        identifier=identifier,
        account_name=account,
        intent=TokenIntent.APP_PASSWORD,
        lookup_id=issued.lookup_id,
        secret_hash=issued.secret_hash,
        encrypted_value=None,
        expiring=True,
        expires_at=now + timedelta(days=30),
        lifetime_seconds=30 * 86400,
    )
    return issued.value, spec


def add_accounts(directory: SqlDirectory, options: LdapsrvOptions) -> Secrets:
    """The full reader, the group-scoped reader, and ``cold_tokens`` extra tokens of the
    full reader (each bound once by the cold-bind measurement)."""
    cost = options.token_bcrypt_cost
    full_value, full_spec = _new_token(FULL_READER, FULL_READER, cost)
    directory.create_service_account(FULL_READER, token=full_spec)
    directory.grant(Permission.SEARCH_FULL_DIRECTORY, account=FULL_READER)
    scoped_value, scoped_spec = _new_token(SCOPED_READER, SCOPED_READER, cost)
    directory.create_service_account(SCOPED_READER, token=scoped_spec)
    directory.grant(Permission.SEARCH, account=SCOPED_READER, scope_group=SCOPE_GROUP)
    workers = max(1, os.cpu_count() or 1)
    with ThreadPoolExecutor(workers) as pool:  # bcrypt releases the GIL
        made = list(
            pool.map(
                lambda i: _new_token(f"cold-{i}", FULL_READER, cost), range(options.cold_tokens)
            )
        )
    for _, spec in made:
        directory.create_token(spec)
    return Secrets(full_value, scoped_value, [value for value, _ in made])


def start_ldapsrv(data: DataSet, options: LdapsrvOptions) -> tuple[ServerProcess, Secrets]:
    """Create the schema, load ``data``, start ``ldapsrv serve``; the caller stops it."""
    workdir = Path(tempfile.mkdtemp(prefix="ldapsrv-bench-"))
    try:
        return _start_in(workdir, data, options)
    except BaseException:
        shutil.rmtree(workdir, ignore_errors=True)
        raise


def _start_in(
    workdir: Path, data: DataSet, options: LdapsrvOptions
) -> tuple[ServerProcess, Secrets]:
    port = free_port()
    config_path = workdir / "ldapsrv.toml"
    config_path.write_text(render_toml(bench_config(workdir, port, options)))
    env = {k: v for k, v in os.environ.items() if not k.startswith("LDAPSRV_")}
    env["PYTHONPATH"] = str(Path(__file__).resolve().parents[1])
    run_checked(
        [*LDAPSRV_COMMAND, "db", "upgrade", "--config", str(config_path)], "db upgrade", cwd=workdir
    )
    config = load_config(config_path, environ={})
    engine = make_engine(config.database_url)
    try:
        bulk_load(engine, data, options.bcrypt_cost)
        directory = SqlDirectory(engine, uid_range=config.uid_range, gid_range=config.gid_range)
        secrets = add_accounts(directory, options)
    finally:
        engine.dispose()
    argv = pinned([*LDAPSRV_COMMAND, "serve", "--config", str(config_path)], options.cpus)
    server = start_process(
        f"ldapsrv-{options.backend_label}", argv, workdir=workdir, host=LOOPBACK, port=port, env=env
    )
    server.details = {
        "backend": options.backend_label,
        "bcrypt_cost": options.bcrypt_cost,
        "token_bcrypt_cost": options.token_bcrypt_cost,
        "workers": options.workers if options.workers is not None else "(not set)",
        "caches": "on" if options.caches else "off ([cache] search_results_mib/token_binds 0)",
        "password_hashes": "bcrypt (one shared hash of the bench password at bcrypt_cost)",
    }
    return server, secrets


def bcrypt_rate(cost: int, seconds: float = 1.0) -> float:
    """bcrypt checks per second on one core at ``cost`` (what a password bind costs)."""
    import time

    hashed = bcrypt.hashpw(b"bench-Password-1", bcrypt.gensalt(rounds=cost))
    count = 0
    start = time.perf_counter()
    while time.perf_counter() - start < seconds or count < 3:
        bcrypt.checkpw(b"bench-Password-1", hashed)
        count += 1
    return count / (time.perf_counter() - start)
