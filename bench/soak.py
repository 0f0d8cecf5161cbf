"""The bounded soak (issue 6): many connections, mixed work, for a fixed time.

Every connection binds as the full reader, then cycles through a mix of token
re-binds, SSSD user lookups, group lookups and, now and then, a full paged
enumeration. Failed operations must be 0; the server's resident memory is
sampled every few seconds and must stay flat.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Any

from bench.dataset import DataSet
from bench.ldapsrv_target import LdapsrvOptions
from bench.loadgen import LoadSpec, run_load
from bench.machine import describe_machine
from bench.report import cell_figures
from bench.scenarios import enumeration, membership_lookup, token_bind, uid_lookup
from bench.targets import started_targets
from bench.workload import Op, Workload

ENUMERATION_EVERY = 200
"""One operation in this many is a full paged enumeration of the people."""


def mixed_workload(data: DataSet, secrets: Any) -> Workload:
    binds = token_bind(data, secrets).ops
    users = uid_lookup(data, secrets)
    groups = membership_lookup(data, secrets).ops
    enumerate_all = enumeration(data, secrets).ops[0]
    ops: list[Op] = []
    for index, user_op in enumerate(users.ops):
        ops.append(user_op)
        ops.append(groups[index % len(groups)])
        if index % 4 == 0:
            ops.append(binds[0])
        if index % ENUMERATION_EVERY == 0:
            ops.append(enumerate_all)
    return Workload("soak", tuple(ops), setup=users.setup)


@dataclass(frozen=True)
class SoakOptions:
    data: DataSet
    ldapsrv: LdapsrvOptions
    duration: float = 120.0
    connections: int = 64
    processes: int = 2
    sample_every: float = 2.0
    postgresql_url: str | None = None
    loadgen_cpus: tuple[int, ...] = ()
    notes: dict[str, str] | None = None


def run_soak(opts: SoakOptions, progress: Any = None) -> dict[str, Any]:
    say = progress or (lambda message: None)
    with started_targets(
        opts.data,
        opts.ldapsrv,
        postgresql_url=opts.postgresql_url,
        with_slapd=False,
        server_cpus=opts.ldapsrv.cpus,
    ) as targets:
        target = targets[-1]  # PostgreSQL when given, else SQLite
        samples: list[tuple[float, int]] = []
        done = threading.Event()
        start = time.monotonic()

        def sample() -> None:
            while not done.is_set():
                samples.append((time.monotonic() - start, sum(target.server.memory().values())))
                done.wait(opts.sample_every)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        spec = LoadSpec(
            host=target.server.host,
            port=target.server.port,
            connections=opts.connections,
            duration=opts.duration,
            warmup=0.0,
            processes=opts.processes,
            cpus=opts.loadgen_cpus,
        )
        say(f"soak: {opts.connections} connections for {opts.duration:.0f} s on {target.label}")
        try:
            result = run_load(spec, mixed_workload(opts.data, target.secrets))
        finally:
            done.set()
            sampler.join(timeout=10)
    figures = cell_figures(result, "ops")
    rss = [value for _, value in samples]
    settled = rss[len(rss) // 4 :] or rss  # after the first quarter: caches warm, pools full
    growth = (settled[-1] - settled[0]) / 2**20 if settled else 0.0
    return {
        "machine": describe_machine(),
        "soak": {
            "server": target.label,
            "duration_s": opts.duration,
            "connections": opts.connections,
            "data_set": opts.data.describe(),
            "mix": f"user lookup + group lookup per step, a token re-bind every 4th, "
            f"a full paged enumeration every {ENUMERATION_EVERY}th",
            **figures,
            "failed_operations": result.errors,
            "rss_mib_samples": [[round(t, 1), round(v / 2**20, 1)] for t, v in samples],
            "rss_mib_start": round(rss[0] / 2**20, 1) if rss else None,
            "rss_mib_end": round(rss[-1] / 2**20, 1) if rss else None,
            "rss_mib_max": round(max(rss) / 2**20, 1) if rss else None,
            "rss_growth_mib_after_warmup": round(growth, 1),
            "passed": result.errors == 0 and growth < 20,
            "server_settings": target.server.details,
            "notes": opts.notes or {},
        },
    }
