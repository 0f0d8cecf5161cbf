"""What a filter means: resolution to predicates per kind, and evaluation of static
entries, both with RFC 4511's three-valued logic."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from fakes import group, holds, user
from ldaptor.ldapfilter import parseFilter
from ldaptor.protocols import pureldap

from ldapsrv.directory import predicates as p
from ldapsrv.directory.dit import Dit, Kind
from ldapsrv.directory.entries import Renderer, Selection, static_attribute_map
from ldapsrv.directory.filtering import (
    FilterResolver,
    _simplify,
    evaluate,
    format_generalized_time,
    parse_generalized_time,
    parse_integer,
)
from ldapsrv.directory.filters import (
    And,
    Equality,
    Extensible,
    Filter,
    Not,
    Or,
    Present,
)
from ldapsrv.directory.schema import load_schema
from ldapsrv.ldap.codec import decode_message
from ldapsrv.ldap.messages import SearchRequest

BASE = "dc=example,dc=org"
SCHEMA = load_schema()
DIT = Dit(BASE)
RESOLVER = FilterResolver(SCHEMA, DIT)
U, G = Kind.USER, Kind.GROUP


def f(text: str) -> Filter:
    """A filter from its RFC 4515 text, through ldaptor's encoder and our decoder."""
    op = pureldap.LDAPSearchRequest(baseObject=b"", filter=parseFilter(text))
    request = decode_message(pureldap.LDAPMessage(op, id=1).toWire()).request
    assert isinstance(request, SearchRequest)
    return request.filter


def resolve(text: str, kind: Kind) -> p.Predicate:
    return RESOLVER.resolve(f(text), kind)


# -- SSSD's filters (DESIGN.md section 2) --------------------------------------------


def test_sssd_user_lookup_by_name() -> None:
    text = "(&(uid=alice)(objectClass=posixAccount)(uid=*)(&(uidNumber=*)(!(uidNumber=0))))"
    assert resolve(text, U) == p.AllOf(
        (
            p.FieldEquals("name", "alice"),
            p.FieldPresent("name"),
            p.AllOf((p.FieldPresent("uid_number"), p.Negation(p.FieldEquals("uid_number", 0)))),
        )
    )
    assert resolve(text, G) == p.FALSE


def test_sssd_user_lookup_by_number_compares_integers() -> None:
    assert resolve("(&(uidNumber=010002)(objectClass=posixAccount))", U) == p.FieldEquals(
        "uid_number", 10002
    )


def test_sssd_rfc2307bis_group_lookup_by_member_dn() -> None:
    text = f"(&(member=cn=alice,ou=users,{BASE})(objectClass=posixGroup)(cn=*))"
    assert resolve(text, G) == p.AllOf((p.HasMember("alice"), p.FieldPresent("name")))
    assert resolve(text, U) == p.FALSE
    uid_form = "(member=UID=Alice,OU=Users,DC=Example,DC=Org)"
    assert resolve(uid_form, G) == p.HasMember("Alice")


def test_sssd_rfc2307_group_lookup_by_member_uid() -> None:
    text = "(&(memberUid=alice)(objectClass=posixGroup)(cn=*)(&(gidNumber=*)(!(gidNumber=0))))"
    assert resolve(text, G) == p.AllOf(
        (
            p.HasMember("alice"),
            p.FieldPresent("name"),
            p.AllOf((p.FieldPresent("gid_number"), p.Negation(p.FieldEquals("gid_number", 0)))),
        )
    )


def test_sudo_role_search_matches_nothing_of_either_kind() -> None:
    text = "(&(objectClass=sudoRole)(|(sudoUser=alice)(sudoUser=ALL)(sudoHost=*)))"
    assert resolve(text, U) == p.FALSE
    assert resolve(text, G) == p.FALSE


@pytest.mark.parametrize("attr", ["memberuid", "MEMBERUID", "memberUid", "1.3.6.1.1.1.1.12"])
def test_attribute_names_in_any_case_or_as_oid(attr: str) -> None:
    # (built directly: ldaptor's text parser does not accept OIDs as attribute names)
    assert RESOLVER.resolve(Equality(attr, b"alice"), G) == p.HasMember("alice")


