"""Background LDAP load and latency figures for fault and fuzz tests."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from e2e.harness import LdapServer
from e2e.wire import ConnectionClosed, Outcome, WireClient


@dataclass
class Sample:
    started: float
    seconds: float
    code: int | None  # None: no answer (closed connection or timeout)
    error: str = ""


@dataclass
class LoadReport:
    samples: list[Sample] = field(default_factory=list)

    def latencies(self) -> list[float]:
        return sorted(s.seconds for s in self.samples)

    def percentile(self, fraction: float) -> float:
        values = self.latencies()
        if not values:
            return 0.0
        return values[min(len(values) - 1, int(fraction * len(values)))]

    def codes(self) -> set[int | None]:
        return {s.code for s in self.samples}

    def failures(self) -> list[Sample]:
        return [s for s in self.samples if s.code is None]

    def successes_after(self, moment: float) -> list[Sample]:
        return [s for s in self.samples if s.started >= moment and s.code == 0]


class BackgroundLoad:
    """A client that repeats ``operation`` on one connection until stopped,
    recording the result code and latency of each; it reconnects (and records a
    failure) if the server drops the connection."""

    def __init__(
        self,
        server: LdapServer,
        operation: Callable[[WireClient], Outcome],
        *,
        setup: Callable[[WireClient], None] | None = None,
        timeout: float = 15.0,
        pause: float = 0.02,
    ) -> None:
        self.server = server
        self.operation = operation
        self.setup = setup
        self.timeout = timeout
        self.pause = pause
        self.report = LoadReport()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="ldap-load", daemon=True)

    def _connect(self) -> WireClient:
        client = WireClient(self.server.host, self.server.ldap_port, timeout=self.timeout)
        if self.setup is not None:
            self.setup(client)
        return client

    def _run(self) -> None:
        client: WireClient | None = None
        while not self._stop.is_set():
            started = time.monotonic()
            try:
                if client is None:
                    client = self._connect()
                outcome = self.operation(client)
                sample = Sample(started, time.monotonic() - started, outcome.code)
            except (ConnectionClosed, TimeoutError, OSError) as exc:
                sample = Sample(started, time.monotonic() - started, None, repr(exc))
                if client is not None:
                    client.close()
                client = None
            self.report.samples.append(sample)
            self._stop.wait(self.pause)
        if client is not None:
            client.close()

    def __enter__(self) -> BackgroundLoad:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> LoadReport:
        self._stop.set()
        self._thread.join(timeout=self.timeout + 5)
        return self.report

    def wait_for_successes(self, count: int, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while sum(1 for s in self.report.samples if s.code == 0) < count:
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"background load: fewer than {count} successes in {timeout:g} s: "
                    f"{self.report.samples[-5:]}"
                )
            time.sleep(0.05)
