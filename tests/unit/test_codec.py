"""The LDAP codec, cross-checked against ldaptor's independent BER implementation.

Requests are built with ldaptor and decoded by us; responses are encoded by us
and decoded by ldaptor (or compared byte for byte). Malformed input must only
ever produce ProtocolViolation or RequestRejected.
"""

from __future__ import annotations

from typing import Any

import pytest
from e2e.wire import decode_response
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from ldaptor.protocols import pureber, pureldap

from ldapsrv.directory.filters import (
    And,
    Approx,
    Equality,
    Extensible,
    Filter,
    GreaterOrEqual,
    LessOrEqual,
    Not,
    Or,
    Present,
    Substrings,
)
from ldapsrv.ldap import codec
from ldapsrv.ldap.ber import read_tlv
from ldapsrv.ldap.codec import decode_message
from ldapsrv.ldap.messages import (
    AbandonRequest,
    AddRequest,
    BindRequest,
    Change,
    CompareRequest,
    Control,
    DelRequest,
    ExtendedRequest,
    LDAPMessage,
    LDAPResult,
    ModifyDNRequest,
    ModifyRequest,
    ProtocolViolation,
    RequestRejected,
    SaslAuth,
    SearchRequest,
    SimpleAuth,
    UnbindRequest,
)

# --------------------------------------------------------------------------- helpers


def wire(op: Any, message_id: int = 1, controls: list[tuple[Any, ...]] | None = None) -> bytes:
    """An LDAPMessage encoded by ldaptor, our independent reference."""
    data: bytes = pureldap.LDAPMessage(op, id=message_id, controls=controls).toWire()
    return data


def search(filt: Any, **kw: Any) -> bytes:
    args: dict[str, Any] = {"baseObject": b"dc=example,dc=org", "scope": 2, "attributes": []}
    args.update(kw)
    return wire(pureldap.LDAPSearchRequest(filter=filt, **args), message_id=7)


def decoded_filter(filt: Any) -> Filter:
    request = decode_message(search(filt)).request
    assert isinstance(request, SearchRequest)
    return request.filter


def eq(attr: str | bytes, value: str | bytes) -> Any:
    return pureldap.LDAPFilter_equalityMatch(
        pureldap.LDAPAttributeDescription(attr), pureldap.LDAPAssertionValue(value)
    )


def present(attr: str | bytes) -> Any:
    return pureldap.LDAPFilter_present(attr)


def ldaptor_decode(data: bytes) -> Any:
    """Decode a whole LDAPMessage with ldaptor, the way its client does."""
    return decode_response(data)


def tlv(tag: int, value: bytes) -> bytes:
    assert len(value) < 0x80
    return bytes((tag, len(value))) + value


def message(op: bytes, message_id: bytes = b"\x02\x01\x05", extra: bytes = b"") -> bytes:
    """A hand-built LDAPMessage around an already-encoded protocolOp."""
    return tlv(0x30, message_id + op + extra)


def rejected(pdu: bytes, **kw: Any) -> RequestRejected:
    with pytest.raises(RequestRejected) as info:
        decode_message(pdu, **kw)
    return info.value


# --------------------------------------------------------------------------- requests


def test_simple_bind() -> None:
    pdu = wire(pureldap.LDAPBindRequest(version=3, dn=b"cn=alice,dc=org", auth=b"s3cret"), 1)
    assert decode_message(pdu) == LDAPMessage(
        1, BindRequest(3, "cn=alice,dc=org", SimpleAuth(b"s3cret"))
    )


def test_anonymous_bind_has_empty_name_and_password() -> None:
    pdu = wire(pureldap.LDAPBindRequest(dn=b"", auth=b""), 1)
    assert decode_message(pdu).request == BindRequest(3, "", SimpleAuth(b""))


def test_sasl_bind_with_and_without_credentials() -> None:
    with_creds = wire(pureldap.LDAPBindRequest(dn=b"", auth=(b"PLAIN", b"\0u\0p"), sasl=True))
    assert decode_message(with_creds).request == BindRequest(3, "", SaslAuth("PLAIN", b"\0u\0p"))
    without = wire(pureldap.LDAPBindRequest(dn=b"", auth=(b"EXTERNAL", None), sasl=True))
    assert decode_message(without).request == BindRequest(3, "", SaslAuth("EXTERNAL", None))


def test_bind_with_unicode_dn() -> None:
    dn = "cn=Zoë Ångström,ou=users,dc=example,dc=org"
    pdu = wire(pureldap.LDAPBindRequest(dn=dn.encode(), auth=b"pw"))
    request = decode_message(pdu).request
    assert isinstance(request, BindRequest)
    assert request.name == dn


def test_unbind() -> None:
    assert decode_message(wire(pureldap.LDAPUnbindRequest(), 3)) == LDAPMessage(3, UnbindRequest())


def test_search_request_all_fields() -> None:
    pdu = wire(
        pureldap.LDAPSearchRequest(
            baseObject=b"ou=users,dc=example,dc=org",
            scope=1,
            derefAliases=3,
            sizeLimit=1000,
            timeLimit=30,
            typesOnly=True,
            filter=present("objectClass"),
            attributes=[b"uid", b"memberuid", b"uid", b"*", b"+"],
        ),
        message_id=2**31 - 1,
    )
    assert decode_message(pdu) == LDAPMessage(
        2**31 - 1,
        SearchRequest(
            base="ou=users,dc=example,dc=org",
            scope=1,
            deref_aliases=3,
            size_limit=1000,
            time_limit=30,
            types_only=True,
            filter=Present("objectClass"),
            attributes=("uid", "memberuid", "uid", "*", "+"),
        ),
    )


def test_root_dse_read_as_sssd_sends_it() -> None:
    pdu = wire(
        pureldap.LDAPSearchRequest(
            baseObject=b"",
            scope=0,
            filter=present("objectclass"),
            attributes=[b"namingContexts", b"supportedControl", b"supportedLDAPVersion"],
        ),
        message_id=1,
    )
    request = decode_message(pdu).request
    assert isinstance(request, SearchRequest)
    assert (request.base, request.scope, request.filter) == ("", 0, Present("objectclass"))