# -- three-valued logic ----------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "(sudoUser=alice)",
        "(!(sudoUser=alice))",
        "(sudoUser=*)",
        "(!(!(sudoUser=*)))",
        "(uidNumber=abc)",
        "(!(uidNumber=abc))",
        "(uidNumber>=ten)",
        "(cn>=a)",
        "(cn:1.2.3.4:=alice)",
        "(!(cn:nosuchMatch:=alice))",
        "(uidNumber=1*)",
        "(createTimestamp>=yesterday)",
    ],
)
def test_undefined_for_users(text: str) -> None:
    assert resolve(text, U) == p.UNDEFINED


def test_undefined_survives_and_or_when_it_can_change_the_result() -> None:
    assert resolve("(&(sudoUser=x)(uid=a))", U) == p.AllOf(
        (p.FieldEquals("name", "a"), p.UNDEFINED)
    )
    assert resolve("(|(sudoUser=x)(uid=a))", U) == p.AnyOf(
        (p.FieldEquals("name", "a"), p.UNDEFINED)
    )
    # ... and is absorbed where it cannot
    assert resolve("(&(sudoUser=x)(objectClass=sudoRole))", U) == p.FALSE
    assert resolve("(|(sudoUser=x)(objectClass=posixAccount))", U) == p.TRUE


def test_invalid_assertion_value_is_undefined_even_where_the_attribute_is_absent() -> None:
    assert resolve("(!(uidNumber=abc))", G) == p.UNDEFINED


def test_ordering_without_an_ordering_rule_is_undefined_whether_or_not_the_kind_has_it() -> None:
    # Found by tests/fuzz/test_filter_fuzz.py: (!(uid>=x)) matched every group.
    assert resolve("(!(uid>=alice))", U) == p.UNDEFINED
    assert resolve("(!(uid>=alice))", G) == p.UNDEFINED
    assert resolve("(!(mail<=x))", G) == p.UNDEFINED
    assert resolve("(!(uidNumber>=5))", G) == p.TRUE  # orderable, absent: FALSE, negated


def test_evaluate_treats_invalid_assertion_values_and_ordering_as_the_resolver_does() -> None:
    # Found by tests/fuzz/test_filter_fuzz.py.
    attrs = {"hassubordinates": ["FALSE"], "createtimestamp": ["20240102030405Z"]}
    assert evaluate(f("(hasSubordinates=Alice)"), attrs, SCHEMA) is None
    assert evaluate(f("(!(hasSubordinates=Alice))"), attrs, SCHEMA) is None
    assert evaluate(f("(hasSubordinates=false)"), attrs, SCHEMA) is True
    assert evaluate(f("(createTimestamp>=20240101000000Z)"), attrs, SCHEMA) is True
    assert evaluate(f("(createTimestamp<=20240101000000Z)"), attrs, SCHEMA) is False
    assert evaluate(f("(cn>=a)"), {"cn": ["b"]}, SCHEMA) is None


def test_known_attribute_the_kind_lacks_is_false_and_its_negation_true() -> None:
    assert resolve("(uidNumber=5)", G) == p.FALSE
    assert resolve("(!(uidNumber=5))", G) == p.TRUE
    assert resolve("(description=x)", U) == p.FALSE
    assert resolve("(member=*)", U) == p.FALSE


@pytest.mark.parametrize(
    ("pred", "simplified"),
    [
        (p.AllOf(()), p.TRUE),
        (p.AnyOf(()), p.FALSE),
        (p.AllOf((p.TRUE, p.FieldPresent("mail"))), p.FieldPresent("mail")),
        (p.AllOf((p.UNDEFINED, p.FALSE)), p.FALSE),
        (p.AnyOf((p.UNDEFINED, p.TRUE)), p.TRUE),
        (p.AllOf((p.UNDEFINED, p.TRUE)), p.UNDEFINED),
        (p.AnyOf((p.UNDEFINED, p.FALSE)), p.UNDEFINED),
        (p.Negation(p.UNDEFINED), p.UNDEFINED),
        (p.Negation(p.TRUE), p.FALSE),
        (p.Negation(p.Negation(p.FieldPresent("mail"))), p.FieldPresent("mail")),
        (
            p.Negation(p.AnyOf((p.FALSE, p.FieldPresent("mail")))),
            p.Negation(p.FieldPresent("mail")),
        ),
    ],
)
def test_simplification_follows_kleene_logic(pred: p.Predicate, simplified: p.Predicate) -> None:
    assert _simplify(pred) == simplified


