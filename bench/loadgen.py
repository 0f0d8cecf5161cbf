"""The load generator: several processes, each driving many non-blocking sockets.

Each process runs a ``selectors`` loop over its share of the connections. Every
connection cycles through the workload's pre-encoded operations, one at a time
(request, wait for the complete answer, verify, next), and records each
operation's latency. Answers are verified, not counted in bytes: the result code
of every final response and the number of entries of every search must be what
the data set says, or the operation counts as an error.

Bounded in time and count: a warm-up, then ``duration`` seconds of measurement
(or ``max_ops`` operations per process, whichever comes first), then at most
``grace`` seconds to let operations in flight finish; those still running then
(a long enumeration) are cut short and counted as ``unfinished``, not as errors.
Entries are counted as they arrive inside the measured window, so an enumeration
longer than the window still gives its rate. An operation that gets no answer for
``op_timeout`` seconds is an error and its connection is replaced.
"""

from __future__ import annotations

import contextlib
import errno
import multiprocessing
import os
import resource
import selectors
import socket
import time
from array import array
from collections import Counter
from dataclasses import dataclass, field
from multiprocessing.connection import Connection as Pipe
from typing import Any

from bench.protocol import (
    RESULT_TAGS,
    SEARCH_ENTRY,
    SEARCH_REFERENCE,
    ResponseError,
    read_response,
    split_messages,
)
from bench.workload import Exchange, Op, Workload

RECV_BYTES = 262_144
MAX_ERROR_SAMPLES = 5


@dataclass(frozen=True)
class LoadSpec:
    host: str
    port: int
    connections: int
    duration: float = 5.0
    warmup: float = 1.0
    processes: int = 2
    max_ops: int = 5_000_000
    grace: float = 5.0
    op_timeout: float = 10.0
    setup_timeout: float = 60.0
    cpus: tuple[int, ...] = ()  # pin the load generator's processes to these cores


@dataclass
class LoadResult:
    ops: int = 0
    errors: int = 0
    entries: int = 0  # search entries received inside the measured window
    unfinished: int = 0  # operations still running when the time was up (not errors)
    elapsed: float = 0.0
    cpu_seconds: float = 0.0
    latencies: array[float] = field(default_factory=lambda: array("d"))
    error_samples: Counter[str] = field(default_factory=Counter)

    def merge(self, other: LoadResult) -> None:
        self.ops += other.ops
        self.errors += other.errors
        self.unfinished += other.unfinished
        self.entries += other.entries
        self.elapsed = max(self.elapsed, other.elapsed)
        self.cpu_seconds += other.cpu_seconds
        self.latencies.extend(other.latencies)
        for key, count in other.error_samples.items():
            if key in self.error_samples or len(self.error_samples) < MAX_ERROR_SAMPLES:
                self.error_samples[key] += count


class _Conn:
    __slots__ = (
        "buffer",
        "entries",
        "exchange",
        "last_activity",
        "message_id",
        "op",
        "op_index",
        "ready",
        "setup_index",
        "sock",
        "started",
    )

    def __init__(self, op_index: int) -> None:
        self.sock: socket.socket | None = None
        self.buffer = bytearray()
        self.op_index = op_index
        self.op: Op | None = None
        self.exchange = 0
        self.entries = 0
        self.message_id = 0
        self.started = 0.0
        self.last_activity = 0.0
        self.setup_index = 0
        self.ready = False


