"""Hypothesis strategies for LDAP requests, filters and their mutations.

Valid requests are built twice in parallel: as ldaptor objects (an encoder
independent of ours, which gives the wire bytes) and as the values our decoder
must produce from those bytes. Mutations then damage valid PDUs the ways broken
or hostile clients do: flipped and inserted bytes, truncation, lengths lied about,
tags swapped for unknown or response tags.
"""

from __future__ import annotations

from typing import Any

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
from ldapsrv.ldap.messages import (
    AbandonRequest,
    AddRequest,
    BindRequest,
    CompareRequest,
    DelRequest,
    ExtendedRequest,
    LDAPMessage,
    ModifyDNRequest,
    Request,
    SearchRequest,
    SimpleAuth,
)

Pair = tuple[Any, Any]  # (ldaptor object, our value)

MAX_INT = 2**31 - 1

#: Attribute names clients really send, in odd cases, plus unknown ones.
ATTRIBUTES = st.sampled_from(
    [
        "uid", "cn", "CN", "memberUid", "memberuid", "member", "memberOf", "objectClass",
        "uidNumber", "gidNumber", "mail", "sn", "givenName", "displayName", "loginShell",
        "homeDirectory", "description", "entryUUID", "2.5.4.3", "noSuchAttr", "x-custom;lang-fr",
    ]
)  # fmt: skip
TEXT = st.text(max_size=24)
VALUES = st.one_of(
    st.binary(max_size=24),
    TEXT.map(str.encode),
    st.sampled_from([b"alice", b"*", b"10000", b"-1", b"\xc3\xa9", b"\xff\xfe", b"", b"0" * 30]),
)
DNS = st.one_of(
    st.sampled_from(
        [
            "",
            "dc=example,dc=org",
            "cn=alice,ou=users,dc=example,dc=org",
            "uid=alice,ou=users,dc=example,dc=org",
            "cn=Z\\C3\\A9,ou=users,dc=example,dc=org",
            "cn=a\\,b,ou=groups,dc=example,dc=org",
            "cn=\\23x,dc=example,dc=org",
            "ou=users,dc=example,dc=org",
            "cn=subschema",
            "not a dn",
            "cn=",
            "=x",
        ]
    ),
    TEXT,
)


def _ava(make: Any, ours: type, attr: str, value: bytes) -> Pair:
    return (
        make(pureldap.LDAPAttributeDescription(attr), pureldap.LDAPAssertionValue(value)),
        ours(attr, value),
    )


def _substrings(attr: str, initial: bytes | None, middle: list[bytes], final: bytes | None) -> Pair:
    parts: list[Any] = []
    if initial is not None:
        parts.append(pureldap.LDAPFilter_substrings_initial(initial))
    parts.extend(pureldap.LDAPFilter_substrings_any(m) for m in middle)
    if final is not None:
        parts.append(pureldap.LDAPFilter_substrings_final(final))
    if not parts:
        middle = [b"x"]
        parts.append(pureldap.LDAPFilter_substrings_any(b"x"))
    return (
        pureldap.LDAPFilter_substrings(type=attr, substrings=parts),
        Substrings(attr, initial, tuple(middle), final),
    )


def _extensible(rule: str | None, attr: str | None, value: bytes, dn_attributes: bool) -> Pair:
    if rule is None and attr is None:
        attr = "cn"
    return (
        pureldap.LDAPFilter_extensibleMatch(
            matchingRule=rule, type=attr, matchValue=value, dnAttributes=dn_attributes
        ),
        Extensible(rule, attr, value, dn_attributes),
    )