def test_absolute_true_and_false_filters() -> None:
    assert RESOLVER.resolve(And(()), U) == p.TRUE
    assert RESOLVER.resolve(Or(()), U) == p.FALSE
    assert RESOLVER.resolve(Not(Or(())), G) == p.TRUE


# -- per-attribute meaning ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "kind", "expected"),
    [
        ("(objectClass=INETORGPERSON)", U, p.TRUE),
        ("(objectClass=posixGroup)", U, p.FALSE),
        ("(objectClass=groupOfNames)", G, p.TRUE),
        ("(objectClass=*)", G, p.TRUE),
        ("(structuralObjectClass=inetOrgPerson)", U, p.TRUE),
        ("(structuralObjectClass=inetOrgPerson)", G, p.FALSE),
        ("(hasSubordinates=FALSE)", U, p.TRUE),
        ("(hasSubordinates=maybe)", U, p.UNDEFINED),
        ("(subschemaSubentry=CN=SUBSCHEMA)", G, p.TRUE),
        ("(cn=al*ce)", U, p.FieldSubstrings("name", "al", (), "ce")),
        ("(mail=*@*.org)", U, p.FieldSubstrings("mail", None, ("@",), ".org")),
        (
            "(homeDirectory=/home/*)",
            U,
            p.FieldSubstrings("home_directory", "/home/", (), None, True),
        ),
        ("(uidNumber>=10000)", U, p.FieldCompare("uid_number", ">=", 10000)),
        ("(gidNumber<=-1)", G, p.FieldCompare("gid_number", "<=", -1)),
        ("(cn~=Alice)", U, p.FieldEquals("name", "Alice")),
        ("(homeDirectory=/home/a)", U, p.FieldEquals("home_directory", "/home/a", True)),
        ("(memberOf=*)", U, p.InAnyGroup()),
        ("(member=*)", G, p.HasAnyMember()),
        (f"(memberOf=cn=admins,ou=groups,{BASE})", U, p.InGroup("admins")),
        (f"(memberOf=cn=admins,ou=users,{BASE})", U, p.FALSE),
        ("(memberOf=not a dn)", U, p.UNDEFINED),
        (f"(member=cn=admins,ou=groups,{BASE})", G, p.FALSE),
        (f"(entryDN=cn=alice,ou=users,{BASE})", U, p.FieldEquals("name", "alice")),
        (f"(entryDN=cn=alice,ou=users,{BASE})", G, p.FALSE),
        (
            "(entryUUID=0A0B0C0D-0000-4000-8000-000000000001)",
            U,
            p.FieldEquals("uuid", "0a0b0c0d-0000-4000-8000-000000000001", True),
        ),
    ],
)
def test_attribute_meaning(text: str, kind: Kind, expected: p.Predicate) -> None:
    assert resolve(text, kind) == expected


def test_generalized_time_is_compared_as_an_instant() -> None:
    assert resolve("(createTimestamp>=202401011200+0200)", U) == p.FieldCompare(
        "created", ">=", datetime(2024, 1, 1, 10, 0, tzinfo=UTC)
    )
    assert resolve("(modifyTimestamp=20240102030405Z)", G) == p.FieldEquals(
        "modified", datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC)
    )


@pytest.mark.parametrize(
    ("text", "kind", "expected"),
    [
        ("(cn:caseExactMatch:=Alice)", U, p.FieldEquals("name", "Alice", True)),
        ("(cn:2.5.13.5:=Alice)", G, p.FieldEquals("name", "Alice", True)),
        ("(uid:caseIgnoreMatch:=ALICE)", U, p.FieldEquals("name", "ALICE", False)),
        ("(cn:=alice)", U, p.FieldEquals("name", "alice")),
        ("(uidNumber:integerMatch:=7)", U, p.FieldEquals("uid_number", 7)),
        ("(ou:dn:=users)", U, p.TRUE),
        ("(ou:dn:=users)", G, p.FALSE),
        ("(OU:dn:=GROUPS)", G, p.TRUE),
        ("(ou:dn:caseExactMatch:=USERS)", U, p.FALSE),
        ("(dc:dn:=example)", G, p.TRUE),
        (
            "(:caseIgnoreMatch:=x)",
            G,
            p.AnyOf((p.FieldEquals("name", "x"), p.FieldEquals("description", "x"))),
        ),
        ("(:dn:caseIgnoreMatch:=users)", U, p.TRUE),
        ("(sudoUser:dn:=x)", U, p.UNDEFINED),
    ],
)
def test_extensible_match(text: str, kind: Kind, expected: p.Predicate) -> None:
    assert resolve(text, kind) == expected


