"""The predicate compiler: constant folding, and SQL results equal to the
reference evaluator's over real rows on every backend."""

from __future__ import annotations

import random
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import insert, select
from sqlalchemy.dialects import mysql, postgresql, sqlite

from ldapsrv.directory.predicates import (
    FALSE,
    TRUE,
    UNDEFINED,
    AllOf,
    AnyOf,
    Const,
    FieldCompare,
    FieldEquals,
    FieldPresent,
    FieldSubstrings,
    HasAnyMember,
    HasMember,
    InAnyGroup,
    InGroup,
    Negation,
    Predicate,
)
from ldapsrv.directory.records import GroupRecord, UserRecord
from ldapsrv.store.directory import SqlDirectory
from ldapsrv.store.engine import make_engine
from ldapsrv.store.models import accounts, groups, memberships
from ldapsrv.store.sqlfilter import (
    compile_condition,
    compile_predicate,
    escape_like,
    like_pattern,
)

from .dbs import KINDS, Kind, fresh_database, skip_unless_available
from .reference import GROUP_KINDS, USER_KINDS, evaluate

# ---------------------------------------------------------------- folding


@pytest.mark.parametrize("target", ["users", "groups"])
@pytest.mark.parametrize(
    ("pred", "expected"),
    [
        (TRUE, True),
        (FALSE, False),
        (UNDEFINED, False),
        (Negation(UNDEFINED), False),  # NOT Undefined is still Undefined
        (Negation(FALSE), True),
        (AllOf(()), True),  # (&) is absolute true
        (AnyOf(()), False),  # (|) is absolute false
        (AllOf((TRUE, FieldPresent("name"))), True),
        (AnyOf((FALSE, UNDEFINED)), False),
        (Negation(AnyOf((FALSE, UNDEFINED))), False),
        (FieldPresent("name"), True),
        (FieldPresent("created"), True),
        (FieldPresent("no_such_field"), False),  # type: ignore[arg-type]
        (Negation(FieldPresent("no_such_field")), True),  # type: ignore[arg-type]
        (FieldEquals("gid_number", "not a number"), False),
        (Negation(FieldEquals("gid_number", "not a number")), False),
        (FieldSubstrings("gid_number", "1", (), None), False),
        (Negation(FieldSubstrings("created", "1", (), None)), False),
        (FieldSubstrings("name", None, (), None), True),
    ],
)
def test_constant_predicates_fold_to_python_booleans(target, pred, expected):
    assert compile_condition(pred, target) is expected


def test_fields_and_membership_tests_the_kind_lacks_are_absent_attributes():
    assert compile_condition(FieldEquals("uid_number", 5), "groups") is False
    assert compile_condition(Negation(FieldEquals("uid_number", 5)), "groups") is True
    assert compile_condition(FieldPresent("description"), "users") is False
    assert compile_condition(InGroup("x"), "groups") is False
    assert compile_condition(Negation(HasMember("x")), "users") is True
    assert compile_condition(HasAnyMember(), "users") is False
    assert compile_condition(InAnyGroup(), "groups") is False


def _sql(pred: Predicate, target: str = "users", dialect: object = None) -> str:
    table = accounts if target == "users" else groups
    query = select(table.c.id).where(compile_predicate(pred, target))  # type: ignore[arg-type]
    compiled = query.compile(
        dialect=dialect or sqlite.dialect(), compile_kwargs={"literal_binds": True}
    )
    return str(compiled).split("WHERE", 1)[1].strip()


def test_a_typical_sssd_user_filter_compiles_to_just_the_informative_conditions():
    # (&(uid=alice)(objectClass=posixAccount)(uid=*)(&(uidNumber=*)(!(uidNumber=0))))
    # after the directory layer: objectClass is TRUE for users.
    pred = AllOf(
        (
            FieldEquals("name", "Alice"),
            TRUE,
            FieldPresent("name"),
            AllOf((FieldPresent("uid_number"), Negation(FieldEquals("uid_number", 0)))),
        )
    )
    assert _sql(pred) == (
        "accounts.name_lower = 'alice' AND accounts.uid_number IS NOT NULL"
        " AND (accounts.uid_number IS NULL OR accounts.uid_number != 0)"
    )


