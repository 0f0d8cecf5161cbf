"""The production settings: workers, shutdown grace, connection limits, per-identity
search limits; and which changes a SIGHUP can apply."""

from __future__ import annotations

import dataclasses
import ipaddress
import os
from pathlib import Path

import pytest
from test_config import error_of, load

from ldapsrv.ldap.limits import SearchLimit
from ldapsrv.reloading import needs_restart


def test_safe_defaults() -> None:
    config = load()
    assert (config.workers, config.shutdown_grace) == (1, 10)
    assert (config.max_connections, config.max_connections_per_address) == (4096, 256)
    assert config.per_address_exempt == ()
    assert config.max_outstanding_operations == 64
    assert (config.idle_timeout, config.pdu_timeout) == (300, 30)
    assert config.identity_limits == {}


def test_workers_auto_is_the_cpus_this_process_may_use(tmp_path: Path) -> None:
    config = load('[server]\nworkers = "auto"\n', tmp_path)
    assert config.workers == len(os.sched_getaffinity(0))
    assert load("[server]\nworkers = 3\n", tmp_path).workers == 3


@pytest.mark.parametrize(
    ("toml", "named"),
    [
        (
            "[server]\nworkers = 0\n",
            'server.workers: expected a number of processes from 1 to 256 or "auto"',
        ),
        ('[server]\nworkers = "many"\n', "server.workers"),
        ("[limits]\nidle_timeout = -1\n", "limits.idle_timeout"),
        ('[limits]\nper_address_exempt = ["10.0.0.300/8"]\n', "limits.per_address_exempt"),
        ("[limits.identity_limits.sync]\nsize = 5\n", "limits.identity_limits.sync.size: unknown"),
        ("[limits.identity_limits]\nsync = 5\n", "limits.identity_limits.sync: expected a table"),
        (
            "[limits.identity_limits.sync]\nsize_limit = -5\n",
            "limits.identity_limits.sync.size_limit",
        ),
    ],
)
def test_bad_production_settings_name_the_key(tmp_path: Path, toml: str, named: str) -> None:
    assert named in error_of(tmp_path, toml)


def test_identity_limits_from_the_file_and_from_the_environment(tmp_path: Path) -> None:
    config = load(
        '[limits]\nper_address_exempt = ["127.0.0.0/8", "::1"]\n'
        "[limits.identity_limits.Sync-Script]\nsize_limit = 0\ntime_limit = 600\n"
        "[limits.identity_limits.nas]\nsize_limit = 100\n",
        tmp_path,
    )
    assert config.identity_limits == {
        "sync-script": SearchLimit(0, 600),
        "nas": SearchLimit(100, 0),
    }
    assert config.per_address_exempt == (
        ipaddress.ip_network("127.0.0.0/8"),
        ipaddress.ip_network("::1/128"),
    )
    from_env = load(environ={"LDAPSRV_LIMITS_IDENTITY_LIMITS": '{"bot": {"time_limit": 5}}'})
    assert from_env.identity_limits == {"bot": SearchLimit(0, 5)}


def test_sighup_names_what_needs_a_restart() -> None:
    running = load()
    new = dataclasses.replace(
        running, max_connections=10, log_level="debug", workers=4, database_url="sqlite://"
    )
    assert needs_restart(running, new) == ["workers", "database_url"]