def test_extensible_dn_match_on_the_leaf_names_the_entry() -> None:
    pred = resolve("(cn:dn:=alice)", U)
    assert holds(pred, user(1, "alice")) is True
    assert holds(pred, user(2, "bob")) is False


def test_non_utf8_assertion_values_are_undefined() -> None:
    assert RESOLVER.resolve(Equality("cn", b"\xff"), U) == p.UNDEFINED
    assert RESOLVER.resolve(Extensible(None, "cn", b"\xff", True), U) == p.UNDEFINED


# -- resolution and static evaluation agree --------------------------------------------

ALICE = user(1, "alice", groups=("admins",), gecos=None)
ADMINS = group(7, "admins", members=("alice",), description="Admins")
EMPTY = group(8, "empty")


def rendered(kind: Kind, record: object) -> dict[str, list[str]]:
    renderer = Renderer(DIT, SCHEMA, Selection.parse(["*", "+"], SCHEMA))
    _, attrs = renderer.user(record) if kind is U else renderer.group(record)  # type: ignore[arg-type]
    return {n.lower(): [v.decode() for v in values] for n, values in attrs}


USER_FILTERS = [
    "(uid=alice)",
    "(cn=ALICE)",
    "(uid=*)",
    "(objectClass=posixAccount)",
    "(objectclass=INETORGPERSON)",
    "(objectClass=sudoRole)",
    "(uidNumber=10001)",
    "(uidNumber>=10001)",
    "(uidNumber<=10000)",
    "(!(uidNumber=0))",
    "(uidNumber=abc)",
    "(sudoUser=x)",
    "(!(sudoUser=x))",
    "(|(sudoUser=x)(uid=alice))",
    "(&(sudoUser=x)(uid=alice))",
    "(!(&(sudoUser=x)(uid=bob)))",
    "(cn=al*)",
    "(cn=*LI*)",
    "(cn=a*e)",
    "(cn=al*ic*e)",
    "(mail=*@example.org)",
    f"(memberOf=cn=admins,ou=groups,{BASE})",
    "(memberOf=CN=Admins,OU=Groups,DC=Example,DC=Org)",
    f"(memberOf=cn=other,ou=groups,{BASE})",
    "(memberOf=*)",
    "(gecos=*)",
    "(!(gecos=*))",
    "(givenName~=alice)",
    "(cn:caseExactMatch:=alice)",
    "(cn:caseExactMatch:=Alice)",
    "(cn:2.5.13.2:=ALICE)",
    "(ou:dn:=users)",
    "(ou:dn:=groups)",
    "(cn:unknownRule:=x)",
    "(uid:dn:=alice)",
    f"(entryDN=cn=alice,ou=users,{BASE})",
    "(hasSubordinates=FALSE)",
    "(structuralObjectClass=inetOrgPerson)",
    f"(member=cn=alice,ou=users,{BASE})",
    "(homeDirectory=/HOME/ALICE)",
    "(homeDirectory=/home/alice)",
    "(loginShell=/bin/bash)",
    "(entryUUID=00000000-0000-4000-8000-000000000001)",
    "(createTimestamp=20240102030405Z)",
]
GROUP_FILTERS = [
    "(cn=admins)",
    "(memberUid=alice)",
    f"(member=cn=ALICE,ou=users,{BASE})",
    "(member=*)",
    "(!(member=*))",
    "(gidNumber=10007)",
    "(objectClass=posixGroup)",
    "(description=*)",
    "(description=admins)",
    "(!(description=*))",
    "(ou:dn:=groups)",
    "(memberUid=bob)",
    "(uid=alice)",
    "(!(uid=alice))",
]


@pytest.mark.parametrize("text", USER_FILTERS)
def test_user_predicate_agrees_with_evaluating_the_rendered_entry(text: str) -> None:
    attrs = rendered(U, ALICE)
    dn_values = {**DIT.static_dn_values(U), "cn": ("alice",)}
    expected = evaluate(f(text), attrs, SCHEMA, dn_values)
    assert holds(resolve(text, U), ALICE) == expected