def test_modify_request_with_every_operation() -> None:
    def change(op: int, attr: str, values: list[bytes]) -> Any:
        return pureber.BERSequence(
            [
                pureber.BEREnumerated(op),
                pureber.BERSequence(
                    [
                        pureldap.LDAPAttributeDescription(attr),
                        pureber.BERSet([pureldap.LDAPAttributeValue(v) for v in values]),
                    ]
                ),
            ]
        )

    pdu = wire(
        pureldap.LDAPModifyRequest(
            object=b"cn=alice,ou=users,dc=example,dc=org",
            modification=[
                change(0, "mail", [b"a@example.org", b"b@example.org"]),
                change(1, "description", []),
                change(2, "sn", [b"Liddell"]),
                change(3, "uidNumber", [b"1"]),
            ],
        ),
        4,
    )
    assert decode_message(pdu) == LDAPMessage(
        4,
        ModifyRequest(
            "cn=alice,ou=users,dc=example,dc=org",
            (
                Change(0, "mail", (b"a@example.org", b"b@example.org")),
                Change(1, "description", ()),
                Change(2, "sn", (b"Liddell",)),
                Change(3, "uidNumber", (b"1",)),
            ),
        ),
    )


def test_add_request() -> None:
    pdu = wire(
        pureldap.LDAPAddRequest(
            entry=b"cn=bob,ou=users,dc=example,dc=org",
            attributes=[
                (
                    pureldap.LDAPAttributeDescription(b"objectClass"),
                    pureber.BERSet(
                        [
                            pureldap.LDAPAttributeValue(b"top"),
                            pureldap.LDAPAttributeValue(b"person"),
                        ]
                    ),
                ),
                (
                    pureldap.LDAPAttributeDescription(b"cn"),
                    pureber.BERSet([pureldap.LDAPAttributeValue(b"bob")]),
                ),
            ],
        ),
        5,
    )
    assert decode_message(pdu) == LDAPMessage(
        5,
        AddRequest(
            "cn=bob,ou=users,dc=example,dc=org",
            (("objectClass", (b"top", b"person")), ("cn", (b"bob",))),
        ),
    )


def test_delete_request() -> None:
    pdu = wire(pureldap.LDAPDelRequest(entry=b"cn=bob,dc=org"), 6)
    assert decode_message(pdu) == LDAPMessage(6, DelRequest("cn=bob,dc=org"))


def test_modify_dn_request_with_and_without_new_superior() -> None:
    plain = wire(pureldap.LDAPModifyDNRequest(b"cn=a,dc=org", b"cn=b", True), 8)
    assert decode_message(plain).request == ModifyDNRequest("cn=a,dc=org", "cn=b", True, None)
    moved = wire(
        pureldap.LDAPModifyDNRequest(b"cn=a,dc=org", b"cn=a", False, newSuperior=b"ou=x,dc=org"), 8
    )
    assert decode_message(moved).request == ModifyDNRequest(
        "cn=a,dc=org", "cn=a", False, "ou=x,dc=org"
    )


def test_compare_request() -> None:
    ava = pureldap.LDAPAttributeValueAssertion(
        pureldap.LDAPAttributeDescription(b"memberUid"), pureldap.LDAPAssertionValue(b"alice")
    )
    pdu = wire(pureldap.LDAPCompareRequest(b"cn=staff,ou=groups,dc=org", ava), 9)
    assert decode_message(pdu).request == CompareRequest(
        "cn=staff,ou=groups,dc=org", "memberUid", b"alice"
    )


def test_abandon_request() -> None:
    assert decode_message(wire(pureldap.LDAPAbandonRequest(id=42), 10)) == LDAPMessage(
        10, AbandonRequest(42)
    )
    big = wire(pureldap.LDAPAbandonRequest(id=2**31 - 1), 10)
    assert decode_message(big).request == AbandonRequest(2**31 - 1)


def test_extended_requests_with_and_without_value() -> None:
    start_tls = wire(pureldap.LDAPStartTLSRequest(), 1)
    assert decode_message(start_tls).request == ExtendedRequest("1.3.6.1.4.1.1466.20037", None)
    whoami = wire(pureldap.LDAPExtendedRequest(requestName=b"1.3.6.1.4.1.4203.1.11.3"), 2)
    assert decode_message(whoami).request == ExtendedRequest("1.3.6.1.4.1.4203.1.11.3", None)
    passwd = wire(
        pureldap.LDAPPasswordModifyRequest(
            userIdentity=b"cn=alice,dc=org", oldPasswd=b"old", newPasswd=b"new"
        ),
        3,
    )
    request = decode_message(passwd).request
    assert isinstance(request, ExtendedRequest)
    assert request.name == "1.3.6.1.4.1.4203.1.11.1"
    assert request.value is not None
    assert codec.decode_password_modify_value(request.value) == (
        "cn=alice,dc=org",
        b"old",
        b"new",
    )


def test_extended_request_with_empty_value_keeps_it_distinct_from_absent() -> None:
    pdu = message(tlv(0x77, tlv(0x80, b"1.2.3") + tlv(0x81, b"")))
    assert decode_message(pdu).request == ExtendedRequest("1.2.3", b"")


def test_controls_with_every_optional_combination() -> None:
    paged = codec.encode_paged_results_value(1000, b"")
    pdu = wire(
        pureldap.LDAPSearchRequest(baseObject=b"", filter=present("cn"), attributes=[]),
        11,
        controls=[
            (b"1.2.840.113556.1.4.319", None, paged),
            (b"1.3.6.1.4.1.42.2.27.8.5.1", None, None),
            (b"1.3.6.1.4.1.4203.666.5.16", True, b"\x30\x00"),
            (b"1.2.3.4", True, None),
            (b"1.2.3.5", False, None),
        ],
    )
    assert decode_message(pdu).controls == (
        Control("1.2.840.113556.1.4.319", False, paged),
        Control("1.3.6.1.4.1.42.2.27.8.5.1", False, None),
        Control("1.3.6.1.4.1.4203.666.5.16", True, b"\x30\x00"),
        Control("1.2.3.4", True, None),
        Control("1.2.3.5", False, None),
    )


def test_empty_controls_sequence_means_no_controls() -> None:
    pdu = message(tlv(0x4A, b"cn=x"), extra=b"\xa0\x00")
    assert decode_message(pdu) == LDAPMessage(5, DelRequest("cn=x"))


def test_decode_accepts_bytearray_and_memoryview() -> None:
    pdu = wire(pureldap.LDAPDelRequest(entry=b"cn=x"), 6)
    assert decode_message(bytearray(pdu)) == decode_message(pdu)  # type: ignore[arg-type]
    assert decode_message(memoryview(pdu)) == decode_message(pdu)  # type: ignore[arg-type]


def test_long_form_lengths_and_large_values() -> None:
    blob = bytes(range(256)) * 300
    pdu = wire(
        pureldap.LDAPCompareRequest(
            b"cn=a",
            pureldap.LDAPAttributeValueAssertion(
                pureldap.LDAPAttributeDescription(b"jpegPhoto"), pureldap.LDAPAssertionValue(blob)
            ),
        ),
        12,
    )
    assert decode_message(pdu).request == CompareRequest("cn=a", "jpegPhoto", blob)


