"""One benchmark run: every scenario x concurrency x server, several times, as one JSON."""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from bench.dataset import FULL_READER, USERS_DN, DataSet
from bench.ldapsrv_target import LdapsrvOptions, bcrypt_rate
from bench.loadgen import LoadSpec, run_load
from bench.machine import describe_machine
from bench.protocol import (
    BIND_RESPONSE,
    bind_request,
    read_response,
    split_messages,
)
from bench.report import cell_figures, evaluate_targets, median_cell, ratio
from bench.scenarios import SCENARIOS
from bench.targets import Target, started_targets

MEMORY_LIMIT_BYTES = 200 * 2**20


@dataclass(frozen=True)
class BenchOptions:
    data: DataSet
    ldapsrv: LdapsrvOptions
    scenarios: tuple[str, ...] = tuple(SCENARIOS)
    concurrency: tuple[int, ...] = (1, 8, 64)
    runs: int = 3
    duration: float = 5.0
    warmup: float = 1.0
    processes: int = 2
    postgresql_url: str | None = None
    with_slapd: bool = True
    uncached: bool = False  # also ldapsrv on SQLite with its caches off
    server_cpus: tuple[int, ...] = ()
    loadgen_cpus: tuple[int, ...] = ()
    notes: dict[str, str] = field(default_factory=dict)


def _memory(target: Target) -> dict[str, int]:
    return target.server.memory()


def measure_cell(
    target: Target, scenario: str, connections: int, opts: BenchOptions
) -> dict[str, Any]:
    """One scenario at one concurrency against one server, with its CPU and memory."""
    spec = LoadSpec(
        host=target.server.host,
        port=target.server.port,
        connections=connections,
        duration=opts.duration,
        warmup=opts.warmup,
        processes=opts.processes,
        cpus=opts.loadgen_cpus,
    )
    definition = SCENARIOS[scenario]
    workload = definition.build(opts.data, target.secrets)
    rss_before = sum(_memory(target).values())
    cpu_before = target.server.cpu()
    # Memory half-way through the measured window: by then pools and caches are
    # warm, so what grows after it is what streaming itself costs.
    midway: list[int] = []
    sampler = threading.Timer(
        opts.warmup + opts.duration / 2, lambda: midway.append(sum(_memory(target).values()))
    )
    sampler.start()
    try:
        result = run_load(spec, workload)
    finally:
        sampler.cancel()
    cell = cell_figures(result, definition.unit)
    wall = opts.warmup + opts.duration
    cell["server_cpu"] = round((target.server.cpu() - cpu_before) / wall, 2)
    memory = _memory(target)
    cell["rss_mib_before"] = round(rss_before / 2**20, 1)
    cell["rss_mib_midway"] = round(midway[0] / 2**20, 1) if midway else None
    cell["rss_mib_after"] = round(sum(memory.values()) / 2**20, 1)
    cell["rss_mib_max_process"] = round(max(memory.values(), default=0) / 2**20, 1)
    return cell


