"""The benchmark against real servers, tiny and quick, so that it cannot rot: every
scenario runs with zero errors on ldapsrv (and on slapd when installed), a wrong
expectation is caught as an error, and the soak workload and the JSON summary hold
together."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from dataclasses import replace

import pytest

from bench.dataset import DataSet
from bench.ldapsrv_target import LdapsrvOptions, Secrets, start_ldapsrv
from bench.loadgen import LoadSpec, run_load
from bench.processes import ServerProcess
from bench.report import cell_figures
from bench.run import cold_binds, summarise
from bench.scenarios import SCENARIOS
from bench.slapd_target import start_slapd
from bench.soak import mixed_workload
from bench.targets import Target
from bench.workload import Op, Workload
from tests.e2e.harness import require_service

DATA = DataSet(people_count=60, group_count=6, group_size=5, seed=2)
OPTIONS = LdapsrvOptions(bcrypt_cost=4, token_bcrypt_cost=4, cold_tokens=4)


def _spec(server: ServerProcess, connections: int = 3) -> LoadSpec:
    return LoadSpec(
        host=server.host,
        port=server.port,
        connections=connections,
        duration=0.6,
        warmup=0.1,
        processes=2,
        setup_timeout=20,
    )


@pytest.fixture(scope="module")
def ldapsrv() -> Iterator[tuple[ServerProcess, Secrets]]:
    server, secrets = start_ldapsrv(DATA, OPTIONS)
    try:
        yield server, secrets
    finally:
        server.stop()


@pytest.fixture(scope="module")
def slapd() -> Iterator[tuple[ServerProcess, Secrets]]:
    require_service("slapd")
    server, secrets = start_slapd(DATA)
    try:
        yield server, secrets
    finally:
        server.stop()


@pytest.mark.parametrize("scenario", list(SCENARIOS))
def test_every_scenario_runs_without_errors_on_ldapsrv(ldapsrv, scenario):
    server, secrets = ldapsrv
    result = run_load(_spec(server), SCENARIOS[scenario].build(DATA, secrets))
    figures = cell_figures(result, SCENARIOS[scenario].unit)
    assert figures["errors"] == 0, figures["error_samples"]
    assert result.ops > 0 and figures["rate"] > 0
    assert 0 < figures["p50_ms"] <= figures["p99_ms"]


@pytest.mark.parametrize("scenario", list(SCENARIOS))
def test_every_scenario_gets_the_same_answers_from_slapd(slapd, scenario):
    server, secrets = slapd
    result = run_load(_spec(server), SCENARIOS[scenario].build(DATA, secrets))
    assert result.errors == 0, dict(result.error_samples)
    assert result.ops > 0


def test_a_wrong_answer_counts_as_an_error_not_as_throughput(ldapsrv):
    server, secrets = ldapsrv
    lookups = SCENARIOS["user_lookup"].build(DATA, secrets)
    wrong = Workload(
        "wrong",
        tuple(Op(tuple(replace(e, entries=2) for e in op.exchanges)) for op in lookups.ops[:5]),
        setup=lookups.setup,
    )
    result = run_load(_spec(server, connections=1), wrong)
    assert result.ops == 0 and result.errors > 0
    assert any("1 entries, expected 2" in sample for sample in result.error_samples)


def test_bad_credentials_fail_the_setup_loudly(ldapsrv):
    server, secrets = ldapsrv
    bad = replace(secrets, full_token=secrets.scoped_token[:-1] + "x")
    with pytest.raises(RuntimeError, match="setup"):
        run_load(_spec(server, connections=1), SCENARIOS["user_lookup"].build(DATA, bad))


def test_the_soak_mix_and_cold_binds_run_clean(ldapsrv):
    server, secrets = ldapsrv
    result = run_load(_spec(server, connections=4), mixed_workload(DATA, secrets))
    assert result.errors == 0, dict(result.error_samples)
    cold = cold_binds(Target("ldapsrv-sqlite", server, secrets), threads=2)
    assert cold["binds"] == OPTIONS.cold_tokens and cold["errors"] == 0


def test_the_summary_takes_medians_and_ratios():
    def cell(rate: float) -> dict[str, float | int | str]:
        return {
            "rate": rate,
            "unit": "ops/s",
            "p50_ms": 1.0,
            "p99_ms": rate / 100,
            "errors": 0,
            "loadgen_cpu": 0.5,
        }

    runs = [
        {
            "cells": [
                {
                    "scenario": "token_bind",
                    "connections": 8,
                    "ldapsrv-sqlite": cell(r),
                    "slapd": cell(4 * r),
                }
            ]
        }
        for r in (100.0, 300.0, 200.0)
    ]
    summary = summarise(runs, ["ldapsrv-sqlite", "slapd"])
    figures = summary["token_bind"]["8"]
    assert figures["ldapsrv-sqlite"]["rate"] == 200.0 and figures["slapd"]["rate"] == 800.0
    assert figures["ratio"] == {"ldapsrv-sqlite": 0.25}
    assert figures["p99_ratio"] == {"ldapsrv-sqlite": 0.25}


def test_a_cell_without_completed_operations_has_no_latency_and_no_p99_ratio():
    def cell(p99: float | None) -> dict[str, object]:
        return {
            "rate": 10.0,
            "unit": "entries/s",
            "p50_ms": p99,
            "p99_ms": p99,
            "errors": 0,
            "loadgen_cpu": 0.1,
        }

    runs = [
        {
            "cells": [
                {
                    "scenario": "enumeration",
                    "connections": 64,
                    "ldapsrv-sqlite": cell(None),
                    "slapd": cell(5.0),
                }
            ]
        }
    ]
    figures = summarise(runs, ["ldapsrv-sqlite", "slapd"])["enumeration"]["64"]
    assert figures["ldapsrv-sqlite"]["p99_ms"] is None
    assert figures["p99_ratio"] == {"ldapsrv-sqlite": None}
    assert figures["ratio"] == {"ldapsrv-sqlite": 1.0}


def test_a_server_that_cannot_start_leaves_nothing_behind(tmp_path, monkeypatch):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    bad = replace(OPTIONS, database_url="postgresql+psycopg2://postgres@127.0.0.1:1/none")
    with pytest.raises(RuntimeError, match="db upgrade"):
        start_ldapsrv(DATA, bad)
    assert list(tmp_path.iterdir()) == []