# --------------------------------------------------------------------------- filters


@pytest.mark.parametrize(
    ("ldaptor_filter", "expected"),
    [
        (eq("uid", "alice"), Equality("uid", b"alice")),
        (present("objectClass"), Present("objectClass")),
        (
            pureldap.LDAPFilter_greaterOrEqual(
                pureldap.LDAPAttributeDescription("uidNumber"), pureldap.LDAPAssertionValue("1000")
            ),
            GreaterOrEqual("uidNumber", b"1000"),
        ),
        (
            pureldap.LDAPFilter_lessOrEqual(
                pureldap.LDAPAttributeDescription("uidNumber"), pureldap.LDAPAssertionValue("999")
            ),
            LessOrEqual("uidNumber", b"999"),
        ),
        (
            pureldap.LDAPFilter_approxMatch(
                pureldap.LDAPAttributeDescription("cn"), pureldap.LDAPAssertionValue("alise")
            ),
            Approx("cn", b"alise"),
        ),
        (pureldap.LDAPFilter_not(eq("uidNumber", "0")), Not(Equality("uidNumber", b"0"))),
        (
            pureldap.LDAPFilter_and([eq("a", "1"), present("b")]),
            And((Equality("a", b"1"), Present("b"))),
        ),
        (
            pureldap.LDAPFilter_or([eq("a", "1"), eq("a", "2"), present("c")]),
            Or((Equality("a", b"1"), Equality("a", b"2"), Present("c"))),
        ),
        (pureldap.LDAPFilter_and([]), And(())),
        (pureldap.LDAPFilter_or([]), Or(())),
    ],
)
def test_filter_choices(ldaptor_filter: Any, expected: Filter) -> None:
    assert decoded_filter(ldaptor_filter) == expected


@pytest.mark.parametrize(
    ("parts", "expected"),
    [
        ([pureldap.LDAPFilter_substrings_initial("al")], Substrings("cn", b"al", (), None)),
        ([pureldap.LDAPFilter_substrings_final("ce")], Substrings("cn", None, (), b"ce")),
        ([pureldap.LDAPFilter_substrings_any("li")], Substrings("cn", None, (b"li",), None)),
        (
            [
                pureldap.LDAPFilter_substrings_initial("a"),
                pureldap.LDAPFilter_substrings_any("l"),
                pureldap.LDAPFilter_substrings_any("i"),
                pureldap.LDAPFilter_substrings_final("e"),
            ],
            Substrings("cn", b"a", (b"l", b"i"), b"e"),
        ),
    ],
)
def test_substrings_filter(parts: list[Any], expected: Substrings) -> None:
    assert decoded_filter(pureldap.LDAPFilter_substrings(type="cn", substrings=parts)) == expected


def test_extensible_match_variants() -> None:
    full = pureldap.LDAPFilter_extensibleMatch(
        matchingRule="2.5.13.5", type="cn", matchValue="Alice", dnAttributes=True
    )
    assert decoded_filter(full) == Extensible("2.5.13.5", "cn", b"Alice", True)
    rule_only = pureldap.LDAPFilter_extensibleMatch(matchingRule="caseExactMatch", matchValue="x")
    assert decoded_filter(rule_only) == Extensible("caseExactMatch", None, b"x", False)
    type_only = pureldap.LDAPFilter_extensibleMatch(type="ou", matchValue="x", dnAttributes=False)
    assert decoded_filter(type_only) == Extensible(None, "ou", b"x", False)


def test_extensible_match_with_explicit_false_dn_attributes() -> None:
    body = tlv(0x82, b"ou") + tlv(0x83, b"x") + b"\x84\x01\x00"
    assert _filter_from_bytes(tlv(0xA9, body)) == Extensible(None, "ou", b"x", False)


def test_sssd_user_lookup_filter() -> None:
    filt = pureldap.LDAPFilter_and(
        [
            eq("uid", "alice"),
            eq("objectClass", "posixAccount"),
            present("uid"),
            pureldap.LDAPFilter_and(
                [present("uidNumber"), pureldap.LDAPFilter_not(eq("uidNumber", "0"))]
            ),
        ]
    )
    assert decoded_filter(filt) == And(
        (
            Equality("uid", b"alice"),
            Equality("objectClass", b"posixAccount"),
            Present("uid"),
            And((Present("uidNumber"), Not(Equality("uidNumber", b"0")))),
        )
    )


def test_assertion_values_stay_bytes_even_when_not_utf8() -> None:
    value = b"\xff\xfe\x00binary"
    assert decoded_filter(eq("objectGUID", value)) == Equality("objectGUID", value)


def nested_not(depth: int) -> Any:
    """A filter of ``depth`` levels: (depth - 1) nots around an equality."""
    filt = eq("a", "b")
    for _ in range(depth - 1):
        filt = pureldap.LDAPFilter_not(filt)
    return filt


def test_filter_at_the_depth_limit_is_accepted() -> None:
    filt = decode_message(search(nested_not(50)), max_filter_depth=50).request
    assert isinstance(filt, SearchRequest)
    node = filt.filter
    levels = 1
    while isinstance(node, Not):
        node = node.item
        levels += 1
    assert (levels, node) == (50, Equality("a", b"b"))


def test_filter_deeper_than_the_limit_is_rejected_with_admin_limit_exceeded() -> None:
    error = rejected(search(nested_not(51)), max_filter_depth=50)
    assert error.message_id == 7
    assert error.request_type is SearchRequest
    assert error.result_code == 11
    assert error.message == "filter nesting exceeds 50 levels"


def test_deep_and_or_nesting_is_rejected_too() -> None:
    filt = eq("a", "b")
    for i in range(60):
        filt = (pureldap.LDAPFilter_and if i % 2 else pureldap.LDAPFilter_or)([present("x"), filt])
    assert rejected(search(filt)).result_code == 11


def test_very_deep_filter_does_not_recurse() -> None:
    # 5000 levels exceed Python's recursion limit; the decoder must not care.
    # (Built by hand: ldaptor's own encoder recurses.)
    node = tlv(0x87, b"cn")
    for _ in range(4999):
        node = b"\xa2" + _length(len(node)) + node
    pdu = _search_with_raw_filter(node)
    request = decode_message(pdu, max_filter_depth=10000).request
    assert isinstance(request, SearchRequest)
    assert rejected(pdu).result_code == 11


def _length(n: int) -> bytes:
    if n < 0x80:
        return bytes((n,))
    size = (n.bit_length() + 7) // 8
    return bytes((0x80 | size,)) + n.to_bytes(size, "big")


