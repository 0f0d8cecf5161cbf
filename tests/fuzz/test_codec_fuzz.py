"""Fuzzing the decoder: valid requests round-trip through ldaptor's independent
encoder, and damaged ones only ever raise the two errors the server maps
(RequestRejected: answer and keep going; ProtocolViolation: Notice of
Disconnection and close). Any other exception would be a crash path.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from ldaptor.protocols import pureldap

from ldapsrv.ldap import codec
from ldapsrv.ldap.codec import decode_message
from ldapsrv.ldap.framing import PDUFramer
from ldapsrv.ldap.messages import LDAPMessage, LDAPResult, ProtocolViolation, RequestRejected

from .corpus import CORPUS, Expected, Sample
from .strategies import mutated_messages, valid_messages

#: The whole fuzz suite must fit in about 90 s on CI: fixed example counts, no
#: per-example deadline (a loaded CI machine must not turn into flaky failures).
FUZZ = settings(
    max_examples=400,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    derandomize=True,
)

MAX_PDU = 1024 * 1024


def outcome(pdu: bytes) -> Expected:
    """What the server does with ``pdu``: frame it as the server would, then decode."""
    framer = PDUFramer(MAX_PDU)
    try:
        pdus = framer.feed(pdu)
    except ProtocolViolation:
        return "violation"
    if not pdus:
        return "incomplete"
    try:
        for one in pdus:
            decode_message(one)
    except ProtocolViolation:
        return "violation"
    except RequestRejected:
        return "rejected"
    return "incomplete" if framer.buffered_bytes else "ok"


@FUZZ
@given(valid_messages())
def test_valid_requests_from_ldaptors_encoder_decode_to_what_they_mean(
    sample: tuple[bytes, LDAPMessage],
) -> None:
    pdu, expected = sample
    try:
        decoded = decode_message(pdu)
    except RequestRejected as rejected:
        # Content our server refuses by design (bad UTF-8 is impossible here, but
        # extensible match without rule and type is): never a ProtocolViolation.
        assert rejected.message_id == expected.message_id
        return
    assert decoded == expected


@FUZZ
@given(mutated_messages())
def test_damaged_requests_raise_only_the_two_mapped_errors(pdu: bytes) -> None:
    try:
        message = decode_message(pdu)
    except (RequestRejected, ProtocolViolation):
        return
    assert isinstance(message, LDAPMessage)


@FUZZ
@given(st.binary(max_size=300))
def test_random_bytes_raise_only_the_two_mapped_errors(data: bytes) -> None:
    try:
        decode_message(data)
    except (RequestRejected, ProtocolViolation):
        pass


@FUZZ
@given(st.lists(mutated_messages(), min_size=1, max_size=5), st.integers(1, 64))
def test_a_stream_of_damaged_requests_in_any_pieces_frames_or_violates(
    pdus: list[bytes], piece: int
) -> None:
    """The framer on a byte stream cut anywhere: PDUs or a ProtocolViolation, nothing else."""
    stream = b"".join(pdus)
    framer = PDUFramer(MAX_PDU)
    try:
        for at in range(0, len(stream), piece):
            for pdu in framer.feed(stream[at : at + piece]):
                try:
                    decode_message(pdu)
                except RequestRejected:
                    pass
    except ProtocolViolation:
        return


@FUZZ
@given(
    st.integers(0, 2**31 - 1),
    st.sampled_from(sorted(codec.RESPONSE_ENCODERS, key=lambda t: t.__name__)),
    st.integers(0, 123),
    st.text(max_size=40),
    st.text(max_size=80),
)
def test_result_responses_match_ldaptor_byte_for_byte(
    message_id: int, request_type: type, code: int, matched: str, text: str
) -> None:
    ours = codec.RESPONSE_ENCODERS[request_type](message_id, LDAPResult(code, text, matched))
    response = {
        "BindRequest": pureldap.LDAPBindResponse,
        "SearchRequest": pureldap.LDAPSearchResultDone,
        "ModifyRequest": pureldap.LDAPModifyResponse,
        "AddRequest": pureldap.LDAPAddResponse,
        "DelRequest": pureldap.LDAPDelResponse,
        "ModifyDNRequest": pureldap.LDAPModifyDNResponse,
        "CompareRequest": pureldap.LDAPCompareResponse,
        "ExtendedRequest": pureldap.LDAPExtendedResponse,
    }[request_type.__name__]
    theirs = pureldap.LDAPMessage(
        response(resultCode=code, matchedDN=matched.encode(), errorMessage=text.encode()),
        id=message_id,
    ).toWire()
    assert ours == theirs


@pytest.mark.parametrize("sample", CORPUS, ids=[s.name for s in CORPUS])
def test_the_corpus_of_nasty_inputs_gets_the_documented_outcome(sample: Sample) -> None:
    assert outcome(sample.data) == sample.expected, sample.description


def test_every_corpus_file_is_documented() -> None:
    corpus_dir = Path(__file__).parent / "corpus"
    files = {p.name for p in corpus_dir.glob("*.hex")}
    assert files == {f"{s.name}.hex" for s in CORPUS}
    assert len(files) >= 20
