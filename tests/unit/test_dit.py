"""The shape of the tree: naming, and what each (base, scope) search covers."""

from __future__ import annotations

import pytest

from ldapsrv.directory.dit import (
    Dit,
    Kind,
    NoSuchBase,
    SearchPlan,
    StoredEntries,
    scope_name,
)
from ldapsrv.directory.dn import DNError, parse_dn
from ldapsrv.ldap.messages import SCOPE_BASE, SCOPE_ONE, SCOPE_SUB

BASE = "dc=example,dc=org"
USERS = StoredEntries(Kind.USER)
SERVICES = StoredEntries(Kind.SERVICE)
GROUPS = StoredEntries(Kind.GROUP)


@pytest.fixture
def dit() -> Dit:
    return Dit(BASE)


def plan(dit: Dit, base: str, scope: int) -> SearchPlan:
    return dit.plan(parse_dn(base), scope)


def missing(dit: Dit, base: str, scope: int = SCOPE_SUB) -> str:
    with pytest.raises(NoSuchBase) as info:
        plan(dit, base, scope)
    return info.value.matched_dn


def test_entry_dns(dit: Dit) -> None:
    assert dit.users_dn == "ou=users,dc=example,dc=org"
    assert dit.groups_dn == "ou=groups,dc=example,dc=org"
    assert dit.user_dn("alice") == "cn=alice,ou=users,dc=example,dc=org"
    assert dit.group_dn("a,b") == "cn=a\\,b,ou=groups,dc=example,dc=org"
    assert dit.container_dn(Kind.USER) == dit.users_dn
    assert dit.container_dn(Kind.GROUP) == dit.groups_dn


def test_base_dn_is_normalised_in_spelling_but_keeps_case() -> None:
    assert Dit(" DC=Example , DC=Org ").base_dn == "dc=Example,dc=Org"


def test_empty_base_dn_is_refused() -> None:
    with pytest.raises(DNError):
        Dit("")


@pytest.mark.parametrize(
    ("base", "attributes"),
    [
        (
            "dc=example,dc=org",
            (
                ("objectClass", ("top", "dcObject", "organization")),
                ("dc", ("example",)),
                ("o", ("example",)),
            ),
        ),
        ("o=Acme", (("objectClass", ("top", "organization")), ("o", ("Acme",)))),
        ("ou=people,o=x", (("objectClass", ("top", "organizationalUnit")), ("ou", ("people",)))),
        ("l=Paris", (("objectClass", ("top", "extensibleObject")), ("l", ("Paris",)))),
    ],
)
def test_base_entry_classes_follow_its_rdn(base: str, attributes: object) -> None:
    entry = Dit(base).base_entry
    assert entry.attributes == attributes
    assert entry.has_subordinates


def test_containers_are_organizational_units(dit: Dit) -> None:
    assert dit.users_entry.dn == dit.users_dn
    assert dit.users_entry.attributes == (
        ("objectClass", ("top", "organizationalUnit")),
        ("ou", ("users",)),
    )
    assert dict(dit.groups_entry.attributes)["ou"] == ("groups",)


@pytest.mark.parametrize(
    ("dn", "kind", "name"),
    [
        ("cn=alice,ou=users,dc=example,dc=org", Kind.USER, "alice"),
        ("uid=alice,ou=users,dc=example,dc=org", Kind.USER, "alice"),
        ("CN=Alice,OU=Users,DC=EXAMPLE,DC=org", Kind.USER, "Alice"),
        ("UID=ALICE,ou=USERS,dc=example,dc=org", Kind.USER, "ALICE"),
        ("cn=admins,ou=groups,dc=example,dc=org", Kind.GROUP, "admins"),
        ("uid=admins,ou=groups,dc=example,dc=org", Kind.GROUP, None),
        ("cn=alice,ou=groups,dc=example,dc=org", Kind.USER, None),
        ("cn=alice,ou=users,dc=other,dc=org", Kind.USER, None),
        ("cn=alice,ou=users,dc=org", Kind.USER, None),
        ("cn=x,cn=alice,ou=users,dc=example,dc=org", Kind.USER, None),
        ("cn=alice+uid=alice,ou=users,dc=example,dc=org", Kind.USER, None),
        ("sn=alice,ou=users,dc=example,dc=org", Kind.USER, None),
        ("ou=users,dc=example,dc=org", Kind.USER, None),
    ],
)
def test_entry_name(dit: Dit, dn: str, kind: Kind, name: str | None) -> None:
    assert dit.entry_name(parse_dn(dn), kind) == name
    assert dit.parse_entry_name(dn, kind) == name


