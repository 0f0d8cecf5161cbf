"""``python -m bench``: ldapsrv against slapd, side by side, as one JSON document.

    python -m bench [run] [--runs 3] [--duration 5] [--people 10000] [--pin] ...
    python -m bench soak [--duration 120] [--connections 64]

Progress goes to stderr; the JSON to stdout and to --output.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench.dataset import DataSet
from bench.ldapsrv_target import LdapsrvOptions, workers_supported
from bench.run import BenchOptions, run_benchmark
from bench.scenarios import SCENARIOS
from bench.slapd_target import slapd_path
from bench.soak import SoakOptions, run_soak


def _int_list(text: str) -> tuple[int, ...]:
    try:
        values = tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected numbers separated by commas, got {text!r}"
        ) from None
    if not values or any(v < 1 for v in values):
        raise argparse.ArgumentTypeError(f"expected positive numbers, got {text!r}")
    return values


def _scenarios(text: str) -> tuple[str, ...]:
    names = tuple(n.strip() for n in text.split(",") if n.strip())
    unknown = [n for n in names if n not in SCENARIOS]
    if unknown or not names:
        raise argparse.ArgumentTypeError(
            f"unknown scenario(s) {', '.join(unknown) or '(none)'}; known: {', '.join(SCENARIOS)}"
        )
    return names


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--people", type=int, default=10_000, help="people (default 10000)")
    parser.add_argument("--groups", type=int, default=500, help="groups (default 500)")
    parser.add_argument("--group-size", type=int, default=20, help="members per group (20)")
    parser.add_argument("--seed", type=int, default=1, help="data set seed (1)")
    parser.add_argument(
        "--postgresql",
        metavar="URL",
        default=os.environ.get("LDAPSRV_BENCH_POSTGRESQL_URL") or None,
        help="also run ldapsrv on PostgreSQL (a scratch database is created on this server "
        "and dropped; default $LDAPSRV_BENCH_POSTGRESQL_URL)",
    )
    parser.add_argument(
        "--workers",
        metavar="N|auto",
        help="write [server] workers = N into ldapsrv's config (only when given; 'auto' "
        "falls back to not setting it when this ldapsrv does not accept it)",
    )
    parser.add_argument(
        "--bcrypt-cost",
        type=int,
        default=4,
        help="ldapsrv's [security] bcrypt_cost for people (default 4: cheap "
        "load; the JSON reports bcrypt's own rate)",
    )
    parser.add_argument(
        "--token-bcrypt-cost",
        type=int,
        default=10,
        help="ldapsrv's [tokens] bcrypt_cost (default 10, the shipped default)",
    )
    parser.add_argument(
        "--processes", type=int, default=2, help="load generator processes (default 2)"
    )
    parser.add_argument(
        "--pin",
        action="store_true",
        help="pin each server to core 0 and the load generator to the other cores (taskset)",
    )
    parser.add_argument("--output", type=Path, metavar="FILE", help="also write the JSON here")
    parser.add_argument("--quiet", action="store_true", help="no progress on stderr")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description="Benchmark ldapsrv against OpenLDAP's slapd on this machine (loopback).",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    run = commands.add_parser("run", help="the side-by-side benchmark (default)")
    _common(run)
    run.add_argument("--runs", type=int, default=3, help="runs; figures are medians (3)")
    run.add_argument("--duration", type=float, default=5.0, help="measured seconds per cell (5)")
    run.add_argument("--warmup", type=float, default=1.0, help="unmeasured seconds first (1)")
    run.add_argument(
        "--concurrency",
        type=_int_list,
        default=(1, 8, 64),
        help="connections per cell, e.g. 1,8,64",
    )
    run.add_argument(
        "--scenarios",
        type=_scenarios,
        default=tuple(SCENARIOS),
        help=f"comma-separated subset of {','.join(SCENARIOS)}",
    )
    run.add_argument(
        "--uncached",
        action="store_true",
        help="also run ldapsrv on SQLite with its caches off ([cache] = 0): what every "
        "answer costs when read from the database",
    )
    run.add_argument(
        "--cold-tokens",
        type=int,
        default=64,
        help="never-used tokens bound once each to measure cold binds (64)",
    )
    run.add_argument("--no-slapd", action="store_true", help="ldapsrv only")
    soak = commands.add_parser("soak", help="bounded soak: mixed load, failures and memory")
    _common(soak)
    soak.add_argument("--duration", type=float, default=120.0, help="seconds (120)")
    soak.add_argument("--connections", type=int, default=64, help="connections (64)")
    return parser


def _cpus(pin: bool) -> tuple[tuple[int, ...], tuple[int, ...]]:
    cores = sorted(os.sched_getaffinity(0))
    if not pin or len(cores) < 2:
        return (), ()
    return (cores[0],), tuple(cores[1:])


def _workers(value: str | None, notes: dict[str, str]) -> str | None:
    if value is None:
        return None
    if workers_supported(value):
        return value
    if value == "auto":
        notes["workers"] = "'auto' is not accepted by this ldapsrv: [server] workers left unset"
        return None
    raise SystemExit(f"bench: this ldapsrv does not accept [server] workers = {value!r}")


def main(argv: Sequence[str] | None = None) -> int:
    args_list = list(sys.argv[1:] if argv is None else argv)
    if not args_list or args_list[0] not in ("run", "soak", "-h", "--help"):
        args_list.insert(0, "run")
    args = build_parser().parse_args(args_list)
    say = (
        (lambda message: None)
        if args.quiet
        else (lambda message: print(message, file=sys.stderr, flush=True))
    )
    try:
        data = DataSet(args.people, args.groups, args.group_size, args.seed)
    except ValueError as exc:
        raise SystemExit(f"bench: {exc}") from None
    notes: dict[str, str] = {}
    server_cpus, loadgen_cpus = _cpus(args.pin)
    ldapsrv = LdapsrvOptions(
        bcrypt_cost=args.bcrypt_cost,
        token_bcrypt_cost=args.token_bcrypt_cost,
        workers=_workers(args.workers, notes),
        cold_tokens=getattr(args, "cold_tokens", 0),
        cpus=server_cpus,
    )
    result: dict[str, Any]
    if args.command == "soak":
        result = run_soak(
            SoakOptions(
                data=data,
                ldapsrv=ldapsrv,
                duration=args.duration,
                connections=args.connections,
                processes=args.processes,
                postgresql_url=args.postgresql,
                loadgen_cpus=loadgen_cpus,
                notes=notes,
            ),
            say,
        )
    else:
        with_slapd = not args.no_slapd and slapd_path() is not None
        if not args.no_slapd and not with_slapd:
            notes["slapd"] = "slapd is not installed: no ratios"
        result = run_benchmark(
            BenchOptions(
                data=data,
                ldapsrv=ldapsrv,
                scenarios=args.scenarios,
                concurrency=args.concurrency,
                runs=args.runs,
                duration=args.duration,
                warmup=args.warmup,
                processes=args.processes,
                postgresql_url=args.postgresql,
                with_slapd=with_slapd,
                uncached=args.uncached,
                server_cpus=server_cpus,
                loadgen_cpus=loadgen_cpus,
                notes=notes,
            ),
            say,
        )
    text = json.dumps(result, indent=2, sort_keys=False)
    print(text)
    if args.output is not None:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
