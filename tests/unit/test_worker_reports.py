"""The line protocol a worker speaks to its supervisor on the ready pipe:
reading pieces and garbage, and sending figures on change, throttled."""

from __future__ import annotations

import pytest
from twisted.internet.task import Clock

from ldapsrv.observability.monitor import ConnectionCount
from ldapsrv.worker_reports import (
    MAX_LINE,
    REPORT_INTERVAL,
    Ready,
    ReportReader,
    Stats,
    StatsReporter,
    parse_report,
    stats_line,
)


def test_a_stats_line_reads_back_as_the_figures_it_was_made_from() -> None:
    assert stats_line(3, 120) == b"stats active=3 accepted=120\n"
    assert parse_report(stats_line(3, 120).rstrip(b"\n")) == Stats(3, 120)
    assert parse_report(b"ready") == Ready()
    assert parse_report(b"stats accepted=7 active=2 later=1") == Stats(2, 7)  # order, extras


@pytest.mark.parametrize(
    "line",
    [
        b"",
        b"hello",
        b"ready now",
        b"stats",
        b"stats active=3",
        b"stats active=-1 accepted=2",
        b"stats active=x accepted=2",
        b"stats active accepted=2",
        b"stats active=\xff accepted=2",
        b"\x00\xff\xfe",
    ],
)
def test_anything_else_is_not_a_report(line: bytes) -> None:
    assert parse_report(line) is None


def test_the_reader_joins_pieces_and_skips_garbage() -> None:
    reader = ReportReader()
    assert reader.feed(b"rea") == []
    assert reader.feed(b"dy\nstats act") == [Ready()]
    assert reader.feed(b"ive=1 accepted=1\n") == [Stats(1, 1)]
    assert reader.feed(b"junk\n\nstats active=2 accepted=5\nstats active=1 accepted=5\n") == [
        Stats(2, 5),
        Stats(1, 5),
    ]


def test_an_overlong_line_is_dropped_up_to_its_newline_and_reading_goes_on() -> None:
    reader = ReportReader()
    assert reader.feed(b"stats " + b"9" * MAX_LINE) == []
    assert reader.feed(b"9" * 10_000) == []  # nothing piles up
    assert reader.feed(b" accepted=1\nstats active=0 accepted=4\n") == [Stats(0, 4)]
    assert reader.feed(b"x" * (MAX_LINE + 1) + b"\nready\n") == [Ready()]


class Sent:
    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.lines: list[tuple[float, bytes]] = []

    def __call__(self, line: bytes) -> None:
        self.lines.append((self.clock.seconds(), line))


def reporting() -> tuple[ConnectionCount, Clock, Sent]:
    clock = Clock()
    clock.advance(100)
    count = ConnectionCount()
    sent = Sent(clock)
    count.changed = StatsReporter(clock, count, sent).changed
    return count, clock, sent


def test_a_burst_of_changes_makes_one_line_at_once() -> None:
    count, clock, sent = reporting()
    for n in range(3):
        count.connection_opened(f"c{n}", "127.0.0.1", False)
    assert sent.lines == []  # on the next turn of the reactor
    clock.advance(0)
    assert sent.lines == [(100, b"stats active=3 accepted=3\n")]


def test_later_changes_wait_for_the_interval_and_send_the_latest_figures() -> None:
    count, clock, sent = reporting()
    count.connection_opened("c1", "127.0.0.1", False)
    clock.advance(0)
    clock.advance(0.1)
    count.connection_opened("c2", "127.0.0.1", False)
    clock.advance(0.1)
    count.connection_closed("c1", "127.0.0.1")
    clock.advance(REPORT_INTERVAL - 0.21)
    assert [line for _, line in sent.lines] == [b"stats active=1 accepted=1\n"]
    clock.advance(0.02)
    assert [line for _, line in sent.lines[1:]] == [b"stats active=1 accepted=2\n"]
    assert sent.lines[1][0] - sent.lines[0][0] == pytest.approx(REPORT_INTERVAL, abs=0.02)
    clock.advance(60)
    assert len(sent.lines) == 2  # nothing changed since: nothing more is sent


def test_figures_back_to_what_was_sent_are_not_sent_again() -> None:
    count, clock, sent = reporting()
    count.connection_opened("c1", "127.0.0.1", False)
    clock.advance(0)
    count.connection_opened("c2", "127.0.0.1", False)
    count.accepted -= 1  # as if c2 never came: same figures as the last line
    count.active -= 1
    clock.advance(REPORT_INTERVAL)
    assert len(sent.lines) == 1
