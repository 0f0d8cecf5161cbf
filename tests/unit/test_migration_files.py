"""Reading LDIF and CSV files into people and groups, and writing LDIF back."""

from __future__ import annotations

import base64

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ldapsrv.migration.csvfile import parse_csv
from ldapsrv.migration.ldif import LdifError, format_entry, parse_ldif
from ldapsrv.migration.mapping import MappingError, map_entries

SSHA = "{SSHA}qh6gZ8IO1fj3yWgCHw5RcgiCGytZFS5o"

LLDAP = f"""\
version: 1
# lldap-style export: people under ou=people, groups with uniqueMember

dn: uid=alice,ou=people,dc=example,dc=com
objectClass: inetOrgPerson
objectClass: posixAccount
uid: alice
cn: Alice
 Liddell
mail: alice@example.com
userPassword:: {base64.b64encode(SSHA.encode()).decode()}
uidNumber: 2001
gidNumber: 2001

dn: uid=bob,ou=people,dc=example,dc=com
objectClass: person
uid: bob
sn: Builder
nsAccountLock: TRUE
userPassword: {{CRYPT}}Nmh2Zsq07ljHcydIagkFju8E

dn: cn=lldap_admin,ou=groups,dc=example,dc=com
objectClass: groupOfUniqueNames
cn: lldap_admin
uniqueMember: uid=alice,ou=people,dc=example,dc=com
uniqueMember: uid=bob,ou=people,dc=example,dc=com#'0101'B

dn: cn=readonly,dc=example,dc=com
objectClass: simpleSecurityObject
objectClass: organizationalRole
cn: readonly
"""


def test_ldif_folding_base64_and_comments_are_read() -> None:
    entries = parse_ldif(LLDAP)
    assert [e.dn for e in entries][:2] == [
        "uid=alice,ou=people,dc=example,dc=com",
        "uid=bob,ou=people,dc=example,dc=com",
    ]
    alice = entries[0]
    assert alice.line == 4
    assert alice.first("cn") == "AliceLiddell"  # a folded line joins without its space
    assert alice.values("userpassword") == [SSHA.encode()]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("dn: cn=a\nchangetype: modify\nreplace: cn\n", "line 2: change records"),
        ("cn: a\n", "line 1: a record must start with 'dn:'"),
        ("dn: cn=a\nphoto:< file:///etc/passwd\n", "line 2: photo refers to a URL"),
        ("dn: cn=a\ncn:: !!!\n", "line 2: cn has an invalid base64 value"),
        ("dn: cn=a\nno colon here\n", "line 2: expected 'attribute: value'"),
    ],
)
def test_malformed_ldif_names_its_line(text: str, message: str) -> None:
    with pytest.raises(LdifError, match=message):
        parse_ldif(text)


def test_written_ldif_reads_back_the_same_values() -> None:
    values = [b"plain", b" leading space", b"trailing ", b":colon", "Zoë".encode(), b"x" * 200]
    text = format_entry("cn=Zoë,dc=example,dc=org", [("description", values)])
    assert all(len(line) <= 76 for line in text.splitlines())
    (entry,) = parse_ldif(text)
    assert entry.dn == "cn=Zoë,dc=example,dc=org"
    assert entry.values("description") == values


def test_lldap_people_groups_and_skips_are_mapped() -> None:
    batch = map_entries(parse_ldif(LLDAP))
    alice, bob = batch.people
    assert (alice.name, alice.uid_number, alice.display_name) == ("alice", 2001, "AliceLiddell")
    assert alice.password_hash == SSHA
    assert bob.password_hash is None and bob.disabled is True
    (group,) = batch.groups
    assert (group.name, group.members) == ("lldap_admin", ("alice", "bob"))
    assert any("traditional DES crypt" in note and "bob" in note for note in batch.notes)
    assert any("cn=readonly" in note and "service-account" in note for note in batch.notes)


def test_base_dn_limits_the_import() -> None:
    batch = map_entries(parse_ldif(LLDAP), "ou=groups,dc=example,dc=com")
    assert batch.people == [] and [g.name for g in batch.groups] == ["lldap_admin"]