def filters(
    attributes: st.SearchStrategy[str], values: st.SearchStrategy[bytes]
) -> st.SearchStrategy[Pair]:
    """Filters of every choice, nested, over ``attributes`` asserting ``values``."""
    leaves = st.one_of(
        st.builds(lambda a: (pureldap.LDAPFilter_present(a), Present(a)), attributes),
        st.builds(
            _ava, st.just(pureldap.LDAPFilter_equalityMatch), st.just(Equality), attributes, values
        ),
        st.builds(
            _ava,
            st.just(pureldap.LDAPFilter_greaterOrEqual),
            st.just(GreaterOrEqual),
            attributes,
            values,
        ),
        st.builds(
            _ava, st.just(pureldap.LDAPFilter_lessOrEqual), st.just(LessOrEqual), attributes, values
        ),
        st.builds(
            _ava, st.just(pureldap.LDAPFilter_approxMatch), st.just(Approx), attributes, values
        ),
        st.builds(
            _substrings,
            attributes,
            st.none() | values,
            st.lists(values.filter(bool), max_size=3),
            st.none() | values,
        ),
        st.builds(
            _extensible,
            st.none() | st.sampled_from(["2.5.13.2", "caseExactMatch", "1.2.3.4.5"]),
            st.none() | attributes,
            values,
            st.booleans(),
        ),
    )
    return st.recursive(
        leaves,
        lambda children: st.one_of(
            st.lists(children, min_size=1, max_size=4).map(_and),
            st.lists(children, min_size=1, max_size=4).map(_or),
            children.map(_not),
        ),
        max_leaves=12,
    )


def _and(children: list[Pair]) -> Pair:
    return pureldap.LDAPFilter_and([c[0] for c in children]), And(tuple(c[1] for c in children))


def _or(children: list[Pair]) -> Pair:
    return pureldap.LDAPFilter_or([c[0] for c in children]), Or(tuple(c[1] for c in children))


def _not(child: Pair) -> Pair:
    return pureldap.LDAPFilter_not(child[0]), Not(child[1])


FILTERS = filters(ATTRIBUTES, VALUES)


def _search(
    base: str, scope: int, deref: int, size: int, time: int, types_only: bool,
    flt: Pair, attributes: list[str],
) -> Pair:  # fmt: skip
    op = pureldap.LDAPSearchRequest(
        baseObject=base.encode(),
        scope=scope,
        derefAliases=deref,
        sizeLimit=size,
        timeLimit=time,
        typesOnly=types_only,
        filter=flt[0],
        attributes=[a.encode() for a in attributes],
    )
    ours = SearchRequest(base, scope, deref, size, time, types_only, flt[1], tuple(attributes))
    return op, ours


def _attribute_list(attributes: list[tuple[str, list[bytes]]]) -> list[Any]:
    return [
        pureber.BERSequence(
            [
                pureldap.LDAPAttributeDescription(name),
                pureber.BERSet([pureldap.LDAPAttributeValue(v) for v in values]),
            ]
        )
        for name, values in attributes
    ]


def _add(dn: str, attributes: list[tuple[str, list[bytes]]]) -> Pair:
    return (
        pureldap.LDAPAddRequest(entry=dn.encode(), attributes=_attribute_list(attributes)),
        AddRequest(dn, tuple((name, tuple(values)) for name, values in attributes)),
    )


def _compare(dn: str, attr: str, value: bytes) -> Pair:
    ava = pureldap.LDAPAttributeValueAssertion(
        pureldap.LDAPAttributeDescription(attr), pureldap.LDAPAssertionValue(value)
    )
    return pureldap.LDAPCompareRequest(dn.encode(), ava), CompareRequest(dn, attr, value)


def _modify_dn(dn: str, rdn: str, delete_old: bool, superior: str | None) -> Pair:
    op = pureldap.LDAPModifyDNRequest(
        dn.encode(),
        rdn.encode(),
        delete_old,
        newSuperior=None if superior is None else superior.encode(),
    )
    return op, ModifyDNRequest(dn, rdn, delete_old, superior)


def _extended(oid: str, value: bytes | None) -> Pair:
    op = pureldap.LDAPExtendedRequest(requestName=oid.encode(), requestValue=value)
    return op, ExtendedRequest(oid, value)