class _Driver:
    """One process's share of the connections."""

    def __init__(self, spec: LoadSpec, workload: Workload, connections: int, first: int) -> None:
        self.spec = spec
        self.workload = workload
        self.selector = selectors.DefaultSelector()
        self.result = LoadResult()
        self.measure_from = float("inf")
        self.stop_at = float("inf")
        self.running = False
        self.in_window = False
        self.fresh = all(op.fresh_connection for op in workload.ops)
        step = max(1, len(workload.ops) // max(1, spec.connections))
        self.conns = [_Conn((first + i) * step) for i in range(connections)]

    # -------------------------------------------------------------- sockets

    def _open(self, conn: _Conn) -> None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setblocking(False)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        code = sock.connect_ex((self.spec.host, self.spec.port))
        if code not in (0, errno.EINPROGRESS):
            sock.close()
            raise OSError(code, os.strerror(code))
        conn.sock = sock
        conn.buffer.clear()
        self.selector.register(sock, selectors.EVENT_WRITE, conn)

    def _close(self, conn: _Conn, unbind: bool = False) -> None:
        sock = conn.sock
        if sock is None:
            return
        with contextlib.suppress(KeyError, ValueError):
            self.selector.unregister(sock)
        if unbind and self.workload.closing:
            with contextlib.suppress(OSError):
                sock.send(self.workload.closing)
        sock.close()
        conn.sock = None

    def _send(self, conn: _Conn, data: bytes) -> None:
        assert conn.sock is not None
        sent = conn.sock.send(data)
        if sent != len(data):  # requests are small; a full send buffer means trouble
            raise OSError(errno.EAGAIN, "request did not fit the socket buffer")

    # ---------------------------------------------------------- operations

    def _error(self, conn: _Conn, what: str, reconnect: bool) -> None:
        counted = conn.op is None or conn.started >= self.measure_from
        if not self.running:
            what = f"setup: {what}"
        if counted:
            self.result.errors += 1
            samples = self.result.error_samples
            if what in samples or len(samples) < MAX_ERROR_SAMPLES:
                samples[what] += 1
        if not reconnect:
            return
        conn.op = None
        self._close(conn)
        conn.ready = False
        conn.setup_index = 0
        if self.fresh:
            self._next_op(conn)
        elif self._may_start():
            self._open(conn)

    def _may_start(self) -> bool:
        return time.perf_counter() < self.stop_at and self.result.ops < self.spec.max_ops

    def _start_exchange(self, conn: _Conn, exchange: Exchange) -> None:
        conn.message_id = exchange.message_id
        conn.entries = 0
        self._send(conn, exchange.request)

    def _next_op(self, conn: _Conn) -> None:
        """Start the connection's next operation, or close it when time is up."""
        if not (self.running and self._may_start()):
            self._close(conn, unbind=True)
            return
        ops = self.workload.ops
        conn.op = ops[conn.op_index % len(ops)]
        conn.op_index += 1
        conn.exchange = 0
        conn.started = conn.last_activity = time.perf_counter()
        if conn.op.fresh_connection:
            self._open(conn)  # the first exchange goes out once connected
        else:
            self._start_exchange(conn, conn.op.exchanges[0])

    def _connected(self, conn: _Conn) -> None:
        assert conn.sock is not None
        code = conn.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if code:
            self._error(conn, f"connect: {os.strerror(code)}", reconnect=False)
            self._close(conn)
            return
        self.selector.modify(conn.sock, selectors.EVENT_READ, conn)
        if conn.op is not None and conn.op.fresh_connection:
            self._start_exchange(conn, conn.op.exchanges[0])
        elif conn.setup_index < len(self.workload.setup):
            self._start_exchange(conn, self.workload.setup[conn.setup_index])
        else:
            self._setup_done(conn)

    def _setup_done(self, conn: _Conn) -> None:
        conn.ready = True
        if self.running:
            self._next_op(conn)

    def _readable(self, conn: _Conn) -> None:
        assert conn.sock is not None
        try:
            data = conn.sock.recv(RECV_BYTES)
        except (ConnectionError, OSError) as exc:
            self._error(conn, f"recv: {type(exc).__name__}", reconnect=True)
            return
        if not data:
            self._error(conn, "server closed the connection", reconnect=True)
            return
        now = conn.last_activity = time.perf_counter()
        self.in_window = self.measure_from <= now <= self.stop_at
        conn.buffer += data
        try:
            for pdu in split_messages(conn.buffer):
                if conn.sock is None:
                    return
                self._response(conn, pdu)
        except ResponseError as exc:
            self._error(conn, str(exc), reconnect=True)

    def _response(self, conn: _Conn, pdu: bytes) -> None:
        response = read_response(pdu)
        if conn.op is None:
            exchange = self.workload.setup[conn.setup_index]
        else:
            assert conn.op is not None
            exchange = conn.op.exchanges[conn.exchange]
        if response.message_id != conn.message_id:
            raise ResponseError(f"message id {response.message_id}, expected {conn.message_id}")
        if response.tag == SEARCH_ENTRY:
            conn.entries += 1
            if self.in_window and conn.op is not None:
                self.result.entries += 1
            return
        if response.tag == SEARCH_REFERENCE:
            return
        if response.tag not in RESULT_TAGS:
            raise ResponseError(f"unexpected response tag 0x{response.tag:02x}")
        if exchange.paged is not None and response.cookie and response.result_code == 0:
            conn.message_id += 1
            self._send(conn, exchange.paged.next_page(conn.message_id, response.cookie))
            return
        name = self.workload.name
        op = conn.op
        if response.result_code != exchange.code:
            self._error(
                conn, f"{name}: resultCode {response.result_code}, expected {exchange.code}", False
            )
        elif exchange.entries is not None and conn.entries != exchange.entries:
            self._error(conn, f"{name}: {conn.entries} entries, expected {exchange.entries}", False)
        elif op is None:
            conn.setup_index += 1
            if conn.setup_index < len(self.workload.setup):
                self._start_exchange(conn, self.workload.setup[conn.setup_index])
            else:
                self._setup_done(conn)
            return
        else:
            conn.exchange += 1
            if conn.exchange < len(op.exchanges):
                self._start_exchange(conn, op.exchanges[conn.exchange])
                return
            self._finished(conn, op)
        if op is not None:
            self._after_op(conn, op)

    def _finished(self, conn: _Conn, op: Op) -> None:
        now = time.perf_counter()
        if self.measure_from <= conn.started and now <= self.stop_at:
            self.result.ops += 1
            self.result.latencies.append(now - conn.started)

    def _after_op(self, conn: _Conn, op: Op) -> None:
        conn.op = None
        if op.fresh_connection:
            self._close(conn, unbind=True)
        self._next_op(conn)

    # ------------------------------------------------------------------ loop

    def _poll(self, timeout: float) -> None:
        for key, mask in self.selector.select(timeout):
            conn: _Conn = key.data
            if conn.sock is None:
                continue
            if mask & selectors.EVENT_WRITE:
                self._connected(conn)
            else:
                self._readable(conn)

    def _expire(self, now: float) -> None:
        for conn in self.conns:
            if conn.op is not None and now - conn.last_activity > self.spec.op_timeout:
                self._error(conn, f"no answer within {self.spec.op_timeout:.0f} s", reconnect=True)

    def prepare(self) -> None:
        """Open the connections and run their setup (binds), untimed."""
        if not self.fresh:
            for conn in self.conns:
                self._open(conn)
        deadline = time.perf_counter() + self.spec.setup_timeout
        while not self.fresh and not all(c.ready for c in self.conns):
            if time.perf_counter() > deadline:
                raise TimeoutError("connections not set up in time")
            if self.result.errors:
                raise RuntimeError(f"setup failed: {dict(self.result.error_samples)}")
            self._poll(0.2)

    def run(self) -> LoadResult:
        start = time.perf_counter()
        self.measure_from = start + self.spec.warmup
        self.stop_at = self.measure_from + self.spec.duration
        self.running = True
        for conn in self.conns:
            self._next_op(conn)
        hard_stop = self.stop_at + self.spec.grace
        last_expiry = start
        while any(c.sock is not None for c in self.conns):
            now = time.perf_counter()
            if now > hard_stop:
                for conn in self.conns:
                    if conn.op is not None:
                        self.result.unfinished += 1  # long operations (enumerations) cut short
                    self._close(conn)
                break
            if now - last_expiry > 0.5:
                self._expire(now)
                last_expiry = now
            self._poll(0.1)
        measured_until = min(time.perf_counter(), self.stop_at)
        self.result.elapsed = max(1e-9, measured_until - self.measure_from)
        usage = resource.getrusage(resource.RUSAGE_SELF)
        self.result.cpu_seconds = usage.ru_utime + usage.ru_stime
        return self.result


def _process_main(
    spec: LoadSpec,
    workload: Workload,
    connections: int,
    first: int,
    barrier: Any,
    pipe: Pipe,
) -> None:
    try:
        if spec.cpus:
            os.sched_setaffinity(0, set(spec.cpus))
        driver = _Driver(spec, workload, connections, first)
        driver.prepare()
        before = resource.getrusage(resource.RUSAGE_SELF)
        barrier.wait(timeout=spec.setup_timeout)
        result = driver.run()
        result.cpu_seconds -= before.ru_utime + before.ru_stime
        pipe.send(("ok", result))
    except BaseException as exc:  # reported to the parent, never lost
        with contextlib.suppress(Exception):
            barrier.abort()
        pipe.send(("error", f"{type(exc).__name__}: {exc}"))
    finally:
        pipe.close()


def run_load(spec: LoadSpec, workload: Workload) -> LoadResult:
    """Drive ``workload`` against ``spec.host:spec.port``; the merged result of all processes."""
    processes = max(1, min(spec.processes, spec.connections))
    context = multiprocessing.get_context("fork")  # workloads are inherited, not pickled
    barrier = context.Barrier(processes)
    children: list[tuple[Any, Pipe]] = []
    first = 0
    for index in range(processes):
        share = spec.connections // processes + (1 if index < spec.connections % processes else 0)
        receiver, sender = context.Pipe(duplex=False)
        child = context.Process(
            target=_process_main, args=(spec, workload, share, first, barrier, sender), daemon=True
        )
        child.start()
        sender.close()
        children.append((child, receiver))
        first += share
    total = LoadResult()
    failures: list[str] = []
    limit = spec.setup_timeout + spec.warmup + spec.duration + spec.grace + 30
    deadline = time.monotonic() + limit
    for child, receiver in children:
        remaining = max(0.1, deadline - time.monotonic())
        if receiver.poll(remaining):
            status, payload = receiver.recv()
            if status == "ok":
                total.merge(payload)
            else:
                failures.append(payload)
        else:
            failures.append("load generator process gave no result in time")
        child.join(timeout=5)
        if child.is_alive() and child.pid is not None:
            os.kill(child.pid, 9)
            child.join(timeout=5)
    if failures:
        raise RuntimeError("; ".join(failures))
    return total
