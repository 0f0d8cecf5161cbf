"""Fuzzing a running server over real sockets.

Valid, damaged and known-nasty PDUs go to ``ldapsrv serve`` on several connections
at once, while a well-behaved client keeps searching on its own connection. Every
connection must get well-formed responses, a Notice of Disconnection followed by
a close, or silence while the server waits for the rest of a PDU (RFC 4511 4.1.1);
no answer may be an internal error or carry a traceback, file path or SQL; the
process must stay alive; and the well-behaved client's p99 latency stays under a
second throughout.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from e2e.clients import ALICE_PASSWORD
from e2e.harness import LdapServer, serving
from e2e.wire import INTERNALS, decode_response, is_notice_of_disconnection
from faults.load import BackgroundLoad
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from ldaptor.protocols import pureldap

from ldapsrv.ldap.framing import PDUFramer

from .corpus import CORPUS, Sample
from .strategies import encode, mutated_messages, valid_messages

#: Silence after which a connection that was not closed counts as "waiting".
QUIET = 0.25
CONNECTION_BUDGET = 10.0
P99_BOUND = 1.0
INTERNAL_ERROR = 80


@dataclass
class Conversation:
    """What one fuzz connection saw."""

    sent: bytes
    responses: list[Any] = field(default_factory=list)
    closed: bool = False
    raw_tail: bytes = b""


def converse(
    server: LdapServer, payload: bytes, piece: int, first_wait: float = QUIET
) -> Conversation:
    """Send ``payload`` in ``piece``-byte writes, then read until close or QUIET
    (``first_wait`` for the first answer: a refused bind is answered after a delay)."""
    conversation = Conversation(payload)
    framer = PDUFramer(64 * 1024 * 1024)
    deadline = time.monotonic() + CONNECTION_BUDGET
    with socket.create_connection((server.host, server.ldap_port), timeout=5) as sock:
        try:
            for at in range(0, len(payload), piece):
                sock.sendall(payload[at : at + piece])
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server gave up on us mid-send: allowed after a violation
        wait = first_wait
        while time.monotonic() < deadline:
            sock.settimeout(wait)
            wait = QUIET
            try:
                data = sock.recv(65536)
            except TimeoutError:
                break
            except ConnectionResetError:
                conversation.closed = True
                break
            if not data:
                conversation.closed = True
                break
            conversation.responses.extend(decode_response(p) for p in framer.feed(data))
        else:
            raise AssertionError("the server kept talking for the whole connection budget")
        conversation.raw_tail = bytes(framer.buffered_bytes * b"?")
    return conversation


def check(conversation: Conversation) -> None:
    """The RFC 4511 rules a server must keep whatever it was sent."""
    assert not conversation.raw_tail, "a partial response PDU was left on the wire"
    for position, message in enumerate(conversation.responses):
        value = message.value
        code = getattr(value, "resultCode", None)
        assert code != INTERNAL_ERROR, f"internal error for {conversation.sent.hex()}"
        for text in (getattr(value, "errorMessage", b""), getattr(value, "matchedDN", b"")):
            if isinstance(text, bytes):
                text = text.decode("utf-8", "replace")
            assert not INTERNALS.search(str(text or "")), f"leaked internals: {text!r}"
        if is_notice_of_disconnection(message):
            assert position == len(conversation.responses) - 1, "responses after the notice"
            assert conversation.closed, "a Notice of Disconnection must be followed by a close"


@pytest.fixture(scope="module")
def fuzz_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LdapServer]:
    workdir: Path = tmp_path_factory.mktemp("server-fuzz")
    with serving("sqlite", workdir) as server:
        server.add_user("alice", ALICE_PASSWORD)
        server.add_group("staff", ["alice"])
        yield server
        assert "Traceback" not in server.log_text(), server.log_text()[-4000:]


def _bind_alice(server: LdapServer) -> Any:
    def setup(client: Any) -> None:
        assert client.bind(server.user_dn("alice"), ALICE_PASSWORD).code == 0

    return setup


@pytest.fixture(scope="module")
def steady_client(fuzz_server: LdapServer) -> Iterator[BackgroundLoad]:
    """The well-behaved client whose latency the fuzz must not hurt."""
    load = BackgroundLoad(
        fuzz_server,
        lambda client: client.search(
            fuzz_server.base_dn, "(memberOf=cn=staff,ou=groups,dc=example,dc=org)"
        ),
        setup=_bind_alice(fuzz_server),
        pause=0.01,
    )
    with load:
        load.wait_for_successes(3, 20)
        yield load
    report = load.report
    p99 = report.percentile(0.99)
    print(f"\nsteady client during the fuzz: {len(report.samples)} searches, "
          f"p50 {report.percentile(0.5) * 1000:.1f} ms, p99 {p99 * 1000:.1f} ms, "
          f"max {max(report.latencies()) * 1000:.1f} ms")  # fmt: skip


PAYLOADS = st.one_of(
    valid_messages().map(lambda sample: sample[0]),
    mutated_messages(),
    st.sampled_from([s.data for s in CORPUS]),
    st.binary(min_size=1, max_size=200),
)


@settings(
    max_examples=150,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(
    connections=st.lists(
        st.tuples(
            st.booleans(),
            st.lists(PAYLOADS, min_size=1, max_size=4).map(b"".join),
            st.integers(1, 512),
        ),
        min_size=1,
        max_size=4,
    )
)
def test_fuzzed_connections_get_answers_or_a_notice_and_the_server_survives(
    fuzz_server: LdapServer,
    steady_client: BackgroundLoad,
    connections: list[tuple[bool, bytes, int]],
) -> None:
    """Half the connections bind as alice first, so fuzzed searches reach the database."""
    bind = encode(
        pureldap.LDAPBindRequest(dn=fuzz_server.user_dn("alice").encode(), auth=ALICE_PASSWORD),
        1,
    )

    def run(connection: tuple[bool, bytes, int]) -> Conversation:
        authenticated, payload, piece = connection
        return converse(fuzz_server, (bind if authenticated else b"") + payload, piece)

    with ThreadPoolExecutor(max_workers=len(connections)) as pool:
        results = list(pool.map(run, connections))
    for conversation in results:
        check(conversation)
    assert fuzz_server.process.poll() is None, "the server died"


@pytest.mark.parametrize("sample", CORPUS, ids=[s.name for s in CORPUS])
def test_each_corpus_input_gets_its_documented_treatment_from_a_running_server(
    fuzz_server: LdapServer, steady_client: BackgroundLoad, sample: Sample
) -> None:
    waits = sample.expected in ("ok", "rejected", "violation")
    conversation = converse(fuzz_server, sample.data, 4096, first_wait=5.0 if waits else QUIET)
    check(conversation)
    notice = bool(conversation.responses) and is_notice_of_disconnection(conversation.responses[-1])
    if sample.expected == "violation":
        assert notice and conversation.closed, sample.description
    elif sample.expected == "incomplete":
        assert not conversation.responses and not conversation.closed, sample.description
    else:
        assert not notice and not conversation.closed, sample.description
        assert conversation.responses, f"no answer to {sample.name}"
    assert fuzz_server.process.poll() is None


BURST_SECONDS = 6.0
BURST_CONNECTIONS = 4


def hostile_burst(server: LdapServer, seconds: float) -> int:
    """Every corpus input, over and over, from several connections at once, for
    ``seconds``; returns how many hostile connections were made."""
    deadline = time.monotonic() + seconds
    payloads = [s.data for s in CORPUS]

    def one_stream(offset: int) -> int:
        made = 0
        while time.monotonic() < deadline:
            payload = payloads[(offset + made) % len(payloads)]
            check(converse(server, payload, 4096, first_wait=0.05))
            made += 1
        return made

    with ThreadPoolExecutor(max_workers=BURST_CONNECTIONS) as pool:
        return sum(pool.map(one_stream, range(BURST_CONNECTIONS)))


def test_the_steady_clients_latency_stays_bounded_while_hostile_clients_hammer(
    fuzz_server: LdapServer, steady_client: BackgroundLoad
) -> None:
    started = time.monotonic()
    hostile = hostile_burst(fuzz_server, BURST_SECONDS)
    during = [s for s in steady_client.report.samples if s.started >= started]
    latencies = sorted(s.seconds for s in during)
    p99 = latencies[min(len(latencies) - 1, int(0.99 * len(latencies)))]
    print(f"\nburst: {hostile} hostile connections in {BURST_SECONDS:g} s; steady client "
          f"{len(during)} searches, p99 {p99 * 1000:.1f} ms")  # fmt: skip
    assert hostile > 20 and len(during) > 20
    assert {s.code for s in during} == {0}, [s for s in during if s.code != 0][:3]
    assert p99 < P99_BOUND, p99
    assert fuzz_server.process.poll() is None


def test_the_steady_clients_latency_stayed_bounded_during_the_fuzz(
    steady_client: BackgroundLoad,
) -> None:
    report = steady_client.report
    assert report.samples, "the steady client never ran"
    assert not report.failures(), report.failures()[:3]
    assert report.codes() == {0}, report.codes()
    assert report.percentile(0.99) < P99_BOUND, report.percentile(0.99)