def _search_with_raw_filter(filter_bytes: bytes, message_id: int = 7) -> bytes:
    body = (
        tlv(0x04, b"dc=org")
        + b"\x0a\x01\x02\x0a\x01\x00\x02\x01\x00\x02\x01\x00\x01\x01\x00"
        + filter_bytes
        + b"\x30\x00"
    )
    op = b"\x63" + _length(len(body)) + body
    inner = b"\x02\x01" + bytes((message_id,)) + op
    return b"\x30" + _length(len(inner)) + inner


def _filter_from_bytes(filter_bytes: bytes) -> Filter:
    request = decode_message(_search_with_raw_filter(filter_bytes)).request
    assert isinstance(request, SearchRequest)
    return request.filter


# --------------------------------------------------------------------------- malformed input


@pytest.mark.parametrize(
    ("pdu", "reason"),
    [
        (b"", "empty"),
        (b"\x30", "header cut short"),
        (b"\x30\x80\x02\x01\x01\x42\x00\x00\x00", "indefinite length"),
        (b"\x30\x85\x00\x00\x00\x00\x05\x02\x01\x01\x42\x00", "5-octet length"),
        (b"\x30\x05\x02\x01\x01\x42\x00\x00", "trailing byte after the message"),
        (b"\x30\x06\x02\x01\x01\x42\x00", "truncated message"),
        (b"\x31\x05\x02\x01\x01\x42\x00", "SET instead of SEQUENCE"),
        (b"\x30\x05\x04\x01\x01\x42\x00", "messageID not an INTEGER"),
        (b"\x30\x04\x02\x00\x42\x00", "empty messageID"),
        (b"\x30\x05\x02\x01\xff\x42\x00", "negative messageID"),
        (b"\x30\x09\x02\x05\x00\x80\x00\x00\x00\x42\x00", "messageID above maxInt"),
        (b"\x30\x03\x02\x01\x01", "no protocolOp"),
        (b"\x30\x05\x02\x01\x01\x42\x01", "protocolOp runs past the end"),
        (b"\x30\x06\x02\x01\x01\x42\x01\x00", "unbind with content"),
        (b"\x30\x07\x02\x01\x01\x42\x00\xa1\x00", "controls with the wrong tag"),
        (b"\x30\x09\x02\x01\x01\x42\x00\xa0\x00\x04\x00", "junk after controls"),
        (b"\x30\x09\x02\x01\x01\x42\x00\xa0\x02\x04\x00", "control not a SEQUENCE"),
        (b"\x30\x0a\x02\x01\x01\x42\x00\xa0\x03\x30\x01\x04", "control cut short"),
        (b"\x30\x0b\x02\x01\x01\x42\x00\xa0\x04\x30\x02\x01\x00", "control without type"),
        (b"\x30\x0e\x02\x01\x01\x42\x00\xa0\x07\x30\x05\x04\x00\x02\x01\x00", "bad control"),
    ],
)
def test_structural_errors_are_protocol_violations(pdu: bytes, reason: str) -> None:
    with pytest.raises(ProtocolViolation):
        decode_message(pdu)


@pytest.mark.parametrize(
    "op_tag",
    [0x61, 0x64, 0x65, 0x67, 0x69, 0x6B, 0x6D, 0x6F, 0x73, 0x78, 0x79, 0x70, 0x04, 0x30],
)
def test_response_or_unknown_protocol_op_is_a_protocol_violation(op_tag: int) -> None:
    pdu = message(tlv(op_tag, b"\x0a\x01\x00\x04\x00\x04\x00"))
    with pytest.raises(ProtocolViolation, match="not an LDAP request"):
        decode_message(pdu)


def test_bind_response_sent_to_the_server_is_a_protocol_violation() -> None:
    pdu = codec.encode_bind_response(1, LDAPResult(0))
    with pytest.raises(ProtocolViolation):
        decode_message(pdu)


@pytest.mark.parametrize(
    ("op", "reason"),
    [
        (tlv(0x63, tlv(0x04, b"")), "search with only a base"),
        (
            tlv(0x63, tlv(0x04, b"") + b"\x0a\x01\x02\x0a\x01\x00\x02\x01\x00\x02\x01\x00"),
            "search without typesOnly",
        ),
        (tlv(0x60, b"\x02\x01\x03" + tlv(0x04, b"") + tlv(0x80, b"") + b"\x04\x00"), "bind junk"),
        (tlv(0x60, b"\x02\x01\x03" + tlv(0x04, b"")), "bind without auth"),
        (tlv(0x60, b"\x02\x01\x03" + tlv(0x24, tlv(0x04, b"cn=x")) + tlv(0x80, b"")), "con OS"),
        (tlv(0x60, b"\x02\x01\x03" + tlv(0x04, b"") + tlv(0x30, b"")), "universal auth"),
        (tlv(0x60, b"\x02\x01\x03" + tlv(0x04, b"") + tlv(0xA3, b"")), "sasl w/o mechanism"),
        (tlv(0x50, b""), "abandon with empty id"),
        (tlv(0x6A, tlv(0x04, b"cn=a")), "delete in constructed form"),
        (tlv(0x6E, tlv(0x04, b"cn=a") + tlv(0x30, tlv(0x04, b"cn"))), "compare w/o value"),
        (tlv(0x6C, tlv(0x04, b"cn=a") + tlv(0x04, b"cn=b")), "moddn without deleteoldrdn"),
        (
            tlv(0x6C, tlv(0x04, b"cn=a") + tlv(0x04, b"cn=b") + b"\x01\x01\x00" + tlv(0x81, b"x")),
            "moddn bad newSuperior tag",
        ),
        (tlv(0x77, tlv(0x81, b"x")), "extended without name"),
        (tlv(0x77, tlv(0x80, b"1.2") + tlv(0x81, b"") + tlv(0x81, b"")), "extended junk"),
        (tlv(0x66, tlv(0x04, b"cn=a") + tlv(0x30, tlv(0x30, b"\x0a\x01\x00"))), "mod no attr"),
        (
            tlv(
                0x66,
                tlv(0x04, b"cn=a")
                + tlv(
                    0x30, tlv(0x30, b"\x0a\x01\x00" + tlv(0x30, tlv(0x04, b"cn") + tlv(0x30, b"")))
                ),
            ),
            "modification values in a SEQUENCE instead of a SET",
        ),
        (tlv(0x68, tlv(0x04, b"cn=a") + tlv(0x30, tlv(0x30, tlv(0x04, b"cn")))), "add no vals"),
        (
            tlv(
                0x68,
                tlv(0x04, b"cn=a")
                + tlv(0x30, tlv(0x30, tlv(0x04, b"cn") + tlv(0x31, b"\x02\x01\x00"))),
            ),
            "add value not an OCTET STRING",
        ),
    ],
)
def test_malformed_operations_are_protocol_violations(op: bytes, reason: str) -> None:
    with pytest.raises(ProtocolViolation):
        decode_message(message(op))