REQUESTS: st.SearchStrategy[Pair] = st.one_of(
    st.builds(
        lambda dn, pw: (
            pureldap.LDAPBindRequest(dn=dn.encode(), auth=pw),
            BindRequest(3, dn, SimpleAuth(pw)),
        ),
        DNS,
        st.binary(max_size=70),
    ),
    st.builds(
        _search,
        DNS,
        st.integers(0, 2),
        st.integers(0, 3),
        st.integers(0, MAX_INT),
        st.integers(0, MAX_INT),
        st.booleans(),
        FILTERS,
        st.lists(ATTRIBUTES | st.sampled_from(["*", "+", "1.1"]), max_size=5),
    ),
    st.builds(
        _add,
        DNS,
        st.lists(st.tuples(ATTRIBUTES, st.lists(VALUES, min_size=1, max_size=3)), max_size=4),
    ),
    st.builds(lambda dn: (pureldap.LDAPDelRequest(entry=dn.encode()), DelRequest(dn)), DNS),
    st.builds(_compare, DNS, ATTRIBUTES, VALUES),
    st.builds(_modify_dn, DNS, DNS, st.booleans(), st.none() | DNS),
    st.builds(
        lambda i: (pureldap.LDAPAbandonRequest(id=i), AbandonRequest(i)), st.integers(0, MAX_INT)
    ),
    st.builds(
        _extended,
        st.sampled_from(
            [
                "1.3.6.1.4.1.4203.1.11.3",
                "1.3.6.1.4.1.4203.1.11.1",
                "1.3.6.1.4.1.1466.20037",
                "1.2.3",
            ]
        ),
        st.none() | st.binary(max_size=40),
    ),
)


def encode(op: Any, message_id: int) -> bytes:
    data: bytes = pureldap.LDAPMessage(op, id=message_id).toWire()
    return data


@st.composite
def valid_messages(draw: st.DrawFn) -> tuple[bytes, LDAPMessage]:
    """A request's wire bytes (ldaptor's encoding) and the message they mean."""
    op, ours = draw(REQUESTS)
    message_id = draw(st.integers(1, MAX_INT))
    request: Request = ours
    return encode(op, message_id), LDAPMessage(message_id, request)


#: Tags worth swapping in: response protocolOps, unknown applications, universal types.
ODD_TAGS = [
    0x61,
    0x64,
    0x65,
    0x67,
    0x78,
    0x79,
    0x7F,
    0x5F,
    0x01,
    0x04,
    0x30,
    0x31,
    0xA0,
    0xBF,
    0x00,
]


@st.composite
def mutated(draw: st.DrawFn, pdu: bytes) -> bytes:
    """``pdu`` damaged one to three times."""
    data = bytearray(pdu)
    for _ in range(draw(st.integers(1, 3))):
        kind = draw(
            st.sampled_from(["flip", "set", "insert", "delete", "truncate", "tag", "length"])
        )
        if not data:
            data = bytearray(b"\x30")
        at = draw(st.integers(0, len(data) - 1))
        if kind == "flip":
            data[at] ^= 1 << draw(st.integers(0, 7))
        elif kind == "set":
            data[at] = draw(st.integers(0, 255))
        elif kind == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=8))
        elif kind == "delete":
            del data[at : at + draw(st.integers(1, 8))]
        elif kind == "truncate":
            del data[at:]
        elif kind == "tag":
            data[at] = draw(st.sampled_from(ODD_TAGS))
        else:  # a length octet lied about: long forms, indefinite, huge
            data[at : at + 1] = draw(
                st.sampled_from(
                    [
                        b"\x80",
                        b"\x84\xff\xff\xff\xff",
                        b"\x81\x00",
                        b"\x82\x7f\xff",
                        b"\x89" + b"\xff" * 9,
                    ]
                )
            )
    return bytes(data)


@st.composite
def mutated_messages(draw: st.DrawFn) -> bytes:
    pdu, _ = draw(valid_messages())
    result: bytes = draw(mutated(pdu))
    return result


def filter_values(
    attributes: st.SearchStrategy[str] = ATTRIBUTES, values: st.SearchStrategy[bytes] = VALUES
) -> st.SearchStrategy[Filter]:
    """Our Filter values alone (for the resolver and the SQL compiler)."""
    return filters(attributes, values).map(lambda pair: pair[1])
