"""Which observers look at the decoded request of an operation: the wire layer may
skip decoding a repeated search only where none does. An observer that does not
say is assumed to; the metrics, the connection count and the null observer say
they do not; the access log does; a group reads them if any member does. And the
metrics count a search recorded without its request like any other."""

from __future__ import annotations

import logging

import pytest
from test_metrics import record as metrics_record

from ldapsrv.directory.filters import Present
from ldapsrv.ldap.messages import SearchRequest
from ldapsrv.observability.accesslog import AccessLog
from ldapsrv.observability.metrics import Metrics
from ldapsrv.observability.monitor import ConnectionCount
from ldapsrv.observability.records import (
    NullObserver,
    Observer,
    Observers,
    OperationRecord,
    reads_requests,
)


class Silent:
    """An observer that says nothing about requests."""

    def connection_opened(self, connection_id: str, client: str, tls: bool) -> None:
        pass

    def connection_closed(self, connection_id: str, client: str) -> None:
        pass

    def operation_done(self, record: OperationRecord) -> None:
        pass


class Declares(Silent):
    def __init__(self, reads: bool) -> None:
        self.reads_requests = reads


def record(request: object, request_type: str, **changes: object) -> OperationRecord:
    return metrics_record(request, 0, request_type=request_type, **changes)


# --------------------------------------------------------------------------- reads_requests


def test_an_observer_that_does_not_say_reads_requests() -> None:
    assert not hasattr(Silent(), "reads_requests")
    assert reads_requests(Silent()) is True


def test_an_observer_is_taken_at_its_word() -> None:
    assert reads_requests(Declares(True)) is True
    assert reads_requests(Declares(False)) is False


def test_the_null_observer_does_not_read_requests() -> None:
    assert reads_requests(NullObserver()) is False


def test_the_connection_count_does_not_read_requests() -> None:
    assert reads_requests(ConnectionCount()) is False


def test_the_metrics_do_not_read_requests() -> None:
    assert reads_requests(Metrics()) is False


def test_the_access_log_reads_requests() -> None:
    assert reads_requests(AccessLog()) is True
    assert reads_requests(AccessLog(logging.getLogger("test.access"))) is True


@pytest.mark.parametrize(
    ("members", "expected"),
    [
        ((), False),
        ((NullObserver(),), False),
        ((Metrics(), ConnectionCount(), NullObserver()), False),
        ((AccessLog(),), True),
        ((Metrics(), AccessLog()), True),
        ((AccessLog(), Metrics()), True),
        ((ConnectionCount(), Silent()), True),
        ((Declares(False), Declares(False)), False),
        ((Declares(False), Declares(True)), True),
    ],
    ids=[
        "none",
        "null",
        "metrics-count-null",
        "accesslog",
        "metrics-accesslog",
        "accesslog-metrics",
        "count-silent",
        "false-false",
        "false-true",
    ],
)
def test_observers_read_requests_if_any_member_does(
    members: tuple[Observer, ...], expected: bool
) -> None:
    group = Observers(*members)
    assert group.reads_requests is expected
    assert reads_requests(group) is expected


def test_nested_groups_are_judged_by_their_members() -> None:
    quiet = Observers(Metrics(), ConnectionCount())
    assert reads_requests(Observers(quiet, NullObserver())) is False
    assert reads_requests(Observers(quiet, Observers(AccessLog()))) is True


# ---------------------------------------------------------------- metrics without a request


def entries(metrics: Metrics) -> float | None:
    return metrics.registry.get_sample_value("ldapsrv_search_entries_total")


def searches(metrics: Metrics) -> float | None:
    return metrics.registry.get_sample_value(
        "ldapsrv_operations_total", {"operation": "search", "result": "success"}
    )


def test_metrics_count_a_search_recorded_without_its_request() -> None:
    metrics = Metrics()
    assert entries(metrics) == 0
    metrics.operation_done(record(None, "SearchRequest", entries=3, cached=True))
    metrics.operation_done(record(None, "SearchRequest", entries=4, cached=True))
    assert entries(metrics) == 7
    assert searches(metrics) == 2
    assert (
        metrics.registry.get_sample_value(
            "ldapsrv_operation_duration_seconds_count", {"operation": "search"}
        )
        == 2
    )


def test_a_search_without_its_request_counts_like_one_with_it() -> None:
    search = SearchRequest("dc=example,dc=org", 2, 0, 0, 0, False, Present("cn"), ())
    with_request, without = Metrics(), Metrics()
    with_request.operation_done(record(search, "SearchRequest", entries=5))
    without.operation_done(record(None, "SearchRequest", entries=5))
    assert entries(with_request) == entries(without) == 5
    assert searches(with_request) == searches(without) == 1


def test_entries_of_other_operations_are_not_counted_as_search_entries() -> None:
    metrics = Metrics()
    metrics.operation_done(record(None, "CompareRequest", entries=9))
    assert entries(metrics) == 0
