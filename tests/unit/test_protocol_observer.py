"""The LDAP layer tells its observer about every connection and every operation,
with the result the client got, the entries sent and the bound identity; also
for requests that are refused without running and ones that get no answer."""

from __future__ import annotations

from dataclasses import dataclass, field

from ldaptor.protocols import pureldap
from test_protocol import ALICE_DN, BASE, USERS, Client, make_context, make_directory

from ldapsrv.ldap.messages import SearchRequest
from ldapsrv.observability.records import OperationRecord


@dataclass
class Recorder:
    events: list[tuple[str, str]] = field(default_factory=list)
    records: list[OperationRecord] = field(default_factory=list)

    def connection_opened(self, connection_id: str, client: str, tls: bool) -> None:
        self.events.append(("opened", connection_id))

    def connection_closed(self, connection_id: str, client: str) -> None:
        self.events.append(("closed", connection_id))

    def operation_done(self, record: OperationRecord) -> None:
        self.records.append(record)


def observed() -> tuple[Recorder, Client]:
    recorder = Recorder()
    ctx = make_context(make_directory())
    ctx.observer = recorder
    return recorder, Client(ctx)


def test_every_operation_is_reported_with_its_result_and_identity() -> None:
    recorder, client = observed()
    assert client.bind(ALICE_DN, b"wrong") == 49
    assert client.bind(ALICE_DN, b"alice-pw") == 0
    entries, done, _ = client.search(USERS, "(uid=user0*)", attributes=["uid"])
    assert done.resultCode == 0
    assert client.one(pureldap.LDAPDelRequest(entry=ALICE_DN)).resultCode == 53
    entries_root, _, _ = client.search("", scope=0)
    client.send(pureldap.LDAPAbandonRequest(id=99))
    client.send(pureldap.LDAPUnbindRequest())
    client.conn.connectionLost()

    kinds = [(r.request_type, r.result_code) for r in recorder.records]
    assert kinds == [
        ("BindRequest", 49),
        ("BindRequest", 0),
        ("SearchRequest", 0),
        ("DelRequest", 53),
        ("SearchRequest", 0),
        ("AbandonRequest", None),
        ("UnbindRequest", None),
    ]
    failed, bound, search, delete, root, _, _ = recorder.records
    assert failed.refusal == "wrong password" and failed.identity == ""
    assert bound.identity == ALICE_DN and bound.refusal == ""
    assert isinstance(search.request, SearchRequest) and search.request.base == USERS
    assert search.entries == len(entries) == 7  # user03..user09
    assert root.entries == len(entries_root) == 1
    assert delete.identity == ALICE_DN
    connection_id = recorder.records[0].connection_id
    assert {r.connection_id for r in recorder.records} == {connection_id}
    assert recorder.events == [("opened", connection_id), ("closed", connection_id)]
    assert all(r.duration_ms >= 0 and r.client for r in recorder.records)
    assert [r.message_id for r in recorder.records[:5]] == [1, 2, 3, 4, 5]


def test_requests_refused_before_running_are_reported() -> None:
    recorder, client = observed()
    _, done, _ = client.search(BASE, controls=[(b"1.2.3.4.5", True, None)])
    assert done.resultCode == 12
    deep = "(objectClass=*)"
    for _ in range(60):  # deeper than max_filter_depth (50): rejected while decoding
        deep = f"(!{deep})"
    _, done, _ = client.search(BASE, deep)
    assert done.resultCode == 11
    assert [(r.request_type, r.result_code) for r in recorder.records] == [
        ("SearchRequest", 12),
        ("SearchRequest", 11),
    ]
    assert recorder.records[1].request is None  # never decoded: nothing to show but its kind


def test_connection_ids_are_unique_and_carry_the_pid() -> None:
    import os

    first, second = observed()[1], observed()[1]
    assert first.conn.connection_id != second.conn.connection_id
    assert first.conn.connection_id.startswith(f"{os.getpid()}-")