def test_every_bad_entry_is_reported_at_once() -> None:
    text = (
        "dn: uid=a b,dc=x\nobjectClass: posixAccount\nuid: a b\n\n"
        "dn: uid=c,dc=x\nobjectClass: posixAccount\nuid: c\nuidNumber: zero\n\n"
        "dn: cn=g,dc=x\nobjectClass: posixGroup\ncn: g\ngidNumber: 0\n"
    )
    with pytest.raises(MappingError) as failed:
        map_entries(parse_ldif(text))
    problems = failed.value.problems
    assert len(problems) == 3
    assert problems[0].startswith("line 1 (uid=a b,dc=x): account name 'a b'")
    assert "uidNumber 'zero' is not a number" in problems[1]
    assert "gidNumber 0 is not allowed" in problems[2]


def test_csv_rows_become_people_and_groups() -> None:
    text = (
        "uid,cn,mail,uidNumber,groups,password_hash\n"
        "alice,Alice Liddell,alice@example.org,2001,staff;admins,$6$salt$hash\n"
        "bob,,,,staff,\n"
    )
    batch = parse_csv(text)
    assert [p.name for p in batch.people] == ["alice", "bob"]
    assert batch.people[0].display_name == "Alice Liddell"
    assert batch.people[1].uid_number is None
    assert {g.name: g.members for g in batch.groups} == {
        "staff": ("alice", "bob"),
        "admins": ("alice",),
    }
    # a bare crypt string that is not a real hash is reported, not stored
    assert batch.people[0].password_hash is None
    assert any("alice" in note for note in batch.notes)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("uid,colour\nalice,red\n", "unknown column 'colour'"),
        ("mail\nx@y\n", "the uid column is required"),
        ("uid,uidNumber\nalice,-4\n", "line 2 (alice): uid_number '-4'"),
        ("uid,mail\nalice\n", "line 2: 1 cells, the header has 2"),
    ],
)
def test_bad_csv_names_the_line(text: str, message: str) -> None:
    with pytest.raises(MappingError) as failed:
        parse_csv(text)
    assert any(message in problem for problem in failed.value.problems), failed.value.problems


def test_two_entries_for_one_name_are_refused() -> None:
    text = (
        "dn: uid=alice,ou=a,dc=x\nobjectClass: posixAccount\nuid: alice\n\n"
        "dn: uid=Alice,ou=b,dc=x\nobjectClass: inetOrgPerson\nuid: Alice\n"
    )
    with pytest.raises(MappingError) as failed:
        map_entries(parse_ldif(text))
    assert failed.value.problems == [
        "line 5 (uid=Alice,ou=b,dc=x): person 'Alice' already comes from "
        "line 1 (uid=alice,ou=a,dc=x)"
    ]


def test_389ds_people_without_posix_classes_are_people() -> None:
    text = (
        "dn: uid=dave,ou=People,dc=x\nobjectClass: nsPerson\nobjectClass: nsAccount\n"
        "objectClass: nsOrgPerson\nuid: dave\ndisplayName: Dave\nnsUniqueId: 1-2-3-4\n"
        "nsAccountLock: false\n"
    )
    (dave,) = map_entries(parse_ldif(text)).people
    assert (dave.name, dave.display_name, dave.disabled) == ("dave", "Dave", False)


@given(
    st.lists(
        st.tuples(
            st.from_regex(r"[a-zA-Z][a-zA-Z0-9-]{0,15}", fullmatch=True),
            st.lists(st.binary(max_size=120), min_size=1, max_size=3),
        ),
        max_size=5,
    )
)
def test_any_written_entry_reads_back_unchanged(attributes: list[tuple[str, list[bytes]]]) -> None:
    text = format_entry("cn=x,dc=example,dc=org", attributes)
    (entry,) = parse_ldif(text)
    for name, values in attributes:
        assert all(value in entry.attributes[name.lower()] for value in values)
    assert sum(len(v) for v in entry.attributes.values()) == sum(len(v) for _, v in attributes)