def test_delete_of_the_empty_dn_is_well_formed() -> None:
    assert decode_message(message(tlv(0x4A, b""))).request == DelRequest("")


@pytest.mark.parametrize(
    ("filter_bytes", "reason"),
    [
        (tlv(0xAA, b""), "unknown filter choice [10]"),
        (tlv(0x83, b"ab"), "primitive equality"),
        (tlv(0xA7, b"cn"), "constructed present"),
        (b"\xa2\x00", "empty not"),
        (tlv(0xA2, tlv(0x87, b"a") + tlv(0x87, b"b")), "not with two filters"),
        (tlv(0xA3, tlv(0x04, b"cn")), "equality without value"),
        (tlv(0xA3, tlv(0x04, b"cn") + tlv(0x04, b"x") + tlv(0x04, b"y")), "equality junk"),
        (tlv(0xA4, tlv(0x04, b"cn") + tlv(0x30, b"")), "substrings with no parts"),
        (
            tlv(0xA4, tlv(0x04, b"cn") + tlv(0x30, tlv(0x80, b"a") + tlv(0x80, b"b"))),
            "two initials",
        ),
        (
            tlv(0xA4, tlv(0x04, b"cn") + tlv(0x30, tlv(0x82, b"a") + tlv(0x82, b"b"))),
            "two finals",
        ),
        (
            tlv(0xA4, tlv(0x04, b"cn") + tlv(0x30, tlv(0x81, b"a") + tlv(0x80, b"b"))),
            "initial after any",
        ),
        (
            tlv(0xA4, tlv(0x04, b"cn") + tlv(0x30, tlv(0x82, b"a") + tlv(0x81, b"b"))),
            "any after final",
        ),
        (tlv(0xA4, tlv(0x04, b"cn") + tlv(0x30, tlv(0x83, b"a"))), "unknown substring choice"),
        (tlv(0xA4, tlv(0x04, b"cn")), "substrings without a sequence"),
        (tlv(0xA9, tlv(0x82, b"cn")), "extensible without matchValue"),
        (tlv(0xA9, tlv(0x83, b"x") + tlv(0x82, b"cn")), "extensible fields out of order"),
        (tlv(0xA9, tlv(0x82, b"cn") + tlv(0x83, b"x") + b"\x84\x02\x00\x00"), "long boolean"),
        (tlv(0xA9, tlv(0x82, b"a") + tlv(0x83, b"x") + b"\x84\x01\xff\x04\x00"), "junk"),
        (tlv(0xA0, tlv(0x87, b"a") + b"\x87"), "and with a cut child"),
        (b"\xa0\x05" + tlv(0x87, b"a"), "and longer than its children"),
    ],
)
def test_malformed_filters_are_protocol_violations(filter_bytes: bytes, reason: str) -> None:
    with pytest.raises(ProtocolViolation):
        decode_message(_search_with_raw_filter(filter_bytes))


def test_trailing_garbage_inside_search_request_is_a_protocol_violation() -> None:
    pdu = search(present("cn"))
    # Re-encode with one extra element after the attribute list.
    body = pdu[pdu.index(b"\x63") :]
    _, start, stop = read_tlv(body, 0, len(body))
    op = b"\x63" + _length(stop - start + 3) + body[start:stop] + b"\x04\x01x"
    inner = b"\x02\x01\x07" + op
    with pytest.raises(ProtocolViolation, match="trailing"):
        decode_message(b"\x30" + _length(len(inner)) + inner)


def test_constructed_octet_string_is_refused() -> None:
    # RFC 4511 5.1: OCTET STRING values are encoded in the primitive form only.
    pdu = message(tlv(0x6E, tlv(0x24, tlv(0x04, b"cn=a")) + tlv(0x30, b"")))
    with pytest.raises(ProtocolViolation):
        decode_message(pdu)


# --------------------------------------------------------------------------- content errors


def test_invalid_utf8_in_bind_dn_is_invalid_dn_syntax() -> None:
    pdu = wire(pureldap.LDAPBindRequest(dn=b"cn=\xff\xfe,dc=org", auth=b"pw"), 3)
    error = rejected(pdu)
    assert (error.message_id, error.request_type, error.result_code) == (3, BindRequest, 34)
    assert "UTF-8" in error.message


@pytest.mark.parametrize(
    ("pdu", "request_type"),
    [
        (search(present("cn"), baseObject=b"dc=\xc3"), SearchRequest),
        (wire(pureldap.LDAPDelRequest(entry=b"cn=\x80"), 7), DelRequest),
        (wire(pureldap.LDAPModifyDNRequest(b"cn=a", b"cn=\xed\xa0\x80", True), 7), ModifyDNRequest),
        (
            wire(pureldap.LDAPModifyDNRequest(b"cn=a", b"cn=b", True, newSuperior=b"\xc0\xaf"), 7),
            ModifyDNRequest,
        ),
        (message(tlv(0x66, tlv(0x04, b"\xff") + tlv(0x30, b"")), b"\x02\x01\x07"), ModifyRequest),
        (message(tlv(0x68, tlv(0x04, b"\xff") + tlv(0x30, b"")), b"\x02\x01\x07"), AddRequest),
    ],
)
def test_invalid_utf8_in_any_dn_field_is_invalid_dn_syntax(pdu: bytes, request_type: type) -> None:
    error = rejected(pdu)
    assert (error.message_id, error.request_type, error.result_code) == (7, request_type, 34)


@pytest.mark.parametrize(
    ("pdu", "request_type"),
    [
        (search(eq(b"c\xffn", "x")), SearchRequest),
        (search(present(b"\xe9")), SearchRequest),
        (search(present("cn"), attributes=[b"uid", b"\xff"]), SearchRequest),
        (
            search(
                pureldap.LDAPFilter_substrings(
                    type=b"\xff", substrings=[pureldap.LDAPFilter_substrings_any("x")]
                )
            ),
            SearchRequest,
        ),
        (
            search(pureldap.LDAPFilter_extensibleMatch(matchingRule=b"\xff", matchValue="x")),
            SearchRequest,
        ),
        (wire(pureldap.LDAPExtendedRequest(requestName=b"1.2\xff"), 7), ExtendedRequest),
        (wire(pureldap.LDAPBindRequest(dn=b"", auth=(b"PL\xff", None), sasl=True), 7), BindRequest),
        (
            wire(pureldap.LDAPDelRequest(entry=b"cn=a"), 7, controls=[(b"1.2\xff", None, None)]),
            DelRequest,
        ),
    ],
)
def test_invalid_utf8_in_other_strings_is_protocol_error(pdu: bytes, request_type: type) -> None:
    error = rejected(pdu)
    assert (error.message_id, error.request_type, error.result_code) == (7, request_type, 2)


