"""Splitting a plain SearchRequest PDU into its message ID and the bytes that stand
for the request: the same bytes ``decode_message`` reports as the body, the same
for every repetition of a search, and None -- never an exception -- for
anything that is not a well-formed SearchRequest envelope without controls."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bench import protocol as bp
from ldapsrv.ldap import codec
from ldapsrv.ldap.codec import MAX_INT, decode_message, split_plain_search
from ldapsrv.ldap.messages import (
    Control,
    LDAPResult,
    ProtocolViolation,
    RequestRejected,
    SearchRequest,
)

BASE = "ou=users,dc=example,dc=org"
PAGED_OID = "1.2.840.113556.1.4.319"


def user_search(message_id: int = 5) -> bytes:
    return bp.search_request(
        message_id,
        BASE,
        bp.SCOPE_SUB,
        bp.both(bp.equals("objectClass", "posixAccount"), bp.equals("uid", "alice")),
        ["uid", "uidNumber", "gidNumber", "homeDirectory"],
    )


def length_octets(length: int) -> bytes:
    """A definite BER length, written out here rather than borrowed from the codec."""
    if length < 0x80:
        return bytes([length])
    content = length.to_bytes((length.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(content)]) + content


def outer_content(pdu: bytes) -> bytes:
    """What the LDAPMessage SEQUENCE holds (the message ID, protocolOp, controls)."""
    assert pdu[0] == 0x30
    first = pdu[1]
    header = 2 if first < 0x80 else 2 + (first & 0x7F)
    content = pdu[header:]
    length = int.from_bytes(pdu[2:header], "big") if first >= 0x80 else first
    assert len(content) == length
    return content


def with_message_id(pdu: bytes, id_octets: bytes) -> bytes:
    """``pdu`` with its messageID INTEGER replaced by one of content ``id_octets``."""
    content = outer_content(pdu)
    assert content[0] == 0x02
    rest = content[2 + content[1] :]
    new = bytes([0x02, len(id_octets)]) + id_octets + rest
    return b"\x30" + length_octets(len(new)) + new


def paged_controls(size: int) -> bytes:
    """``[0] Controls`` holding one critical paged results control, byte by byte."""
    oid = PAGED_OID.encode()
    size_octets = size.to_bytes(1, "big")
    value = b"\x30" + bytes([2 + len(size_octets) + 2]) + b"\x02\x01" + size_octets + b"\x04\x00"
    control = bytes([0x04, len(oid)]) + oid + b"\x01\x01\xff" + bytes([0x04, len(value)]) + value
    control = bytes([0x30, len(control)]) + control
    return bytes([0xA0, len(control)]) + control


def with_controls(pdu: bytes, controls: bytes) -> bytes:
    content = outer_content(pdu) + controls
    return b"\x30" + length_octets(len(content)) + content


# --------------------------------------------------------------------------- plain searches


@pytest.mark.parametrize(
    "pdu",
    [
        user_search(5),
        bp.search_request(0, "", bp.SCOPE_BASE, bp.present("objectClass")),
        bp.search_request(MAX_INT, BASE, bp.SCOPE_ONE, bp.negate(bp.present("cn")), ["cn"]),
        bp.search_request(300, BASE, bp.SCOPE_SUB, bp.equals("cn", "x" * 2000)),  # long form
    ],
    ids=["sssd-user", "root-dse-id-0", "max-id", "body-over-1k"],
)
def test_a_plain_search_splits_into_its_id_and_the_decoders_body(pdu: bytes) -> None:
    split = split_plain_search(pdu)
    assert split is not None
    message_id, body = split
    message = decode_message(pdu)
    assert isinstance(message.request, SearchRequest)
    assert message.controls == ()
    assert message_id == message.message_id
    assert type(body) is bytes
    assert body == message.body
    assert body  # a search always has a body
    # The body is exactly the PDU after the messageID: protocolOp to the end.
    assert pdu.endswith(body)
    assert body[0] == 0x63


def test_the_message_id_is_read_as_sent() -> None:
    for message_id in (0, 1, 127, 128, 255, 256, 65_535, 2**24, MAX_INT):
        split = split_plain_search(user_search(message_id))
        assert split is not None
        assert split[0] == message_id


def test_repetitions_of_a_search_differ_only_in_the_message_id() -> None:
    first = split_plain_search(user_search(1))
    again = split_plain_search(user_search(70_000))
    assert first is not None and again is not None
    assert first[0] == 1 and again[0] == 70_000
    assert first[1] == again[1]
    other = split_plain_search(
        bp.search_request(1, BASE, bp.SCOPE_SUB, bp.equals("uid", "bob"), ["uid"])
    )
    assert other is not None
    assert other[1] != first[1]


def test_a_bytearray_or_memoryview_splits_like_bytes() -> None:
    pdu = user_search(9)
    expected = split_plain_search(pdu)
    assert expected is not None
    for view in (bytearray(pdu), memoryview(pdu)):
        split = split_plain_search(view)  # type: ignore[arg-type]
        assert split == expected
        assert split is not None and type(split[1]) is bytes


# --------------------------------------------------------------------------- not plain searches


def test_the_hand_built_paged_control_is_what_the_bench_sends() -> None:
    by_hand = with_controls(user_search(5), paged_controls(10))
    bench = bp.search_request(
        5,
        BASE,
        bp.SCOPE_SUB,
        bp.both(bp.equals("objectClass", "posixAccount"), bp.equals("uid", "alice")),
        ["uid", "uidNumber", "gidNumber", "homeDirectory"],
        page_size=10,
    )
    assert by_hand == bench


def test_a_search_with_controls_is_not_split() -> None:
    plain = user_search(5)
    pdu = with_controls(plain, paged_controls(10))
    message = decode_message(pdu)  # the codec accepts it and sees the control
    assert isinstance(message.request, SearchRequest)
    assert message.request == decode_message(plain).request
    assert message.controls == (
        Control(PAGED_OID, True, codec.encode_paged_results_value(10, b"")),
    )
    assert codec.decode_paged_results_value(message.controls[0].value or b"") == (10, b"")
    assert message.body != decode_message(plain).body  # its body includes the controls
    assert split_plain_search(pdu) is None


def test_a_search_with_an_empty_controls_element_is_not_split() -> None:
    pdu = with_controls(user_search(5), b"\xa0\x00")
    assert decode_message(pdu).controls == ()
    assert split_plain_search(pdu) is None


@pytest.mark.parametrize(
    "pdu",
    [
        bp.bind_request(1, "cn=alice,ou=users,dc=example,dc=org", "secret"),
        bp.unbind_request(2),
        bp.start_tls_request(3),
    ],
    ids=["bind", "unbind", "starttls"],
)
def test_other_operations_are_not_split(pdu: bytes) -> None:
    decode_message(pdu)  # well formed
    assert split_plain_search(pdu) is None


def test_a_search_response_is_not_split() -> None:
    done = codec.encode_search_done(4, LDAPResult(0))
    assert split_plain_search(done) is None


@pytest.mark.parametrize(
    "id_octets",
    [b"\xff", b"\x80", b"\xff\xff\xff\xff", b"\x00\x80\x00\x00\x00", b"\x01\x00\x00\x00\x00"],
    ids=["-1", "-128", "-1-long", "2**31", "2**32"],
)
def test_a_message_id_out_of_range_is_not_split(id_octets: bytes) -> None:
    pdu = with_message_id(user_search(5), id_octets)
    with pytest.raises(ProtocolViolation, match="out of range"):
        decode_message(pdu)
    assert split_plain_search(pdu) is None


def test_an_empty_message_id_is_not_split() -> None:
    pdu = with_message_id(user_search(5), b"")
    with pytest.raises(ProtocolViolation):
        decode_message(pdu)
    assert split_plain_search(pdu) is None


def test_the_rebuilt_message_id_helper_keeps_valid_ids() -> None:
    split = split_plain_search(with_message_id(user_search(5), b"\x00\xff"))
    assert split == split_plain_search(user_search(255))


GARBAGE = [
    b"",
    b"\x30",
    b"\x30\x00",
    b"\x30\x03\x02\x01\x05",
    b"\x30\x80\x02\x01\x05\x63\x00\x00\x00",  # indefinite length
    b"\x31\x05\x02\x01\x05\x63\x00",  # a SET, not a SEQUENCE
    b"\x30\x05\x04\x01\x05\x63\x00",  # messageID not an INTEGER
    b"\x30\x05\x02\x01\x05\x63\x01",  # protocolOp runs past the message
    b"\x30\x06\x02\x01\x05\x63\x00\x00",  # one junk byte inside the message
    b"\x30\x89\xff\xff\xff\xff\xff\xff\xff\xff\xff",  # a length field far too long
    b"\x1f\x05\x02\x01\x05\x63\x00",  # a multi-octet tag
    b"\x00" * 16,
    b"\xff" * 16,
]


@pytest.mark.parametrize("data", GARBAGE)
def test_garbage_is_not_split(data: bytes) -> None:
    assert split_plain_search(data) is None


def test_trailing_junk_after_the_message_is_not_split() -> None:
    pdu = user_search(5)
    for junk in (b"\x00", b"\x30\x00", pdu):
        assert split_plain_search(pdu + junk) is None
        with pytest.raises(ProtocolViolation):
            decode_message(pdu + junk)


def test_no_prefix_of_a_search_is_split() -> None:
    for pdu in (user_search(5), with_controls(user_search(5), paged_controls(10))):
        for end in range(len(pdu)):
            assert split_plain_search(pdu[:end]) is None


def test_seeded_random_bytes_are_not_split() -> None:
    rng = random.Random(4511)
    for _ in range(2000):
        data = rng.randbytes(rng.randrange(1, 200))
        assert split_plain_search(data) is None


def test_every_single_byte_corruption_is_handled() -> None:
    """Flip each byte of a search to every other value: the split never raises,
    and whenever it succeeds the decoder agrees on the ID and body."""
    pdu = user_search(5)
    for index in range(len(pdu)):
        for value in range(256):
            data = pdu[:index] + bytes([value]) + pdu[index + 1 :]
            split = split_plain_search(data)
            if split is not None:
                _agrees_with_decoder(data, split)


def _agrees_with_decoder(data: bytes, split: tuple[int, bytes]) -> None:
    try:
        message = decode_message(data)
    except RequestRejected as rejected:
        assert rejected.message_id == split[0]
        return
    except ProtocolViolation:
        return  # a malformed protocolOp: the split only reads the envelope
    assert isinstance(message.request, SearchRequest)
    assert message.controls == ()
    assert (message.message_id, message.body) == split


@given(st.binary(max_size=200))
def test_arbitrary_bytes_never_raise(data: bytes) -> None:
    split = split_plain_search(data)
    if split is not None:
        _agrees_with_decoder(data, split)


@given(st.integers(min_value=0, max_value=MAX_INT), st.binary(max_size=60))
@settings(max_examples=200)
def test_any_search_envelope_splits_at_the_message_id(message_id: int, op_value: bytes) -> None:
    op = b"\x63" + length_octets(len(op_value)) + op_value
    pdu = bp._message(message_id, op)
    split = split_plain_search(pdu)
    assert split == (message_id, op)
    _agrees_with_decoder(pdu, split)