def test_negated_comparisons_on_nullable_columns_include_the_absent_values():
    assert _sql(Negation(FieldEquals("mail", "a@b"))) == (
        "accounts.mail IS NULL OR lower(accounts.mail) != lower('a@b')"
    )
    assert _sql(Negation(FieldSubstrings("surname", "a", (), None))) == (
        "accounts.surname IS NULL OR lower(accounts.surname) NOT LIKE lower('a%') ESCAPE '!'"
    )


def test_negated_comparisons_on_required_columns_need_no_null_test():
    assert _sql(Negation(FieldEquals("name", "x"))) == "accounts.name_lower != 'x'"
    assert _sql(Negation(FieldEquals("gid_number", 5)), "groups") == "groups.gid_number != 5"


def test_case_exact_name_uses_the_index_and_then_compares_exactly():
    assert _sql(FieldEquals("name", "Alice", case_exact=True)) == (
        "accounts.name_lower = 'alice' AND accounts.name = 'Alice'"
    )


def test_string_ordering_is_by_code_point_on_postgresql():
    assert 'COLLATE "C"' in _sql(FieldCompare("surname", ">=", "m"), dialect=postgresql.dialect())
    assert "COLLATE" not in _sql(FieldCompare("surname", ">=", "m"), dialect=mysql.dialect())


def test_membership_tests_are_correlated_exists_subqueries():
    sql = _sql(InGroup("Admins"))
    assert sql.startswith("EXISTS (SELECT")
    assert "tested_membership.account_id = accounts.id" in sql
    assert "tested_group.name_lower = 'admins'" in sql
    sql = _sql(HasMember("Alice"), "groups")
    assert "tested_membership.group_id = groups.id" in sql
    assert "tested_account.name_lower = 'alice'" in sql


def test_two_membership_tests_in_one_filter_are_two_independent_subqueries():
    sql = _sql(AllOf((InGroup("admins"), Negation(InGroup("staff")))))
    assert sql.count("EXISTS (SELECT") == 2
    assert "tested_group.name_lower = 'admins'" in sql
    assert "tested_group.name_lower = 'staff'" in sql


def test_like_wildcards_and_the_escape_character_are_escaped():
    assert escape_like("100%_!x") == "100!%!_!!x"
    assert like_pattern("a%", ("_",), "!") == "a!%%!_%!!"
    assert like_pattern(None, ("x",), None) == "%x%"
    assert like_pattern("a", (), None) == "a%"


# ---------------------------------------------------------------- real rows

TEXTS = [
    "Alice",
    "alice",
    "ALICE",
    "Al",
    "bob",
    "bob ",
    "Bob Smith",
    "Émile",
    "ÉMILE",
    "émile",
    "a%b",
    "a_b",
    "a!b",
    "aXb",
    "100",
    "9",
    "10",
    "x",
    "Zed",
    "zed",
    "mail@Example.ORG",
    "MAIL@example.org",
]
USER_NAMES = [
    "Alice",
    "bob",
    "CAROL",
    "dave",
    "Eve",
    "al",
    "alice2",
    "a.b",
    "a_b",
    "a-b",
    "_x",
    "0day",
    "Zed",
    "zz",
    "Mallory",
    "trent",
    "Peggy",
    "victor",
    "WALTER",
    "x1",
]
GROUP_NAMES = ["admins", "Staff", "a_b", "DEVS", "ops", "empty", "Web-Admins", "x"]
INSTANTS = [
    datetime(2020, 1, 1, tzinfo=UTC),
    datetime(2021, 6, 15, 12, 30, 45, 123456, tzinfo=UTC),
    datetime(2023, 12, 31, 23, 59, 59, 999999, tzinfo=UTC),
]
_UUIDS = random.Random(4122)
USER_UUIDS = [str(uuid.UUID(int=_UUIDS.getrandbits(128), version=4)) for _ in USER_NAMES]
GROUP_UUIDS = [str(uuid.UUID(int=_UUIDS.getrandbits(128), version=4)) for _ in GROUP_NAMES]
UID_NUMBERS = [9, 10, 100, 1000, 10000, 99, 2, 20, 200, 2000]
GID_NUMBERS = [9, 10, 100, 1000, 2]


@dataclass
class Dataset:
    kind: Kind
    directory: SqlDirectory
    users: list[UserRecord]
    groups: list[GroupRecord]


