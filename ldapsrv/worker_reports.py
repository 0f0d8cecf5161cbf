"""What a worker tells its supervisor over the ready pipe (fd 5), one line each:

- ``ready``: the worker serves LDAP;
- ``stats active=3 accepted=120``: its live LDAP connection figures (open now,
  accepted since it started), sent when they change, at most every
  ``REPORT_INTERVAL`` seconds (``StatsReporter``).

The supervisor reads the pipe with ``ReportReader``: bytes arrive in arbitrary
pieces, a line it does not understand is ignored (unknown ``key=value`` pairs
in a stats line too, for later additions) and an overlong line is dropped whole.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

from ldapsrv.observability.monitor import ConnectionCount

READY: Final = b"ready\n"
REPORT_INTERVAL: Final = 0.5
#: A line longer than this is garbage: it is dropped up to its newline.
MAX_LINE: Final = 256


@dataclass(frozen=True, slots=True)
class Ready:
    """The worker serves."""


@dataclass(frozen=True, slots=True)
class Stats:
    """A worker's LDAP connections: open now, accepted since it started."""

    active: int
    accepted: int


Report = Ready | Stats


def stats_line(active: int, accepted: int) -> bytes:
    return f"stats active={active} accepted={accepted}\n".encode()


def parse_report(line: bytes) -> Report | None:
    """One line (without its newline) as a report; None when it is not one."""
    words = line.split()
    if words == [READY.strip()]:
        return Ready()
    if not words or words[0] != b"stats":
        return None
    figures: dict[bytes, int] = {}
    for word in words[1:]:
        key, equals, value = word.partition(b"=")
        if not equals or not value.isdigit():
            return None
        figures[key] = int(value)
    if b"active" not in figures or b"accepted" not in figures:
        return None
    return Stats(figures[b"active"], figures[b"accepted"])


class ReportReader:
    """Turns the bytes read from one worker's pipe into its reports."""

    def __init__(self) -> None:
        self._pending = b""
        self._overlong = False  # dropping the rest of a line longer than MAX_LINE

    def feed(self, data: bytes) -> list[Report]:
        *lines, rest = (self._pending + data).split(b"\n")
        if lines and self._overlong:
            lines.pop(0)  # the end of the overlong line
            self._overlong = False
        self._pending = rest
        if len(rest) > MAX_LINE:
            self._pending, self._overlong = b"", True
        reports = (parse_report(line) for line in lines if len(line) <= MAX_LINE)
        return [report for report in reports if report is not None]


class StatsReporter:
    """Sends a worker's connection figures when they change: the first change at
    once (on the next turn of the reactor, so a burst makes one line), later ones
    no sooner than ``interval`` after the previous line. Figures that went back
    to what was last sent are not sent again."""

    def __init__(
        self,
        clock: Any,  # IReactorTime
        count: ConnectionCount,
        send: Callable[[bytes], None],
        interval: float = REPORT_INTERVAL,
    ) -> None:
        self.clock = clock
        self.count = count
        self.send = send
        self.interval = interval
        self._sent = (0, 0)
        self._sent_at = float("-inf")
        self._call: Any = None

    def changed(self) -> None:
        if self._call is not None:
            return
        delay = max(0.0, self._sent_at + self.interval - self.clock.seconds())
        self._call = self.clock.callLater(delay, self._flush)

    def _flush(self) -> None:
        self._call = None
        figures = (self.count.active, self.count.accepted)
        if figures == self._sent:
            return
        self._sent, self._sent_at = figures, self.clock.seconds()
        self.send(stats_line(*figures))