@pytest.mark.parametrize("text", GROUP_FILTERS)
@pytest.mark.parametrize("record", [ADMINS, EMPTY], ids=["admins", "empty"])
def test_group_predicate_agrees_with_evaluating_the_rendered_entry(
    text: str, record: object
) -> None:
    attrs = rendered(G, record)
    expected = evaluate(f(text), attrs, SCHEMA, DIT.static_dn_values(G))
    assert holds(resolve(text, G), record) == expected  # type: ignore[arg-type]


# -- static evaluation -------------------------------------------------------------------

USERS_OU = static_attribute_map(DIT.users_entry)


@pytest.mark.parametrize(
    ("text", "result"),
    [
        ("(objectClass=*)", True),
        ("(objectclass=ORGANIZATIONALUNIT)", True),
        ("(ou=USERS)", True),
        ("(ou=us*rs)", True),
        ("(ou=use*ers)", False),  # pieces may not overlap
        ("(cn=*)", False),
        ("(!(cn=*))", True),
        ("(sudoUser=*)", None),
        ("(!(sudoUser=*))", None),
        ("(&(sudoUser=*)(cn=x))", False),
        ("(|(sudoUser=*)(ou=users))", True),
        ("(|(sudoUser=*)(cn=x))", None),
        ("(ou>=a)", None),
        ("(ou:caseExactMatch:=USERS)", False),
        ("(ou:caseIgnoreMatch:=USERS)", True),
        ("(ou:bogusMatch:=users)", None),
        (f"(entryDN=OU=Users,DC=Example,{BASE.split(',')[1].upper()})", True),
        ("(entryDN=not a dn)", None),
        ("(hasSubordinates=TRUE)", True),
        ("(structuralObjectClass=organizationalUnit)", True),
        ("(subschemaSubentry=cn=subschema)", True),
    ],
)
def test_evaluate_a_container(text: str, result: bool | None) -> None:
    assert evaluate(f(text), USERS_OU, SCHEMA, USERS_OU) is result


def test_evaluate_integers_as_integers() -> None:
    attrs = {"supportedldapversion": ["3"]}
    assert evaluate(f("(supportedLDAPVersion=03)"), attrs, SCHEMA) is True
    assert evaluate(f("(supportedLDAPVersion>=10)"), attrs, SCHEMA) is False
    assert evaluate(f("(supportedLDAPVersion<=10)"), attrs, SCHEMA) is True
    assert evaluate(f("(supportedLDAPVersion>=x)"), attrs, SCHEMA) is None


def test_evaluate_present_on_an_empty_and_or() -> None:
    assert evaluate(And(()), {}, SCHEMA) is True
    assert evaluate(Or(()), {}, SCHEMA) is False
    assert evaluate(Present("cn"), {"cn": ["x"]}, SCHEMA) is True


# -- value syntaxes ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "moment"),
    [
        (b"20240101120000Z", datetime(2024, 1, 1, 12, 0, tzinfo=UTC)),
        (b"2024010112Z", datetime(2024, 1, 1, 12, 0, tzinfo=UTC)),
        (b"20240101120000.123Z", datetime(2024, 1, 1, 12, 0, tzinfo=UTC)),
        (b"20240101120000-0130", datetime(2024, 1, 1, 13, 30, tzinfo=UTC)),
        (b"20241301000000Z", None),
        (b"20240101120000", None),
        (b"yesterday", None),
    ],
)
def test_parse_generalized_time(text: bytes, moment: datetime | None) -> None:
    assert parse_generalized_time(text) == moment


def test_parse_generalized_time_with_an_hour_only_offset() -> None:
    assert parse_generalized_time(b"20240101120000+02") == datetime(2024, 1, 1, 10, tzinfo=UTC)


def test_format_generalized_time_is_utc() -> None:
    from datetime import timedelta, timezone

    moment = datetime(2024, 1, 1, 12, 0, tzinfo=timezone(timedelta(hours=2)))
    assert format_generalized_time(moment) == "20240101100000Z"


@pytest.mark.parametrize(
    ("text", "number"),
    [
        (b"42", 42),
        (b" 42 ", 42),
        (b"-7", -7),
        (b"+7", None),
        (b"4 2", None),
        (b"", None),
        (b"\xff", None),
        ("٣".encode(), None),
    ],
)
def test_parse_integer(text: bytes, number: int | None) -> None:
    assert parse_integer(text) == number