def test_unknown_authentication_choice_is_auth_method_not_supported() -> None:
    # [1] and [2] were Kerberos v4 in LDAPv2; AuthenticationChoice is extensible.
    pdu = message(tlv(0x60, b"\x02\x01\x03" + tlv(0x04, b"") + tlv(0x81, b"krb")))
    error = rejected(pdu)
    assert (error.request_type, error.result_code) == (BindRequest, 7)


@pytest.mark.parametrize(
    ("op", "request_type"),
    [
        (tlv(0x60, b"\x02\x01\x00" + tlv(0x04, b"") + tlv(0x80, b"")), BindRequest),
        (tlv(0x60, b"\x02\x02\x00\x80" + tlv(0x04, b"") + tlv(0x80, b"")), BindRequest),
        (tlv(0x50, b"\xff"), AbandonRequest),
        (
            tlv(
                0x66,
                tlv(0x04, b"cn=a")
                + tlv(
                    0x30, tlv(0x30, b"\x0a\x01\x04" + tlv(0x30, tlv(0x04, b"cn") + tlv(0x31, b"")))
                ),
            ),
            ModifyRequest,
        ),
        (
            tlv(0x68, tlv(0x04, b"cn=a") + tlv(0x30, tlv(0x30, tlv(0x04, b"cn") + tlv(0x31, b"")))),
            AddRequest,
        ),
    ],
)
def test_out_of_range_values_are_protocol_error(op: bytes, request_type: type) -> None:
    error = rejected(message(op))
    assert (error.message_id, error.request_type, error.result_code) == (5, request_type, 2)


@pytest.mark.parametrize(
    ("fixed", "what"),
    [
        (b"\x0a\x01\x03\x0a\x01\x00\x02\x01\x00\x02\x01\x00", "scope"),
        (b"\x0a\x01\x02\x0a\x01\x04\x02\x01\x00\x02\x01\x00", "derefAliases"),
        (b"\x0a\x01\x02\x0a\x01\x00\x02\x01\xff\x02\x01\x00", "sizeLimit"),
        (b"\x0a\x01\x02\x0a\x01\x00\x02\x01\x00\x02\x05\x01\x00\x00\x00\x00", "timeLimit"),
    ],
)
def test_search_parameters_out_of_range_are_protocol_error(fixed: bytes, what: str) -> None:
    body = tlv(0x04, b"") + fixed + b"\x01\x01\x00" + tlv(0x87, b"cn") + b"\x30\x00"
    error = rejected(message(tlv(0x63, body)))
    assert (error.request_type, error.result_code) == (SearchRequest, 2)
    assert what in error.message


def test_extensible_match_without_rule_or_type_is_protocol_error() -> None:
    error = rejected(_search_with_raw_filter(tlv(0xA9, tlv(0x83, b"x"))))
    assert (error.request_type, error.result_code) == (SearchRequest, 2)


# --------------------------------------------------------------------------- responses


def _result_fields(op: Any) -> tuple[int, bytes, bytes]:
    return op.resultCode, op.matchedDN, op.errorMessage


@pytest.mark.parametrize(
    ("encoder", "ldaptor_type"),
    [
        (codec.encode_bind_response, pureldap.LDAPBindResponse),
        (codec.encode_search_done, pureldap.LDAPSearchResultDone),
        (codec.encode_modify_response, pureldap.LDAPModifyResponse),
        (codec.encode_add_response, pureldap.LDAPAddResponse),
        (codec.encode_del_response, pureldap.LDAPDelResponse),
        (codec.encode_modify_dn_response, pureldap.LDAPModifyDNResponse),
        (codec.encode_compare_response, pureldap.LDAPCompareResponse),
        (codec.encode_extended_response, pureldap.LDAPExtendedResponse),
    ],
)
def test_result_responses_decode_in_ldaptor(encoder: Any, ldaptor_type: type) -> None:
    result = LDAPResult(32, "no such entry: cn=zoë", "ou=users,dc=example,dc=org")
    decoded = ldaptor_decode(encoder(77, result))
    assert decoded.id == 77
    assert type(decoded.value) is ldaptor_type
    assert _result_fields(decoded.value) == (
        32,
        b"ou=users,dc=example,dc=org",
        "no such entry: cn=zoë".encode(),
    )
    assert decoded.controls is None


def test_responses_match_ldaptor_byte_for_byte() -> None:
    result = LDAPResult(49, "invalid credentials")
    ours = codec.encode_bind_response(1, result)
    theirs = pureldap.LDAPMessage(
        pureldap.LDAPBindResponse(resultCode=49, errorMessage=b"invalid credentials"), id=1
    ).toWire()
    assert ours == theirs
    ours = codec.encode_search_done(300, LDAPResult(0))
    theirs = pureldap.LDAPMessage(pureldap.LDAPSearchResultDone(resultCode=0), id=300).toWire()
    assert ours == theirs


def test_search_done_with_paged_results_control() -> None:
    cookie = b"\x00\x01opaque"
    value = codec.encode_paged_results_value(0, cookie)
    data = codec.encode_search_done(
        5, LDAPResult(0), controls=[Control("1.2.840.113556.1.4.319", False, value)]
    )
    decoded = ldaptor_decode(data)
    assert type(decoded.value) is pureldap.LDAPSearchResultDone
    assert decoded.controls == [(b"1.2.840.113556.1.4.319", None, value)]
    assert codec.decode_paged_results_value(value) == (0, cookie)


def test_controls_encode_criticality_only_when_true() -> None:
    data = codec.encode_modify_response(
        2, LDAPResult(0), controls=(Control("1.2.3", True, None), Control("1.2.4", False, b""))
    )
    assert data.endswith(
        b"\xa0\x17" + b"\x30\x0a\x04\x051.2.3\x01\x01\xff" + b"\x30\x09\x04\x051.2.4\x04\x00"
    )
    # ldaptor reports the raw BOOLEAN octet.
    assert ldaptor_decode(data).controls == [(b"1.2.3", 0xFF, None), (b"1.2.4", None, b"")]


def test_extended_response_name_and_value() -> None:
    data = codec.encode_extended_response(
        4, LDAPResult(0), name="1.3.6.1.4.1.4203.1.11.3", value=b"dn:cn=alice,dc=org"
    )
    decoded = ldaptor_decode(data).value
    assert type(decoded) is pureldap.LDAPExtendedResponse
    assert decoded.responseName == b"1.3.6.1.4.1.4203.1.11.3"
    assert decoded.response == b"dn:cn=alice,dc=org"
    # WhoAmI for an anonymous client: empty value, no name.
    bare = ldaptor_decode(codec.encode_extended_response(4, LDAPResult(0), value=b"")).value
    assert (bare.responseName, bare.response) == (None, b"")


