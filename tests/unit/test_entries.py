"""Records -> entries: attribute selection (*, +, 1.1, names in any case), typesOnly."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from fakes import group, user

from ldapsrv.directory.dit import Dit
from ldapsrv.directory.entries import Renderer, Selection, static_attribute_map
from ldapsrv.directory.schema import load_schema

SCHEMA = load_schema()
DIT = Dit("dc=example,dc=org")
ALICE = user(
    1,
    "alice",
    groups=("admins", "staff"),
    uuid="3f2b8c4e-0000-4000-8000-000000000001",
    created=datetime(2024, 5, 6, 7, 8, 9, tzinfo=UTC),
    mail=None,
    gecos="Alice Example",
)
ADMINS = group(7, "admins", members=("alice", "bob"), description=None)

USER_ATTRS = [
    "objectClass",
    "cn",
    "uid",
    "sn",
    "givenName",
    "displayName",
    "uidNumber",
    "gidNumber",
    "homeDirectory",
    "loginShell",
    "gecos",
    "memberOf",
]
OPERATIONAL = [
    "entryUUID",
    "entryDN",
    "createTimestamp",
    "modifyTimestamp",
    "structuralObjectClass",
    "subschemaSubentry",
    "hasSubordinates",
]


def render_user(*requested: str, types_only: bool = False) -> dict[str, list[bytes]]:
    renderer = Renderer(DIT, SCHEMA, Selection.parse(requested, SCHEMA, types_only))
    dn, attrs = renderer.user(ALICE)
    assert dn == "cn=alice,ou=users,dc=example,dc=org"
    return {name: list(values) for name, values in attrs}


def render_group(*requested: str) -> dict[str, list[bytes]]:
    renderer = Renderer(DIT, SCHEMA, Selection.parse(requested, SCHEMA))
    dn, attrs = renderer.group(ADMINS)
    assert dn == "cn=admins,ou=groups,dc=example,dc=org"
    return {name: list(values) for name, values in attrs}


@pytest.mark.parametrize("requested", [(), ("*",)])
def test_no_list_or_star_gives_user_attributes_only(requested: tuple[str, ...]) -> None:
    assert list(render_user(*requested)) == USER_ATTRS  # mail is absent: no value


def test_plus_gives_operational_attributes_only() -> None:
    assert list(render_user("+")) == OPERATIONAL


def test_star_and_plus_give_everything() -> None:
    assert list(render_user("*", "+")) == USER_ATTRS + OPERATIONAL


def test_one_one_gives_no_attributes() -> None:
    assert render_user("1.1") == {}


def test_one_one_with_names_gives_the_names() -> None:
    assert list(render_user("1.1", "uid")) == ["uid"]


@pytest.mark.parametrize(
    ("requested", "names"),
    [
        (("UIDNUMBER", "memberof"), ["uidNumber", "memberOf"]),
        (("commonName",), ["cn"]),
        (("2.5.4.3",), ["cn"]),
        (("cn;lang-en",), ["cn"]),
        (("uid", "uid", "UID"), ["uid"]),
        (("sudoUser", "mail"), []),
        (("entryuuid",), ["entryUUID"]),
        (("*", "entryDN"), [*USER_ATTRS, "entryDN"]),
        (("+", "cn"), ["cn", *OPERATIONAL]),
    ],
)
def test_named_attributes_in_any_case_alias_or_oid(
    requested: tuple[str, ...], names: list[str]
) -> None:
    assert list(render_user(*requested)) == names


def test_user_values() -> None:
    attrs = render_user("*", "+")
    assert attrs["objectClass"] == [
        b"top",
        b"person",
        b"organizationalPerson",
        b"inetOrgPerson",
        b"posixAccount",
    ]
    assert attrs["cn"] == attrs["uid"] == [b"alice"]
    assert attrs["uidNumber"] == [b"10001"]
    assert attrs["gecos"] == [b"Alice Example"]
    assert attrs["memberOf"] == [
        b"cn=admins,ou=groups,dc=example,dc=org",
        b"cn=staff,ou=groups,dc=example,dc=org",
    ]
    assert attrs["entryUUID"] == [b"3f2b8c4e-0000-4000-8000-000000000001"]
    assert attrs["entryDN"] == [b"cn=alice,ou=users,dc=example,dc=org"]
    assert attrs["createTimestamp"] == [b"20240506070809Z"]
    assert attrs["structuralObjectClass"] == [b"inetOrgPerson"]
    assert attrs["subschemaSubentry"] == [b"cn=Subschema"]
    assert attrs["hasSubordinates"] == [b"FALSE"]


def test_group_values() -> None:
    attrs = render_group("*", "+")
    assert attrs["objectClass"] == [b"top", b"groupOfNames", b"posixGroup"]
    assert attrs["member"] == [
        b"cn=alice,ou=users,dc=example,dc=org",
        b"cn=bob,ou=users,dc=example,dc=org",
    ]
    assert attrs["memberUid"] == [b"alice", b"bob"]
    assert attrs["gidNumber"] == [b"10007"]
    assert "description" not in attrs
    assert attrs["structuralObjectClass"] == [b"groupOfNames"]


def test_group_without_members_has_no_member_attributes() -> None:
    renderer = Renderer(DIT, SCHEMA, Selection.parse(["member", "memberUid"], SCHEMA))
    assert renderer.group(group(9, "empty"))[1] == []


def test_attributes_of_the_other_kind_are_simply_absent() -> None:
    assert render_group("uidNumber", "memberOf", "cn") == {"cn": [b"admins"]}


def test_types_only_gives_names_without_values_and_skips_absent_attributes() -> None:
    attrs = render_user("cn", "mail", "memberOf", types_only=True)
    assert attrs == {"cn": [], "memberOf": []}


@pytest.mark.parametrize("requested", [("userPassword",), ("*", "+"), ("authPassword",)])
def test_secrets_are_never_rendered(requested: tuple[str, ...]) -> None:
    attrs = render_user(*requested)
    assert not {"userPassword", "authPassword"} & set(attrs)


def test_names_with_special_characters_are_escaped_in_dns() -> None:
    renderer = Renderer(DIT, SCHEMA, Selection.parse(["entryDN"], SCHEMA))
    dn, attrs = renderer.user(user(2, "a,b"))
    assert dn == "cn=a\\,b,ou=users,dc=example,dc=org"
    assert attrs == [("entryDN", [dn.encode()])]


def test_static_entries_default_and_operational() -> None:
    renderer = Renderer(DIT, SCHEMA, Selection.parse([], SCHEMA))
    dn, attrs = renderer.static(DIT.base_entry)
    assert dn == "dc=example,dc=org"
    assert attrs == [
        ("objectClass", [b"top", b"dcObject", b"organization"]),
        ("dc", [b"example"]),
        ("o", [b"example"]),
    ]
    renderer = Renderer(DIT, SCHEMA, Selection.parse(["+", "OU"], SCHEMA))
    dn, attrs = renderer.static(DIT.users_entry)
    assert dict(attrs) == {
        "ou": [b"users"],
        "entryDN": [b"ou=users,dc=example,dc=org"],
        "structuralObjectClass": [b"organizationalUnit"],
        "subschemaSubentry": [b"cn=Subschema"],
        "hasSubordinates": [b"TRUE"],
    }


def test_static_entries_types_only() -> None:
    renderer = Renderer(DIT, SCHEMA, Selection.parse(["ou"], SCHEMA, types_only=True))
    assert renderer.static(DIT.groups_entry)[1] == [("ou", ())]


def test_static_attribute_map_is_keyed_by_lower_case_names() -> None:
    assert static_attribute_map(DIT.base_entry) == {
        "objectclass": ["top", "dcObject", "organization"],
        "dc": ["example"],
        "o": ["example"],
        "entrydn": ["dc=example,dc=org"],
        "structuralobjectclass": ["organization"],
        "subschemasubentry": ["cn=Subschema"],
        "hassubordinates": ["TRUE"],
    }


def test_selection_parse() -> None:
    assert Selection.parse([], SCHEMA) == Selection(True, False, frozenset())
    assert Selection.parse([" * ", "+"], SCHEMA) == Selection(True, True, frozenset())
    selection = Selection.parse(["GivenName", "gn", "x-Unknown;binary"], SCHEMA, True)
    assert selection == Selection(False, False, frozenset({"givenname", "x-unknown"}), True)
    assert selection.wants("givenName", False)
    assert not selection.wants("cn", False)
