"""Distinguished names (RFC 4514): parsing, escaping, comparison."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ldapsrv.directory.dn import (
    DNError,
    escape_value,
    format_dn,
    is_descendant_or_self,
    normalize,
    parse_dn,
)


def test_parses_leaf_first_with_lower_case_types_and_original_values() -> None:
    assert parse_dn("CN=Alice,OU=Users,DC=Example,DC=Org") == (
        (("cn", "Alice"),),
        (("ou", "Users"),),
        (("dc", "Example"),),
        (("dc", "Org"),),
    )


def test_empty_and_blank_strings_are_the_root() -> None:
    assert parse_dn("") == ()
    assert parse_dn("   ") == ()


def test_spaces_around_separators_and_equals_are_ignored() -> None:
    assert parse_dn(" cn = alice , dc = org ") == ((("cn", "alice"),), (("dc", "org"),))


def test_semicolon_is_accepted_as_a_separator() -> None:
    assert parse_dn("cn=a;dc=b") == parse_dn("cn=a,dc=b")


@pytest.mark.parametrize(
    ("text", "value"),
    [
        (r"cn=a\,b", "a,b"),
        (r"cn=a\+b", "a+b"),
        (r"cn=\"q\"", '"q"'),
        (r"cn=\<x\>", "<x>"),
        (r"cn=a\\b", "a\\b"),
        (r"cn=a\;b", "a;b"),
        (r"cn=\#x", "#x"),
        (r"cn=\ padded\ ", " padded "),
        (r"cn=\41b", "Ab"),
        (r"cn=caf\c3\a9", "café"),
        (r"cn=a\20", "a "),
        ("cn=#0403616263", "abc"),
        ("cn=", ""),
    ],
)
def test_escapes_decode_to_the_value(text: str, value: str) -> None:
    assert parse_dn(text) == ((("cn", value),),)


def test_unescaped_trailing_spaces_are_not_part_of_the_value() -> None:
    assert parse_dn("cn=alice   ,dc=org")[0] == (("cn", "alice"),)


def test_equals_sign_in_a_value_needs_no_escape() -> None:
    # RFC 4514 section 3: '=' (%x3D) is in SUTF1, LUTF1 and TUTF1.
    assert parse_dn("cn=a=b,dc=org")[0] == (("cn", "a=b"),)


def test_hex_form_is_the_ber_encoding_of_the_value() -> None:
    assert parse_dn("cn=#04024869,dc=org")[0] == (("cn", "Hi"),)


def test_multi_valued_rdn_is_order_independent() -> None:
    assert parse_dn("uid=b+cn=a,dc=x") == parse_dn("cn=a+uid=b,dc=x")
    assert parse_dn("cn=a+uid=b,dc=x")[0] == (("cn", "a"), ("uid", "b"))


@pytest.mark.parametrize(
    "text",
    [
        "cn",
        "=alice",
        "cn=alice,",
        "cn=alice,,dc=org",
        "c n=alice",
        "cn=al<ice",
        'cn=a"b',
        "cn=a\\",
        "cn=a\\x",
        "cn=#6",
        "cn=#zz",
        "cn=#ff",
        "cn=\\ff",
        "cné=x",
        "cn=a\x00b",
    ],
)
def test_invalid_dns_raise_dn_error(text: str) -> None:
    with pytest.raises(DNError):
        parse_dn(text)


def test_normalize_folds_case_of_values() -> None:
    assert normalize(parse_dn("CN=ALICE,dc=ORG")) == normalize(parse_dn("cn=alice,DC=org"))
    assert normalize(parse_dn("cn=alice")) != normalize(parse_dn("cn=bob"))


@pytest.mark.parametrize(
    ("value", "escaped"),
    [
        ("plain", "plain"),
        ("a,b+c", "a\\,b\\+c"),
        (" lead", "\\ lead"),
        ("trail ", "trail\\ "),
        ("mid dle", "mid dle"),
        ("#hash", "\\#hash"),
        ("a#b", "a#b"),
        ('q"<>;=\\', 'q\\"\\<\\>\\;\\=\\\\'),
        ("nul\x00", "nul\\00"),
    ],
)
def test_escape_value(value: str, escaped: str) -> None:
    assert escape_value(value) == escaped


def test_format_dn_joins_rdns_and_multi_valued_rdns() -> None:
    dn = ((("cn", "a,b"), ("uid", "x")), (("dc", "org"),))
    assert format_dn(dn) == "cn=a\\,b+uid=x,dc=org"


@given(st.lists(st.text(max_size=12), min_size=1, max_size=4))
def test_format_then_parse_round_trips_any_value(values: list[str]) -> None:
    dn = tuple(((f"a{i}", v),) for i, v in enumerate(values))
    assert parse_dn(format_dn(dn)) == dn


def test_descendant_or_self() -> None:
    base = normalize(parse_dn("dc=example,dc=org"))
    assert is_descendant_or_self(base, base)
    assert is_descendant_or_self(normalize(parse_dn("cn=a,ou=users,DC=Example,dc=org")), base)
    assert not is_descendant_or_self(normalize(parse_dn("dc=org")), base)
    assert not is_descendant_or_self(normalize(parse_dn("cn=a,dc=other,dc=org")), base)
