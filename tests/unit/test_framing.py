"""PDUFramer: whole PDUs out of an arbitrarily chunked stream, bad headers refused early."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from ldaptor.protocols import pureldap

from ldapsrv.ldap.framing import PDUFramer
from ldapsrv.ldap.messages import ProtocolViolation

BIND = pureldap.LDAPMessage(
    pureldap.LDAPBindRequest(dn=b"cn=alice,ou=users,dc=example,dc=org", auth=b"secret"), id=1
).toWire()
UNBIND = pureldap.LDAPMessage(pureldap.LDAPUnbindRequest(), id=2).toWire()
# Long enough to need a long-form length (0x82 ...).
BIG_ADD = pureldap.LDAPMessage(
    pureldap.LDAPAddRequest(
        entry=b"cn=x,dc=example,dc=org",
        attributes=[
            (
                pureldap.LDAPAttributeDescription(b"description"),
                pureldap.BERSet([pureldap.LDAPAttributeValue(b"v" * 400)]),
            )
        ],
    ),
    id=3,
).toWire()


def test_whole_pdu_in_one_feed() -> None:
    framer = PDUFramer(max_pdu_bytes=1024)
    assert framer.feed(BIND) == [BIND]
    assert framer.buffered_bytes == 0


def test_several_pdus_in_one_feed_come_out_in_order() -> None:
    framer = PDUFramer(max_pdu_bytes=1024)
    assert framer.feed(BIND + UNBIND + BIG_ADD) == [BIND, UNBIND, BIG_ADD]
    assert framer.buffered_bytes == 0


def test_byte_at_a_time_yields_each_pdu_exactly_once() -> None:
    assert BIG_ADD[1] == 0x82
    stream = BIND + BIG_ADD + UNBIND
    framer = PDUFramer(max_pdu_bytes=1024)
    out: list[bytes] = []
    for i in range(len(stream)):
        got = framer.feed(stream[i : i + 1])
        out.extend(got)
        assert framer.buffered_bytes == (i + 1) - sum(map(len, out))
    assert out == [BIND, BIG_ADD, UNBIND]
    assert framer.buffered_bytes == 0


def test_partial_pdu_stays_buffered_until_complete() -> None:
    framer = PDUFramer(max_pdu_bytes=1024)
    assert framer.feed(BIND + UNBIND[:3]) == [BIND]
    assert framer.buffered_bytes == 3
    assert framer.feed(UNBIND[3:]) == [UNBIND]
    assert framer.buffered_bytes == 0


def test_empty_feed_is_harmless() -> None:
    framer = PDUFramer(max_pdu_bytes=1024)
    assert framer.feed(b"") == []
    assert framer.feed(BIND[:1]) == []
    assert framer.feed(b"") == []
    assert framer.buffered_bytes == 1


def test_first_byte_not_sequence_is_refused_at_once() -> None:
    framer = PDUFramer(max_pdu_bytes=1024)
    with pytest.raises(ProtocolViolation, match="SEQUENCE"):
        framer.feed(b"G")  # "GET / HTTP/1.1"


def test_garbage_after_a_good_pdu_is_refused() -> None:
    framer = PDUFramer(max_pdu_bytes=1024)
    with pytest.raises(ProtocolViolation):
        framer.feed(BIND + b"\x16\x03\x01")  # a TLS ClientHello on a plain port


def test_indefinite_length_is_refused() -> None:
    framer = PDUFramer(max_pdu_bytes=1024)
    assert framer.feed(b"\x30") == []
    with pytest.raises(ProtocolViolation, match="indefinite"):
        framer.feed(b"\x80")


def test_length_field_of_five_octets_is_refused() -> None:
    framer = PDUFramer(max_pdu_bytes=1024)
    with pytest.raises(ProtocolViolation, match="5 octets"):
        framer.feed(b"\x30\x85")


def test_oversized_declaration_is_refused_from_the_header_alone() -> None:
    framer = PDUFramer(max_pdu_bytes=1000)
    # Only the header has arrived: 4-octet length announcing 16 MiB.
    with pytest.raises(ProtocolViolation, match="exceeds"):
        framer.feed(b"\x30\x84\x01\x00\x00\x00")


def test_pdu_of_exactly_the_limit_is_accepted_one_byte_more_is_not() -> None:
    size = len(BIG_ADD)
    assert PDUFramer(max_pdu_bytes=size).feed(BIG_ADD) == [BIG_ADD]
    with pytest.raises(ProtocolViolation):
        PDUFramer(max_pdu_bytes=size - 1).feed(BIG_ADD[:4])


def test_non_minimal_long_form_length_is_framed() -> None:
    pdu = b"\x30\x84\x00\x00\x00\x05\x02\x01\x07\x42\x00"
    framer = PDUFramer(max_pdu_bytes=64)
    assert framer.feed(pdu[:5]) == []
    assert framer.feed(pdu[5:]) == [pdu]


def test_large_pdu_fed_byte_at_a_time_is_reassembled_intact() -> None:
    value = bytes(range(256)) * 1024  # 256 KiB
    pdu = pureldap.LDAPMessage(
        pureldap.LDAPExtendedRequest(requestName=b"1.2.3", requestValue=value), id=9
    ).toWire()
    framer = PDUFramer(max_pdu_bytes=1 << 20)
    out: list[bytes] = []
    for i in range(len(pdu)):
        out.extend(framer.feed(pdu[i : i + 1]))
    assert out == [pdu]


def test_framer_rejects_a_useless_limit() -> None:
    with pytest.raises(ValueError):
        PDUFramer(max_pdu_bytes=1)


@given(st.lists(st.integers(min_value=0, max_value=60), max_size=30))
def test_any_chunking_gives_the_same_pdus(cuts: list[int]) -> None:
    stream = (BIND + UNBIND + BIG_ADD) * 2
    points = sorted({min(c * 17, len(stream)) for c in cuts})
    framer = PDUFramer(max_pdu_bytes=4096)
    out: list[bytes] = []
    last = 0
    for point in [*points, len(stream)]:
        out.extend(framer.feed(stream[last:point]))
        last = point
    assert out == [BIND, UNBIND, BIG_ADD] * 2
    assert framer.buffered_bytes == 0
