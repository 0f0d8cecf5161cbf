"""The BER primitives: what they accept, what they refuse, and exact encodings."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from ldaptor.protocols import pureber

from ldapsrv.ldap import ber
from ldapsrv.ldap.ber import BERError


def test_read_tlv_short_form_returns_tag_and_value_bounds() -> None:
    data = b"\x04\x03abc"
    assert ber.read_tlv(data, 0, len(data)) == (0x04, 2, 5)


def test_read_tlv_long_form_length() -> None:
    data = b"\x04\x81\x80" + b"x" * 128
    assert ber.read_tlv(data, 0, len(data)) == (0x04, 3, 131)


def test_read_tlv_accepts_non_minimal_four_octet_length() -> None:
    # Legal BER that some clients send (Windows ADSI uses 0x84 lengths).
    data = b"\x30\x84\x00\x00\x00\x03\x02\x01\x05"
    assert ber.read_tlv(data, 0, len(data)) == (0x30, 6, 9)


def test_read_tlv_at_offset_within_container() -> None:
    data = b"\x30\x06\x02\x01\x05\x01\x01\xff"
    assert ber.read_tlv(data, 2, 8) == (0x02, 4, 5)
    assert ber.read_tlv(data, 5, 8) == (0x01, 7, 8)


def test_read_tlv_works_on_memoryview_and_bytearray() -> None:
    data = b"\x04\x02hi"
    assert ber.read_tlv(memoryview(data), 0, 4) == (0x04, 2, 4)
    assert ber.read_tlv(bytearray(data), 0, 4) == (0x04, 2, 4)


def test_read_tlv_rejects_indefinite_length() -> None:
    with pytest.raises(BERError, match="indefinite"):
        ber.read_tlv(b"\x30\x80\x02\x01\x01\x00\x00", 0, 7)


def test_read_tlv_rejects_length_field_longer_than_four_octets() -> None:
    data = b"\x04\x85\x00\x00\x00\x00\x01x"
    with pytest.raises(BERError, match="5 octets"):
        ber.read_tlv(data, 0, len(data))


def test_read_tlv_rejects_value_running_past_container_end() -> None:
    data = b"\x04\x05abc"
    with pytest.raises(BERError, match="past the end"):
        ber.read_tlv(data, 0, len(data))
    # The bound is the container, not the buffer: a child may not overrun its parent.
    with pytest.raises(BERError):
        ber.read_tlv(b"\x04\x03abc", 0, 4)


def test_read_tlv_rejects_truncated_header_and_length() -> None:
    with pytest.raises(BERError, match="truncated"):
        ber.read_tlv(b"\x04", 0, 1)
    with pytest.raises(BERError, match="truncated"):
        ber.read_tlv(b"\x04\x82\x01", 0, 3)


def test_read_tlv_rejects_high_tag_number_form() -> None:
    with pytest.raises(BERError, match="multi-octet tag"):
        ber.read_tlv(b"\x1f\x01\x00", 0, 3)


def test_read_header_needs_more_bytes_returns_none() -> None:
    assert ber.read_header(b"", 0, 0) is None
    assert ber.read_header(b"\x30", 0, 1) is None
    assert ber.read_header(b"\x30\x82\x01", 0, 3) is None
    assert ber.read_header(b"\x30\x82\x01\x00", 0, 4) == (0x30, 4, 256)
    assert ber.read_header(b"\x30\x05", 0, 2) == (0x30, 2, 5)


def test_read_header_rejects_bad_lengths_before_the_value_arrives() -> None:
    with pytest.raises(BERError, match="indefinite"):
        ber.read_header(b"\x30\x80", 0, 2)
    with pytest.raises(BERError, match="too long"):
        ber.read_header(b"\x30\x85", 0, 2)


@pytest.mark.parametrize(
    ("value", "encoded"),
    [
        (0, b"\x02\x01\x00"),
        (1, b"\x02\x01\x01"),
        (127, b"\x02\x01\x7f"),
        (128, b"\x02\x02\x00\x80"),
        (255, b"\x02\x02\x00\xff"),
        (256, b"\x02\x02\x01\x00"),
        (32767, b"\x02\x02\x7f\xff"),
        (32768, b"\x02\x03\x00\x80\x00"),
        (2**31 - 1, b"\x02\x04\x7f\xff\xff\xff"),
        (-1, b"\x02\x01\xff"),
        (-128, b"\x02\x01\x80"),
        (-129, b"\x02\x02\xff\x7f"),
        (-32768, b"\x02\x02\x80\x00"),
    ],
)
def test_encode_integer_is_minimal_twos_complement(value: int, encoded: bytes) -> None:
    assert ber.encode_integer(value) == encoded
    assert ber.decode_integer(encoded, 2, len(encoded)) == value


@given(st.integers(min_value=-(2**64), max_value=2**64))
def test_integer_round_trip_and_matches_ldaptor(value: int) -> None:
    encoded = ber.encode_integer(value)
    tag, start, stop = ber.read_tlv(encoded, 0, len(encoded))
    assert tag == ber.INTEGER
    assert stop == len(encoded)
    assert ber.decode_integer(encoded, start, stop) == value
    assert encoded == pureber.BERInteger(value).toWire()


def test_decode_integer_rejects_empty_content() -> None:
    with pytest.raises(BERError):
        ber.decode_integer(b"\x02\x00", 2, 2)


def test_encode_enumerated_and_context_tagged_integer() -> None:
    assert ber.encode_enumerated(0) == b"\x0a\x01\x00"
    assert ber.encode_enumerated(53) == b"\x0a\x01\x35"
    assert ber.encode_enumerated(4096) == b"\x0a\x02\x10\x00"
    assert ber.encode_integer(5, tag=ber.application(16, constructed=False)) == b"\x50\x01\x05"


@pytest.mark.parametrize(
    ("length", "encoded"),
    [
        (0, b"\x00"),
        (127, b"\x7f"),
        (128, b"\x81\x80"),
        (255, b"\x81\xff"),
        (256, b"\x82\x01\x00"),
        (65535, b"\x82\xff\xff"),
        (65536, b"\x83\x01\x00\x00"),
        (2**32 - 1, b"\x84\xff\xff\xff\xff"),
    ],
)
def test_encode_length_shortest_form(length: int, encoded: bytes) -> None:
    assert ber.encode_length(length) == encoded


def test_encode_length_refuses_what_a_peer_could_not_decode() -> None:
    with pytest.raises(BERError):
        ber.encode_length(2**32)


def test_boolean_encodes_true_as_ff_and_decodes_any_nonzero_as_true() -> None:
    assert ber.encode_boolean(True) == b"\x01\x01\xff"
    assert ber.encode_boolean(False) == b"\x01\x01\x00"
    assert ber.encode_boolean(True, tag=ber.context(4)) == b"\x84\x01\xff"
    assert ber.decode_boolean(b"\x01", 0, 1) is True
    assert ber.decode_boolean(b"\x00", 0, 1) is False
    with pytest.raises(BERError):
        ber.decode_boolean(b"\xff\xff", 0, 2)
    with pytest.raises(BERError):
        ber.decode_boolean(b"", 0, 0)


def test_octet_string_sequence_and_set_encodings() -> None:
    assert ber.encode_octet_string(b"") == b"\x04\x00"
    assert ber.encode_octet_string(b"abc") == b"\x04\x03abc"
    assert ber.encode_octet_string(b"x" * 200) == b"\x04\x81\xc8" + b"x" * 200
    assert ber.encode_octet_string(b"pw", tag=ber.context(0)) == b"\x80\x02pw"
    assert ber.encode_sequence([b"\x02\x01\x01", b"\x04\x00"]) == b"\x30\x05\x02\x01\x01\x04\x00"
    assert ber.encode_set([b"\x04\x01a", b"\x04\x01b"]) == b"\x31\x06\x04\x01a\x04\x01b"
    assert ber.encode_sequence([], tag=ber.context(0, constructed=True)) == b"\xa0\x00"
    assert ber.encode_tlv(0x42, b"") == b"\x42\x00"


def test_tag_helpers() -> None:
    assert ber.application(3) == 0x63
    assert ber.application(10, constructed=False) == 0x4A
    assert ber.context(7) == 0x87
    assert ber.context(9, constructed=True) == 0xA9


@given(st.binary(max_size=70000))
def test_octet_string_round_trip(value: bytes) -> None:
    encoded = ber.encode_octet_string(value)
    assert encoded == pureber.BEROctetString(value).toWire()
    tag, start, stop = ber.read_tlv(encoded, 0, len(encoded))
    assert (tag, encoded[start:stop], stop) == (ber.OCTET_STRING, value, len(encoded))


@given(st.binary(max_size=12))
def test_read_tlv_only_ever_raises_ber_error(data: bytes) -> None:
    try:
        tag, start, stop = ber.read_tlv(data, 0, len(data))
    except BERError:
        return
    assert 0 <= start <= stop <= len(data)
    assert tag == data[0]