def cold_binds(target: Target, threads: int = 8, timeout: float = 300) -> dict[str, Any]:
    """Bind once with each never-used token (no cache can help): binds per second."""
    tokens = list(target.secrets.cold_tokens)
    if not tokens:
        return {}
    dn = f"cn={FULL_READER},{USERS_DN}"
    failures: list[str] = []
    lock = threading.Lock()
    deadline = time.monotonic() + timeout

    def worker() -> None:
        with socket.create_connection((target.server.host, target.server.port), timeout=30) as s:
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            buffer = bytearray()
            while time.monotonic() < deadline:
                with lock:
                    if not tokens:
                        return
                    token = tokens.pop()
                s.sendall(bind_request(1, dn, token))
                messages: list[bytes] = []
                while not messages:
                    chunk = s.recv(65536)
                    if not chunk:
                        raise ConnectionError("server closed the connection")
                    buffer += chunk
                    messages = split_messages(buffer)
                response = read_response(messages[0])
                if response.tag != BIND_RESPONSE or response.result_code != 0:
                    with lock:
                        failures.append(f"resultCode {response.result_code}")

    count = len(tokens)
    start = time.perf_counter()
    pool = [threading.Thread(target=worker, daemon=True) for _ in range(threads)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join(timeout=timeout)
    elapsed = time.perf_counter() - start
    return {
        "binds": count - len(tokens),
        "binds_per_s": round((count - len(tokens)) / elapsed, 1),
        "errors": len(failures),
        "connections": threads,
    }


def _order(targets: Sequence[Target], run: int) -> list[Target]:
    """Alternate which server goes first, so drift over a run favours neither."""
    return list(targets) if run % 2 == 0 else list(reversed(targets))


def summarise(runs: list[dict[str, Any]], labels: Sequence[str]) -> dict[str, Any]:
    summary: dict[str, Any] = {}
    scenarios = {(c["scenario"], c["connections"]) for r in runs for c in r["cells"]}
    for scenario, connections in sorted(scenarios):
        by_server: dict[str, Any] = {}
        for label in labels:
            cells = [
                c[label]
                for r in runs
                for c in r["cells"]
                if c["scenario"] == scenario and c["connections"] == connections and label in c
            ]
            if cells:
                by_server[label] = median_cell(cells)
        slapd = by_server.get("slapd")
        if slapd is not None:
            by_server["ratio"] = {
                label: ratio(by_server[label]["rate"], slapd["rate"])
                for label in labels
                if label != "slapd" and label in by_server
            }
            by_server["p99_ratio"] = {
                label: ratio(by_server[label]["p99_ms"], slapd["p99_ms"])
                for label in labels
                if label != "slapd" and label in by_server
            }
        summary.setdefault(scenario, {})[str(connections)] = by_server
    return summary


def run_benchmark(opts: BenchOptions, progress: Any = None) -> dict[str, Any]:
    say = progress or (lambda message: None)
    machine = describe_machine()
    data = opts.data
    cores_for_server = len(opts.server_cpus) or len(os.sched_getaffinity(0))
    bcrypt = {
        "password_cost": opts.ldapsrv.bcrypt_cost,
        "password_checks_per_s_one_core": round(bcrypt_rate(opts.ldapsrv.bcrypt_cost), 1),
        "token_cost": opts.ldapsrv.token_bcrypt_cost,
        "token_checks_per_s_one_core": round(bcrypt_rate(opts.ldapsrv.token_bcrypt_cost), 1),
        "server_cores": cores_for_server,
    }
    say(f"bcrypt: {bcrypt}")
    runs: list[dict[str, Any]] = []
    with started_targets(
        data,
        opts.ldapsrv,
        postgresql_url=opts.postgresql_url,
        with_slapd=opts.with_slapd,
        server_cpus=opts.server_cpus,
        uncached=opts.uncached,
    ) as targets:
        labels = [t.label for t in targets]
        servers = {t.label: {"pid": t.server.pid, **t.server.details} for t in targets}
        idle_memory = {t.label: round(sum(_memory(t).values()) / 2**20, 1) for t in targets}
        for run in range(opts.runs):
            cells: list[dict[str, Any]] = []
            for scenario in opts.scenarios:
                for connections in opts.concurrency:
                    cell: dict[str, Any] = {"scenario": scenario, "connections": connections}
                    for target in _order(targets, run):
                        cell[target.label] = measure_cell(target, scenario, connections, opts)
                        say(
                            f"run {run + 1} {scenario} x{connections} {target.label}: "
                            f"{cell[target.label]['rate']} {cell[target.label]['unit']}, "
                            f"p99 {cell[target.label]['p99_ms']} ms, "
                            f"errors {cell[target.label]['errors']}"
                        )
                    cells.append(cell)
            runs.append({"run": run + 1, "cells": cells})
        cold = {t.label: cold_binds(t) for t in targets if not t.is_slapd}
        final_memory = {t.label: _memory(t) for t in targets}
    summary = summarise(runs, labels)
    for figures in cold.values():
        if figures:
            allowed = bcrypt["token_checks_per_s_one_core"] * cores_for_server
            figures["bcrypt_bound_per_s"] = round(allowed, 1)
            figures["fraction_of_bcrypt_bound"] = round(figures["binds_per_s"] / allowed, 3)
    top = str(max(opts.concurrency))
    targets_out: list[dict[str, Any]] = []
    for label in labels:
        if label == "slapd":
            continue
        for verdict in evaluate_targets(summary, top, label):
            targets_out.append({"server": label, "concurrency": int(top), **verdict})
        targets_out.extend(
            _own_targets(label, cold.get(label, {}), final_memory[label], runs, data)
        )
    return {
        "machine": machine,
        "config": {
            "data_set": data.describe(),
            "scenarios": list(opts.scenarios),
            "concurrency": list(opts.concurrency),
            "runs": opts.runs,
            "duration_s": opts.duration,
            "warmup_s": opts.warmup,
            "load_generator_processes": opts.processes,
            "server_cpus": list(opts.server_cpus),
            "load_generator_cpus": list(opts.loadgen_cpus),
            "servers": servers,
            "bcrypt": bcrypt,
            "notes": opts.notes,
        },
        "idle_rss_mib": idle_memory,
        "runs": runs,
        "summary": summary,
        "cold_token_binds": cold,
        "final_rss_mib": {
            label: {pid: round(v / 2**20, 1) for pid, v in memory.items()}
            for label, memory in final_memory.items()
        },
        "targets": targets_out,
    }


def _own_targets(
    label: str,
    cold: dict[str, Any],
    memory: dict[str, int],
    runs: list[dict[str, Any]],
    data: DataSet,
) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    if cold:
        fraction = cold["fraction_of_bcrypt_bound"]
        entry: dict[str, Any] = {
            "server": label,
            "name": "cold token bind throughput",
            "target": ">= 0.9 of bcrypt's rate on the server's cores",
            "measured": fraction,
            "met": fraction >= 0.9 and cold["errors"] == 0,
        }
        if not entry["met"]:
            entry["why_if_missed"] = (
                "a cold bind also runs the bind's SQL (throttle, credentials, token row, grants)"
                " and the Python around bcrypt"
            )
        found.append(entry)
    largest = max(memory.values(), default=0)
    entry = {
        "server": label,
        "name": "resident memory per worker process at 100,000 people",
        "target": "< 200 MiB",
        "measured": round(largest / 2**20, 1),
        "met": largest < MEMORY_LIMIT_BYTES if data.people_count >= 100_000 else None,
    }
    if data.people_count < 100_000:
        entry["why_if_missed"] = f"measured at {data.people_count} people; run with --people 100000"
    elif not entry["met"]:
        entry["why_if_missed"] = "see final_rss_mib"
    found.append(entry)
    growth = [
        c[label]["rss_mib_after"] - c[label]["rss_mib_midway"]
        for r in runs
        for c in r["cells"]
        if c["scenario"] == "enumeration" and label in c and c[label]["rss_mib_midway"] is not None
    ]
    if growth:
        worst = max(growth)
        streamed = sum(
            c[label]["entries"]
            for r in runs
            for c in r["cells"]
            if c["scenario"] == "enumeration" and label in c
        )
        found.append(
            {
                "server": label,
                "name": "memory flat while streaming the enumeration",
                "target": "RSS growth over the second half of an enumeration cell < 10 MiB",
                "measured": round(worst, 1),
                "entries_streamed": streamed,
                "met": worst < 10,
            }
        )
    return found
