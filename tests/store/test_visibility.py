"""Visibility in SQL (``VisibleTo`` and ``visible_to``), on every backend.

Two layers: a hand-written matrix whose expectations read like the design
(DESIGN.md section 3: a bound account sees itself and its groups; a scoped
``search`` shows that group and its members; ``search_full_directory``, held
directly or through a group, shows everything; an unknown viewer sees
nothing), and a cross-check of random directories against ``visible_*`` below,
a plain Python statement of the same rules that shares no code with the
compiler.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

import pytest

from ldapsrv.directory.predicates import (
    TRUE,
    AllOf,
    HasAnyMember,
    HasMember,
    InAnyGroup,
    InGroup,
    Negation,
    Predicate,
    VisibleTo,
)
from ldapsrv.directory.records import AccountKind, Permission
from ldapsrv.store.directory import NewUser, SqlDirectory

FULL = Permission.SEARCH_FULL_DIRECTORY
SEARCH = Permission.SEARCH


# --- the reference ------------------------------------------------------------------


@dataclass
class World:
    """A directory as plain sets: names are lower-case."""

    people: set[str] = field(default_factory=set)
    machines: set[str] = field(default_factory=set)
    groups: set[str] = field(default_factory=set)
    members: set[tuple[str, str]] = field(default_factory=set)  # (group, account)
    # (permission, account or None, group or None, scope or None)
    grants: set[tuple[str, str | None, str | None, str | None]] = field(default_factory=set)

    def held(self, viewer: str, permission: str) -> list[str | None]:
        """Scopes of ``permission`` grants held by ``viewer`` or its groups."""
        own = {g for g, a in self.members if a == viewer}
        return [
            scope
            for perm, account, group, scope in self.grants
            if perm == permission and (account == viewer or group in own)
        ]

    def full(self, viewer: str) -> bool:
        return bool(self.held(viewer, FULL))

    def account_visible(self, viewer: str, account: str) -> bool:
        if viewer not in self.people | self.machines:
            return False
        scopes = set(self.held(viewer, SEARCH))
        in_scope = any((g, account) in self.members for g in scopes)
        return self.full(viewer) or account == viewer or in_scope

    def group_visible(self, viewer: str, group: str) -> bool:
        if viewer not in self.people | self.machines:
            return False
        scopes = set(self.held(viewer, SEARCH))
        return self.full(viewer) or (group, viewer) in self.members or group in scopes


def build(directory: SqlDirectory, world: World) -> None:
    for name in sorted(world.groups):
        directory.create_group(name)
    for name in sorted(world.people):
        directory.create_user(NewUser(name, gid_number=5000))  # no primary-group membership
    for name in sorted(world.machines):
        directory.create_service_account(name)
    for group, account in sorted(world.members):
        directory.add_member(group, account)
    for permission, account, group, scope in sorted(world.grants, key=str):
        directory.grant(Permission(permission), account=account, group=group, scope_group=scope)


def everything(search, pred: Predicate, **kwargs) -> list:
    return search(pred, limit=10_000, **kwargs)


def names(records) -> set[str]:
    return {r.name for r in records}


# --- the matrix ---------------------------------------------------------------------

MATRIX = World(
    people={"alice", "bob", "carol", "dave", "erin", "root", "zoe"},
    machines={"nas", "sssd"},
    groups={"staff", "nas-users", "nas-svc", "admins", "others"},
    members={
        ("staff", "alice"),
        ("staff", "bob"),  # alice's fellow member
        ("nas-users", "carol"),
        ("nas-users", "dave"),
        ("nas-svc", "nas"),
        ("admins", "sssd"),
        ("admins", "erin"),
        ("others", "zoe"),  # an outsider to everyone but full searchers
    },
    grants={
        (SEARCH, None, "nas-svc", "nas-users"),  # nas: scoped through its group
        (FULL, None, "admins", None),  # sssd, erin: full through a group
        (FULL, "root", None, None),  # root: full, directly
    },
)
ALL_ACCOUNTS = MATRIX.people | MATRIX.machines

EXPECTED: dict[str, tuple[set[str], set[str]]] = {
    # viewer: (accounts it sees, groups it sees)
    "alice": ({"alice"}, {"staff"}),  # no grant: itself, its group; not bob
    "zoe": ({"zoe"}, {"others"}),
    "nas": ({"nas", "carol", "dave"}, {"nas-svc", "nas-users"}),
    "sssd": (ALL_ACCOUNTS, MATRIX.groups),
    "erin": (ALL_ACCOUNTS, MATRIX.groups),
    "root": (ALL_ACCOUNTS, MATRIX.groups),
    "ghost": (set(), set()),  # no such account
}


@pytest.fixture
def matrix(directory):
    build(directory, MATRIX)
    return directory


@pytest.mark.parametrize("viewer", sorted(EXPECTED))
def test_each_viewer_sees_exactly_the_matrix_rows(matrix, viewer):
    accounts, groups = EXPECTED[viewer]
    pred = VisibleTo(viewer.upper())  # viewer names are case-insensitive
    assert names(everything(matrix.search_users, pred)) == accounts & MATRIX.people
    assert names(everything(matrix.search_service_accounts, pred)) == accounts & MATRIX.machines
    assert names(everything(matrix.search_groups, pred)) == groups
    # F is NOT T: the negation is exactly the rest, never Undefined.
    hidden = Negation(pred)
    assert names(everything(matrix.search_users, hidden)) == MATRIX.people - accounts
    assert names(everything(matrix.search_groups, hidden)) == MATRIX.groups - groups


def test_a_viewer_name_no_account_can_have_sees_nothing(matrix):
    for pred in (VisibleTo("gh\x00st"), VisibleTo("")):
        assert everything(matrix.search_users, pred) == []
        assert everything(matrix.search_groups, pred) == []
        assert names(everything(matrix.search_groups, Negation(pred))) == MATRIX.groups


def test_paging_and_limits_count_only_visible_rows(matrix):
    pred = AllOf((TRUE, VisibleTo("nas")))
    first = matrix.search_users(pred, limit=1)
    second = matrix.search_users(pred, limit=5, after_id=first[0].id)
    assert [r.name for r in first + second] == ["carol", "dave"]


def test_membership_predicates_count_only_visible_counterparts(matrix):
    # alice sees staff, so both staff members match memberOf=staff for her...
    staff = InGroup("staff", visible_to="alice")
    assert names(everything(matrix.search_users, staff)) == {"alice", "bob"}
    # ...but nas does not see staff: nobody matches, and the negation is everyone.
    hidden = InGroup("staff", visible_to="nas")
    assert everything(matrix.search_users, hidden) == []
    assert names(everything(matrix.search_users, Negation(hidden))) == MATRIX.people
    # member=bob: alice cannot see bob, so no group has him as a member for her.
    assert everything(matrix.search_groups, HasMember("bob", visible_to="alice")) == []
    assert names(everything(matrix.search_groups, HasMember("bob"))) == {"staff"}
    # member=*: for alice only staff has a member she can see (herself).
    assert names(everything(matrix.search_groups, HasAnyMember(visible_to="alice"))) == {"staff"}
    # memberOf=*: for nas, only carol and dave are in a group nas sees.
    in_any = InAnyGroup(visible_to="nas")
    assert names(everything(matrix.search_users, in_any)) == {"carol", "dave"}
    assert names(everything(matrix.search_service_accounts, in_any)) == {"nas"}


def test_membership_lists_are_trimmed_to_what_the_viewer_sees(matrix):
    (staff,) = matrix.search_groups(TRUE, name="staff", limit=1, visible_to="alice")
    assert staff.member_names == ("alice",)
    (bob,) = matrix.search_users(TRUE, name="bob", limit=1, visible_to="nas")
    assert bob.group_names == ()
    (carol,) = matrix.search_users(TRUE, name="carol", limit=1, visible_to="nas")
    assert carol.group_names == ("nas-users",)
    (nas,) = matrix.search_service_accounts(TRUE, name="nas", limit=1, visible_to="nas")
    assert nas.group_names == ("nas-svc",)
    (admins,) = matrix.search_groups(TRUE, name="admins", limit=1, visible_to="erin")
    assert admins.member_names == ("erin", "sssd")
    # Without visible_to nothing is trimmed (admin commands, existing callers).
    (staff,) = matrix.search_groups(TRUE, name="staff", limit=1)
    assert staff.member_names == ("alice", "bob")
    (ghost_view,) = matrix.search_groups(TRUE, name="staff", limit=1, visible_to="ghost")
    assert ghost_view.member_names == ()


def test_grants_take_effect_and_end_at_once(matrix):
    assert names(everything(matrix.search_users, VisibleTo("alice"))) == {"alice"}
    matrix.grant(SEARCH, account="alice", scope_group="others")
    assert names(everything(matrix.search_users, VisibleTo("alice"))) == {"alice", "zoe"}
    matrix.add_member("nas-svc", "alice")  # now also inherits nas-svc's scope
    assert names(everything(matrix.search_users, VisibleTo("alice"))) == {
        "alice",
        "zoe",
        "carol",
        "dave",
    }
    matrix.revoke(SEARCH, account="alice", scope_group="others")
    matrix.remove_member("nas-svc", "alice")
    assert names(everything(matrix.search_users, VisibleTo("alice"))) == {"alice"}


def test_an_internal_account_gets_its_visibility_through_a_group(directory):
    directory.create_user(NewUser("alice"))
    directory.create_service_account("health", kind=AccountKind.INTERNAL_SERVICE_ACCOUNT)
    directory.create_group("monitoring")
    directory.add_member("monitoring", "health")
    assert names(everything(directory.search_users, VisibleTo("health"))) == set()
    directory.grant(FULL, group="monitoring")
    assert "alice" in names(everything(directory.search_users, VisibleTo("health")))


# --- cross-check against the reference -------------------------------------------------


def random_world(rng: random.Random) -> World:
    world = World(
        people={f"p{i}" for i in range(rng.randint(3, 8))},
        machines={f"m{i}" for i in range(rng.randint(1, 4))},
        groups={f"g{i}" for i in range(rng.randint(2, 6))},
    )
    accounts = sorted(world.people | world.machines)
    groups = sorted(world.groups)
    world.members = {(g, a) for g in groups for a in accounts if rng.random() < 0.3}
    for _ in range(rng.randint(0, 6)):
        permission = rng.choice([FULL, SEARCH, SEARCH, Permission.RESET_PASSWORD])
        account = rng.choice(accounts) if rng.random() < 0.4 else None
        group = None if account is not None else rng.choice(groups)
        scope = rng.choice(groups) if permission == SEARCH else None
        if permission == FULL and rng.random() < 0.6:
            continue  # keep most worlds restricted, where the interesting cases are
        world.grants.add((permission, account, group, scope))
    return world


@pytest.mark.parametrize("seed", range(6))
def test_sql_visibility_matches_the_reference(directory, seed):
    rng = random.Random(seed)
    world = random_world(rng)
    build(directory, world)
    accounts = world.people | world.machines
    for viewer in [*sorted(accounts), "ghost"]:
        pred = VisibleTo(viewer)
        people = names(everything(directory.search_users, pred))
        machines = names(everything(directory.search_service_accounts, pred))
        groups = names(everything(directory.search_groups, pred))
        assert people == {a for a in world.people if world.account_visible(viewer, a)}, viewer
        assert machines == {a for a in world.machines if world.account_visible(viewer, a)}
        assert groups == {g for g in world.groups if world.group_visible(viewer, g)}, viewer

        # memberOf=G / memberOf=* for the viewer: members of a group it sees.
        for group in [*sorted(world.groups), "nogroup"]:
            expected = {
                a
                for a in world.people
                if (group, a) in world.members and world.group_visible(viewer, group)
            }
            got = names(everything(directory.search_users, InGroup(group, visible_to=viewer)))
            assert got == expected, (viewer, group)
        expected = {
            a
            for a in world.people
            if any((g, a) in world.members and world.group_visible(viewer, g) for g in world.groups)
        }
        got = names(everything(directory.search_users, InAnyGroup(visible_to=viewer)))
        assert got == expected
        # member=A / member=* for the viewer: groups with a member it sees.
        for account in sorted(accounts):
            expected = {
                g
                for g in world.groups
                if (g, account) in world.members and world.account_visible(viewer, account)
            }
            got = names(everything(directory.search_groups, HasMember(account, visible_to=viewer)))
            assert got == expected, (viewer, account)
        expected = {
            g
            for g in world.groups
            if any((g, a) in world.members and world.account_visible(viewer, a) for a in accounts)
        }
        assert names(everything(directory.search_groups, HasAnyMember(visible_to=viewer))) == (
            expected
        )

        # Trimmed lists.
        for record in everything(directory.search_groups, TRUE, visible_to=viewer):
            assert set(record.member_names) == {
                a
                for a in accounts
                if (record.name, a) in world.members and world.account_visible(viewer, a)
            }
        for record in everything(directory.search_users, TRUE, visible_to=viewer):
            assert set(record.group_names) == {
                g
                for g in world.groups
                if (g, record.name) in world.members and world.group_visible(viewer, g)
            }


def test_the_random_worlds_exercise_every_kind_of_visibility():
    """Guard against a vacuous cross-check: across the seeds, some viewer sees
    through a scope, some through full search, and some sees only itself."""
    kinds = set()
    for seed in range(6):
        world = random_world(random.Random(seed))
        for viewer in world.people | world.machines:
            if world.full(viewer):
                kinds.add("full")
            elif world.held(viewer, SEARCH):
                kinds.add("scoped")
            else:
                kinds.add("none")
    assert kinds == {"full", "scoped", "none"}