def _insert_rows(engine: object, rng: random.Random) -> None:
    def text_or_null() -> str | None:
        return None if rng.random() < 0.3 else rng.choice(TEXTS)

    user_rows, group_rows = [], []
    for i, name in enumerate(USER_NAMES):
        created = rng.choice(INSTANTS)
        user_rows.append(
            {
                "id": i + 1,
                "uuid": USER_UUIDS[i],
                "kind": "user",
                "name": name,
                "name_lower": name.lower(),
                "disabled": False,
                "uid_number": UID_NUMBERS[i % len(UID_NUMBERS)] + 100000 * (i // 10),
                "gid_number": rng.choice(GID_NUMBERS),
                "display_name": text_or_null(),
                "given_name": text_or_null(),
                "surname": text_or_null(),
                "mail": text_or_null(),
                "home_directory": f"/home/{name}",
                "login_shell": rng.choice(["/bin/bash", "/bin/sh", "/BIN/sh"]),
                "gecos": text_or_null(),
                "created_at": created,
                "modified_at": max(created, rng.choice(INSTANTS)),
            }
        )
    for i, name in enumerate(GROUP_NAMES):
        group_rows.append(
            {
                "id": i + 1,
                "uuid": GROUP_UUIDS[i],
                "name": name,
                "name_lower": name.lower(),
                "gid_number": [9, 10, 100, 1000, 2, 20, 200, 30][i],
                "description": text_or_null(),
                "created_at": rng.choice(INSTANTS),
                "modified_at": rng.choice(INSTANTS),
            }
        )
    member_rows = [
        {"group_id": g["id"], "account_id": u["id"]}
        for g in group_rows
        if g["name"] != "empty"
        for u in user_rows
        if rng.random() < 0.3
    ]
    with engine.begin() as conn:  # type: ignore[attr-defined]
        conn.execute(insert(accounts), user_rows)
        conn.execute(insert(groups), group_rows)
        conn.execute(insert(memberships), member_rows)


@pytest.fixture(scope="module", params=KINDS)
def dataset(request: pytest.FixtureRequest) -> Iterator[Dataset]:
    """One database per backend for the whole module, filled once: the
    property tests run hundreds of queries against it and never write."""
    kind: Kind = request.param
    skip_unless_available(kind)
    with fresh_database(kind) as url:
        engine = make_engine(url)
        try:
            _insert_rows(engine, random.Random(4511))
            directory = SqlDirectory(engine, uid_range=(1, 10), gid_range=(1, 10))
            yield Dataset(
                kind,
                directory,
                directory.search_users(TRUE, limit=10_000),
                directory.search_groups(TRUE, limit=10_000),
            )
        finally:
            engine.dispose()


def _matching_ids(data: Dataset, pred: Predicate, target: str) -> list[int]:
    if target == "users":
        return [u.id for u in data.directory.search_users(pred, limit=10_000)]
    return [g.id for g in data.directory.search_groups(pred, limit=10_000)]


def _expected_ids(data: Dataset, pred: Predicate, target: str) -> list[int]:
    records = data.users if target == "users" else data.groups
    return [r.id for r in records if evaluate(pred, r) is True]


def test_the_dataset_has_nulls_mixed_case_and_memberships(dataset):
    assert len(dataset.users) == len(USER_NAMES)
    assert any(u.mail is None for u in dataset.users)
    assert {u.mail for u in dataset.users} & {"alice", "ALICE", "Alice"}
    assert any(u.group_names for u in dataset.users)
    assert any(g.description is None for g in dataset.groups)


EXAMPLES: list[tuple[str, Predicate]] = [
    # Absent values: (!(mail=x)) matches users without mail.
    ("users", Negation(FieldEquals("mail", "alice"))),
    ("users", FieldEquals("mail", "ALICE")),
    ("users", FieldEquals("mail", "alice", case_exact=True)),
    ("users", FieldEquals("surname", "émile")),
    ("users", FieldEquals("surname", "bob")),  # "bob " must not match
    ("users", FieldEquals("name", "ALICE")),
    ("users", FieldEquals("name", "alice", case_exact=True)),
    ("users", FieldSubstrings("mail", "a", (), "b")),
    ("users", FieldSubstrings("mail", None, ("%",), None)),  # a literal percent
    ("users", FieldSubstrings("mail", None, ("_",), None)),  # a literal underscore
    ("users", FieldSubstrings("mail", None, ("!",), None)),  # the escape character
    ("users", FieldSubstrings("gecos", "é", (), None)),
    ("users", FieldSubstrings("name", "a", (), None, case_exact=True)),
    ("users", FieldSubstrings("login_shell", "/bin", (), None, case_exact=True)),
    ("users", FieldSubstrings("display_name", "al", ("i",), "e")),
    ("users", FieldSubstrings("display_name", "al", (), "al")),  # no overlap
    ("users", FieldCompare("uid_number", ">=", 100)),  # numeric, not "100" > "9"
    ("users", FieldCompare("uid_number", "<=", "99")),
    ("users", FieldCompare("surname", ">=", "b")),
    ("users", FieldCompare("surname", "<=", "Z")),
    ("users", Negation(FieldCompare("given_name", ">=", "m"))),
    ("users", FieldCompare("name", ">=", "M")),
    ("users", FieldCompare("created", ">=", INSTANTS[1])),
    ("users", FieldCompare("modified", "<=", INSTANTS[1] - timedelta(microseconds=1))),
    ("users", FieldEquals("created", INSTANTS[1].astimezone(timezone(timedelta(hours=-5))))),
    ("users", FieldEquals("uuid", USER_UUIDS[3].upper())),  # UUID matching ignores case
    ("users", FieldSubstrings("uuid", None, (USER_UUIDS[3][9:].upper(),), None)),
    ("users", FieldEquals("uuid", USER_UUIDS[3].upper(), case_exact=True)),
    ("users", InGroup("STAFF")),
    ("users", Negation(InGroup("staff"))),
    ("users", AllOf((InGroup("admins"), Negation(InGroup("ops"))))),
    ("users", InAnyGroup()),
    ("users", Negation(InAnyGroup())),
    ("users", AnyOf((FieldEquals("gid_number", 9), UNDEFINED))),
    ("users", Negation(AllOf((FieldPresent("mail"), UNDEFINED)))),
    ("groups", HasMember("ALICE")),
    ("groups", Negation(HasMember("alice"))),
    ("groups", HasAnyMember()),
    ("groups", Negation(HasAnyMember())),
    ("groups", FieldEquals("name", "web-admins")),
    ("groups", FieldSubstrings("name", "a", ("_",), None)),
    ("groups", Negation(FieldPresent("description"))),
    ("groups", FieldCompare("gid_number", "<=", 30)),
    # Values no column can hold are decided without the database.
    ("users", FieldEquals("uid_number", 10**20)),
    ("users", Negation(FieldEquals("uid_number", 2**31))),
    ("users", FieldCompare("uid_number", "<=", 2**40)),
    ("users", FieldCompare("uid_number", ">=", -(2**40))),
    ("users", FieldEquals("mail", "alice\x00")),
    ("users", Negation(FieldSubstrings("mail", "a\x00", (), None))),
    ("users", FieldCompare("surname", ">=", "bob\x00")),  # "bob" itself is below it
    ("users", FieldCompare("surname", "<=", "bob\x00")),
    ("users", InGroup("staff\x00")),
    ("groups", Negation(HasMember("alice\x00"))),
]


@pytest.mark.parametrize(("target", "pred"), EXAMPLES, ids=[repr(p) for _, p in EXAMPLES])
def test_sql_matches_the_reference_evaluator_on_chosen_cases(dataset, target, pred):
    expected = _expected_ids(dataset, pred, target)
    assert _matching_ids(dataset, pred, target) == expected


def test_chosen_cases_are_not_vacuous(dataset):
    # Most chosen cases select some rows but not all: they discriminate.
    discriminating = 0
    for target, pred in EXAMPLES:
        size = len(dataset.users if target == "users" else dataset.groups)
        if 0 < len(_expected_ids(dataset, pred, target)) < size:
            discriminating += 1
    assert discriminating >= len(EXAMPLES) * 3 // 4


# ---------------------------------------------------------------- properties


def _fragments(words: list[str]) -> list[str]:
    # Every short piece of the data, also with its case swapped, so that
    # substring and equality assertions often hit rows in some case only.
    out = set()
    for word in words:
        for start in range(len(word)):
            for end in range(start + 1, min(len(word), start + 4) + 1):
                out.update({word[start:end], word[start:end].swapcase()})
    return sorted(out)


PIECES = st.one_of(
    st.sampled_from(_fragments(TEXTS + USER_NAMES + GROUP_NAMES)),
    st.sampled_from(USER_UUIDS[:4] + GROUP_UUIDS[:4]).map(lambda u: u[:3].upper()),
    st.text(alphabet="aAbB%_!éÉ /xl\x00", max_size=3),
)
STRINGS = st.one_of(
    st.sampled_from(TEXTS + USER_NAMES + GROUP_NAMES),
    st.sampled_from(USER_UUIDS[:3] + GROUP_UUIDS[:3]).map(str.upper),
    st.sampled_from(USER_UUIDS + GROUP_UUIDS),
    st.sampled_from(TEXTS + USER_NAMES + GROUP_NAMES).map(str.swapcase),
    PIECES,
)
INSTANT_VALUES = st.one_of(
    st.sampled_from(INSTANTS),
    st.sampled_from(INSTANTS).map(lambda t: t + timedelta(microseconds=1)),
    st.sampled_from(INSTANTS).map(lambda t: t.astimezone(timezone(timedelta(hours=3)))),
    st.sampled_from(INSTANTS).map(lambda t: t.replace(tzinfo=None)),  # naive means UTC
)
VALUES = st.one_of(
    STRINGS,
    st.sampled_from(UID_NUMBERS + GID_NUMBERS + [0, -1, 100009]),
    st.sampled_from([2**31 - 1, 2**31, -(2**31) - 1, 2**40, -(2**70), 10**20]),
    st.sampled_from(["Al\x00", "\x00", "bob\x00x", "2\x00"]),
    st.sampled_from(["9", "100", " 10", "1e3", "-"]),
    INSTANT_VALUES,
)
FIELDS = st.sampled_from(sorted(set(USER_KINDS) | set(GROUP_KINDS)))
NAMES = st.one_of(st.sampled_from(USER_NAMES + GROUP_NAMES), st.sampled_from(["nobody", "ALICE"]))

LEAVES: st.SearchStrategy[Predicate] = st.one_of(
    st.builds(Const, st.sampled_from([True, False, None])),
    st.builds(FieldPresent, FIELDS),
    st.builds(FieldEquals, FIELDS, VALUES, st.booleans()),
    st.builds(
        FieldSubstrings,
        FIELDS,
        st.none() | PIECES,
        st.lists(PIECES, max_size=2).map(tuple),
        st.none() | PIECES,
        st.booleans(),
    ),
    st.builds(FieldCompare, FIELDS, st.sampled_from([">=", "<="]), VALUES),
    st.builds(InGroup, NAMES),
    st.builds(HasMember, NAMES),
    st.just(HasAnyMember()),
    st.just(InAnyGroup()),
)
PREDICATES: st.SearchStrategy[Predicate] = st.recursive(
    LEAVES,
    lambda children: st.one_of(
        st.builds(Negation, children),
        st.lists(children, max_size=3).map(lambda xs: AllOf(tuple(xs))),
        st.lists(children, max_size=3).map(lambda xs: AnyOf(tuple(xs))),
    ),
    max_leaves=8,
)

PROPERTY_SETTINGS = settings(
    max_examples=150,
    deadline=None,
    database=None,  # keep no example files in the working tree; failures print the example
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@PROPERTY_SETTINGS
@given(pred=PREDICATES)
def test_user_searches_return_exactly_the_users_the_reference_says_are_true(dataset, pred):
    assert _matching_ids(dataset, pred, "users") == _expected_ids(dataset, pred, "users")


@PROPERTY_SETTINGS
@given(pred=PREDICATES)
def test_group_searches_return_exactly_the_groups_the_reference_says_are_true(dataset, pred):
    assert _matching_ids(dataset, pred, "groups") == _expected_ids(dataset, pred, "groups")


@settings(PROPERTY_SETTINGS, max_examples=300)
@given(leaf=LEAVES, target=st.sampled_from(["users", "groups"]))
def test_each_kind_of_assertion_and_its_negation_match_the_reference(dataset, leaf, target):
    # Single assertions, densely: where most compiler rules live.
    for pred in (leaf, Negation(leaf)):
        assert _matching_ids(dataset, pred, target) == _expected_ids(dataset, pred, target)


@PROPERTY_SETTINGS
@given(pred=PREDICATES)
def test_a_predicate_and_its_negation_never_both_match(dataset, pred):
    # Three-valued logic: Undefined rows match neither; no row matches both.
    matched = set(_matching_ids(dataset, pred, "users"))
    negated = set(_matching_ids(dataset, Negation(pred), "users"))
    assert not matched & negated