def test_parse_entry_name_of_an_invalid_dn_is_none(dit: Dit) -> None:
    assert dit.parse_entry_name("cn=alice,,ou=users", Kind.USER) is None


def test_static_dn_values_give_the_non_leaf_rdns(dit: Dit) -> None:
    assert dit.static_dn_values(Kind.USER) == {"ou": ("users",), "dc": ("example", "org")}
    assert dit.static_dn_values(Kind.GROUP)["ou"] == ("groups",)


def test_plan_at_the_base(dit: Dit) -> None:
    assert plan(dit, BASE, SCOPE_BASE) == SearchPlan((dit.base_entry,))
    assert plan(dit, BASE, SCOPE_ONE) == SearchPlan((dit.users_entry, dit.groups_entry))
    assert plan(dit, "DC=EXAMPLE,DC=ORG", SCOPE_SUB) == SearchPlan(
        (dit.base_entry, dit.users_entry, dit.groups_entry, USERS, SERVICES, GROUPS)
    )


def test_plan_at_a_container(dit: Dit) -> None:
    users = f"ou=users,{BASE}"
    assert plan(dit, users, SCOPE_BASE) == SearchPlan((dit.users_entry,))
    assert plan(dit, users, SCOPE_ONE) == SearchPlan((USERS, SERVICES))
    assert plan(dit, users, SCOPE_SUB) == SearchPlan((dit.users_entry, USERS, SERVICES))
    assert plan(dit, f"OU=Groups,{BASE}", SCOPE_SUB) == SearchPlan((dit.groups_entry, GROUPS))


def test_plan_at_an_entry_reads_only_that_entry(dit: Dit) -> None:
    # a name under ou=users is a person or a service account
    alice = (StoredEntries(Kind.USER, "alice"), StoredEntries(Kind.SERVICE, "alice"))
    for scope in (SCOPE_BASE, SCOPE_SUB):
        assert plan(dit, f"uid=alice,ou=users,{BASE}", scope) == SearchPlan(alice, alice)
    # one level below a leaf: nothing, but the leaf must exist (noSuchObject otherwise)
    assert plan(dit, f"cn=alice,ou=users,{BASE}", SCOPE_ONE) == SearchPlan((), alice)
    admins = (StoredEntries(Kind.GROUP, "admins"),)
    assert plan(dit, f"cn=admins,ou=groups,{BASE}", SCOPE_BASE) == SearchPlan(admins, admins)


@pytest.mark.parametrize(
    ("base", "matched"),
    [
        ("dc=org", ""),
        ("dc=other,dc=org", ""),
        ("o=elsewhere", ""),
        (f"ou=machines,{BASE}", BASE),
        (f"cn=alice,{BASE}", BASE),
        (f"uid=admins,ou=groups,{BASE}", f"ou=groups,{BASE}"),
        (f"sn=alice,ou=users,{BASE}", f"ou=users,{BASE}"),
    ],
)
def test_bases_outside_the_tree_have_the_deepest_existing_ancestor_as_matched_dn(
    dit: Dit, base: str, matched: str
) -> None:
    assert missing(dit, base) == matched


def test_scope_names() -> None:
    assert [scope_name(s) for s in (SCOPE_BASE, SCOPE_ONE, SCOPE_SUB, 3)] == [
        "base",
        "one",
        "sub",
        "3",
    ]