def test_notice_of_disconnection_is_exact() -> None:
    oid = b"1.3.6.1.4.1.1466.20036"
    expected = (
        b"\x30\x27"  # LDAPMessage
        b"\x02\x01\x00"  # messageID 0
        b"\x78\x22"  # [APPLICATION 24] ExtendedResponse
        b"\x0a\x01\x02"  # resultCode protocolError
        b"\x04\x00"  # matchedDN ""
        b"\x04\x03bad"  # diagnosticMessage
        b"\x8a\x16" + oid  # [10] responseName
    )
    assert codec.encode_notice_of_disconnection(2, "bad") == expected
    decoded = ldaptor_decode(expected)
    assert (decoded.id, decoded.value.responseName) == (0, oid)


def test_search_entry_matches_ldaptor_byte_for_byte() -> None:
    attributes = [
        ("objectClass", [b"top", b"person", b"posixAccount"]),
        ("cn", [b"alice"]),
        ("uidNumber", [b"10002"]),
        ("description", [b"x" * 300]),
        ("jpegPhoto", [bytes(range(256)) * 300]),
        ("memberOf", []),
        ("displayName", ["Zoë".encode()]),
    ]
    dn = "cn=Zoë,ou=users,dc=example,dc=org"
    ours = codec.encode_search_entry(12345, dn, attributes)
    theirs = pureldap.LDAPMessage(
        pureldap.LDAPSearchResultEntry(dn.encode(), attributes), id=12345
    ).toWire()
    assert ours == theirs
    decoded = ldaptor_decode(ours).value
    assert decoded.objectName == dn.encode()
    assert [(a, list(v)) for a, v in decoded.attributes] == [
        (name.encode(), values) for name, values in attributes
    ]


def test_search_entry_with_no_attributes_and_unicode_names() -> None:
    assert codec.encode_search_entry(1, "", []) == b"\x30\x09\x02\x01\x01\x64\x04\x04\x00\x30\x00"
    data = codec.encode_search_entry(1, "dc=org", [("cn;lang-fr", [b"\xc3\xa9"])])
    assert ldaptor_decode(data).value.attributes == [(b"cn;lang-fr", [b"\xc3\xa9"])]


@given(
    st.integers(min_value=0, max_value=2**31 - 1),
    st.text(max_size=80),
    st.lists(
        st.tuples(st.text(min_size=1, max_size=20), st.lists(st.binary(max_size=300), max_size=4)),
        max_size=8,
    ),
)
@settings(suppress_health_check=[HealthCheck.too_slow], max_examples=150)
def test_search_entry_agrees_with_ldaptor(
    message_id: int, dn: str, attributes: list[tuple[str, list[bytes]]]
) -> None:
    ours = codec.encode_search_entry(message_id, dn, attributes)
    theirs = pureldap.LDAPMessage(
        pureldap.LDAPSearchResultEntry(dn.encode(), [(n.encode(), v) for n, v in attributes]),
        id=message_id,
    ).toWire()
    assert ours == theirs


def test_response_encoders_cover_every_answered_request_type() -> None:
    answered = {
        BindRequest: 0x61,
        SearchRequest: 0x65,
        ModifyRequest: 0x67,
        AddRequest: 0x69,
        DelRequest: 0x6B,
        ModifyDNRequest: 0x6D,
        CompareRequest: 0x6F,
        ExtendedRequest: 0x78,
    }
    assert set(codec.RESPONSE_ENCODERS) == set(answered)
    for request_type, op_tag in answered.items():
        encode = codec.RESPONSE_ENCODERS[request_type]
        data = encode(9, LDAPResult(2, "oops"), controls=())
        assert data[5] == op_tag  # 30 len 02 01 09 <op tag>
        assert _result_fields(ldaptor_decode(data).value) == (2, b"", b"oops")


def test_rejection_round_trip_answers_with_the_matching_response() -> None:
    error = rejected(search(nested_not(60)))
    data = codec.RESPONSE_ENCODERS[error.request_type](
        error.message_id, LDAPResult(error.result_code, error.message)
    )
    decoded = ldaptor_decode(data)
    assert decoded.id == 7
    assert type(decoded.value) is pureldap.LDAPSearchResultDone
    assert decoded.value.resultCode == 11


# --------------------------------------------------------------------------- control values


def test_paged_results_value_round_trip_and_ldaptor_form() -> None:
    value = codec.encode_paged_results_value(1000, b"cookie")
    assert value == b"\x30\x0c\x02\x02\x03\xe8\x04\x06cookie"
    assert codec.decode_paged_results_value(value) == (1000, b"cookie")
    assert codec.decode_paged_results_value(b"\x30\x05\x02\x01\x00\x04\x00") == (0, b"")


@pytest.mark.parametrize(
    "value",
    [
        b"",
        b"\x30\x00",
        b"\x30\x03\x02\x01\x05",
        b"\x30\x05\x02\x01\xff\x04\x00",  # negative size
        b"\x30\x05\x04\x00\x02\x01\x05",  # swapped
        b"\x30\x07\x02\x01\x05\x04\x00\x05\x00",  # trailing element
        b"\x30\x05\x02\x01\x05\x04\x00\x00",  # trailing byte
        b"\x30\x80\x02\x01\x05\x04\x00\x00\x00",  # indefinite
    ],
)
def test_malformed_paged_results_value_raises_value_error(value: bytes) -> None:
    with pytest.raises(ValueError):
        codec.decode_paged_results_value(value)


def test_password_modify_value_every_combination() -> None:
    decode = codec.decode_password_modify_value
    assert decode(None) == (None, None, None)
    assert decode(b"") == (None, None, None)
    assert decode(b"\x30\x00") == (None, None, None)

    def ldaptor_value(**kw: bytes) -> bytes:
        request = pureldap.LDAPPasswordModifyRequest(**kw)
        value: bytes = request.requestValue
        return value

    assert decode(ldaptor_value(oldPasswd=b"old", newPasswd=b"new")) == (None, b"old", b"new")
    assert decode(ldaptor_value(userIdentity=b"cn=bob", newPasswd=b"n")) == ("cn=bob", None, b"n")
    assert decode(ldaptor_value(userIdentity="uid=zoë".encode())) == ("uid=zoë", None, None)
    assert decode(ldaptor_value(newPasswd=b"")) == (None, None, b"")


@pytest.mark.parametrize(
    "value",
    [
        b"\x04\x00",  # not a SEQUENCE
        b"\x30\x02\x81\x00\x00",  # trailing byte
        b"\x30\x04\x81\x00\x80\x00",  # out of order
        b"\x30\x04\x82\x00\x82\x00",  # duplicate
        b"\x30\x02\x83\x00",  # unknown field
        b"\x30\x03\x80\x01\xff",  # userIdentity not UTF-8
        b"\x30\x03\x80\x05a",  # truncated
    ],
)
def test_malformed_password_modify_value_raises_value_error(value: bytes) -> None:
    with pytest.raises(ValueError):
        codec.decode_password_modify_value(value)


def test_password_modify_response_value() -> None:
    assert codec.encode_password_modify_response_value(None) is None
    assert codec.encode_password_modify_response_value(b"gen") == b"\x30\x05\x80\x03gen"


# --------------------------------------------------------------------------- robustness

VALID_PDUS = [
    wire(pureldap.LDAPBindRequest(dn=b"cn=alice,dc=org", auth=b"pw"), 1),
    wire(pureldap.LDAPBindRequest(dn=b"", auth=(b"PLAIN", b"\0a\0b"), sasl=True), 1),
    search(
        pureldap.LDAPFilter_and(
            [
                eq("uid", "alice"),
                pureldap.LDAPFilter_or([present("cn"), pureldap.LDAPFilter_not(eq("a", "b"))]),
                pureldap.LDAPFilter_substrings(
                    type="cn",
                    substrings=[
                        pureldap.LDAPFilter_substrings_initial("a"),
                        pureldap.LDAPFilter_substrings_any("b"),
                        pureldap.LDAPFilter_substrings_final("c"),
                    ],
                ),
                pureldap.LDAPFilter_extensibleMatch(
                    matchingRule="2.5.13.2", type="cn", matchValue="x", dnAttributes=True
                ),
                pureldap.LDAPFilter_greaterOrEqual(
                    pureldap.LDAPAttributeDescription("n"), pureldap.LDAPAssertionValue("1")
                ),
            ]
        ),
        attributes=[b"cn", b"uid"],
    ),
    wire(
        pureldap.LDAPSearchRequest(baseObject=b"", scope=0, filter=present("objectClass")),
        3,
        controls=[(b"1.2.840.113556.1.4.319", True, b"\x30\x05\x02\x01\x05\x04\x00")],
    ),
    wire(pureldap.LDAPDelRequest(entry=b"cn=x"), 4),
    wire(pureldap.LDAPAbandonRequest(id=3), 5),
    wire(pureldap.LDAPUnbindRequest(), 6),
    wire(pureldap.LDAPModifyDNRequest(b"cn=a", b"cn=b", True, newSuperior=b"dc=org"), 7),
    wire(pureldap.LDAPPasswordModifyRequest(oldPasswd=b"o", newPasswd=b"n"), 8),
    message(
        tlv(
            0x66,
            tlv(0x04, b"cn=a")
            + tlv(
                0x30,
                tlv(
                    0x30, b"\x0a\x01\x02" + tlv(0x30, tlv(0x04, b"sn") + tlv(0x31, tlv(0x04, b"x")))
                ),
            ),
        )
    ),
    message(
        tlv(
            0x68,
            tlv(0x04, b"cn=a")
            + tlv(0x30, tlv(0x30, tlv(0x04, b"cn") + tlv(0x31, tlv(0x04, b"a")))),
        )
    ),
]


def test_robustness_corpus_is_valid() -> None:
    for pdu in VALID_PDUS:
        decode_message(pdu)


def _decode_only_expected_errors(pdu: bytes) -> None:
    try:
        result = decode_message(pdu)
    except (ProtocolViolation, RequestRejected):
        return
    assert isinstance(result, LDAPMessage)


@given(st.binary(max_size=200))
def test_random_bytes_only_raise_protocol_errors(data: bytes) -> None:
    _decode_only_expected_errors(data)


@given(
    st.sampled_from([0x60, 0x42, 0x63, 0x66, 0x68, 0x4A, 0x6C, 0x6E, 0x50, 0x77]),
    st.binary(max_size=120),
    st.binary(max_size=20),
)
def test_random_operation_bodies_only_raise_protocol_errors(
    op_tag: int, body: bytes, tail: bytes
) -> None:
    op = bytes((op_tag,)) + _length(len(body)) + body
    inner = b"\x02\x01\x05" + op + tail
    _decode_only_expected_errors(b"\x30" + _length(len(inner)) + inner)


@st.composite
def mutated_pdu(draw: st.DrawFn) -> bytes:
    pdu = bytearray(draw(st.sampled_from(VALID_PDUS)))
    for _ in range(draw(st.integers(min_value=1, max_value=4))):
        kind = draw(st.sampled_from(["flip", "set", "delete", "insert", "truncate"]))
        if not pdu:
            break
        index = draw(st.integers(min_value=0, max_value=len(pdu) - 1))
        if kind == "flip":
            pdu[index] ^= 1 << draw(st.integers(min_value=0, max_value=7))
        elif kind == "set":
            pdu[index] = draw(st.integers(min_value=0, max_value=255))
        elif kind == "delete":
            del pdu[index]
        elif kind == "insert":
            pdu.insert(index, draw(st.integers(min_value=0, max_value=255)))
        else:
            del pdu[index:]
    return bytes(pdu)


@given(mutated_pdu())
@settings(max_examples=1000)
def test_mutated_valid_pdus_only_raise_protocol_errors(pdu: bytes) -> None:
    _decode_only_expected_errors(pdu)


@given(
    st.recursive(
        st.builds(Present, st.sampled_from(["cn", "uid", "objectClass"]))
        | st.builds(Equality, st.sampled_from(["cn", "mail"]), st.binary(max_size=10)),
        lambda children: (
            st.builds(lambda items: And(tuple(items)), st.lists(children, max_size=3))
            | st.builds(lambda items: Or(tuple(items)), st.lists(children, max_size=3))
            | st.builds(Not, children)
        ),
        max_leaves=20,
    )
)
def test_filter_trees_round_trip_through_ldaptor_encoding(tree: Filter) -> None:
    def to_ldaptor(node: Filter) -> Any:
        if isinstance(node, Present):
            return present(node.attr)
        if isinstance(node, Equality):
            return pureldap.LDAPFilter_equalityMatch(
                pureldap.LDAPAttributeDescription(node.attr),
                pureldap.LDAPAssertionValue(node.value),
            )
        if isinstance(node, And):
            return pureldap.LDAPFilter_and([to_ldaptor(i) for i in node.items])
        if isinstance(node, Or):
            return pureldap.LDAPFilter_or([to_ldaptor(i) for i in node.items])
        assert isinstance(node, Not)
        return pureldap.LDAPFilter_not(to_ldaptor(node.item))

    assert decoded_filter(to_ldaptor(tree)) == tree
