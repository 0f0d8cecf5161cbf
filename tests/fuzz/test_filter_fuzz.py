"""Fuzzing the filter path a search takes: LDAP filter -> FilterResolver -> SQL.

For generated filters over the attributes clients use (names in any case, numbers,
member DNs, wildcards, unknown attributes, non-UTF-8 values) the rows the SQL
returns must be exactly the entries for which evaluating the same filter over the
rendered entry (``filtering.evaluate``, three-valued) says True. The store tests
check the SQL compiler against predicates; this closes the loop from the wire's
filter to the rows, on every backend the suite reaches.
"""

from __future__ import annotations

from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from store.test_sqlfilter import GROUP_NAMES, USER_NAMES, Dataset, dataset

from ldapsrv.directory.dit import Dit, Kind
from ldapsrv.directory.entries import Renderer, Selection
from ldapsrv.directory.filtering import FilterResolver, evaluate
from ldapsrv.directory.filters import And, Extensible, Filter, Not, Or
from ldapsrv.directory.schema import load_schema

from .strategies import filter_values

__all__ = ["dataset"]  # the module-scoped fixture: one filled database per backend

BASE = "dc=example,dc=org"
SCHEMA = load_schema()
DIT = Dit(BASE)
RESOLVER = FilterResolver(SCHEMA, DIT)
RENDERER = Renderer(DIT, SCHEMA, Selection.parse(["*", "+"], SCHEMA))

ATTRIBUTES = st.sampled_from(
    [
        "uid", "cn", "CN", "sn", "givenName", "displayName", "mail", "uidNumber", "gidNumber",
        "homeDirectory", "loginShell", "gecos", "memberOf", "member", "memberUid", "memberuid",
        "description", "objectClass", "entryUUID", "entryDN", "hasSubordinates",
        "structuralObjectClass", "2.5.4.3", "ou", "sudoUser", "noSuchAttr",
    ]
)  # fmt: skip
NAMES = [*USER_NAMES, *GROUP_NAMES]
VALUES = st.one_of(
    st.sampled_from(NAMES).map(str.encode),
    st.sampled_from(NAMES).map(lambda n: n.upper().encode()),
    st.sampled_from(NAMES).map(lambda n: f"cn={n},ou=users,{BASE}".encode()),
    st.sampled_from(GROUP_NAMES).map(lambda n: f"CN={n},OU=Groups,{BASE}".encode()),
    st.integers(-5, 300_000).map(lambda i: str(i).encode()),
    st.sampled_from(
        [
            b"posixAccount",
            b"inetorgperson",
            b"posixGroup",
            b"top",
            b"sudoRole",
            b"/bin/sh",
            b"/home/",
            b"TRUE",
            b"FALSE",
            b"a",
            b"_",
            b"%",
            b"\\",
            b"\xff",
            b"",
            b"users",
        ]
    ),
    st.text(max_size=6).map(str.encode),
)

FUZZ = settings(
    max_examples=150,
    deadline=None,
    database=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


def _attributes(entry_attrs: list[tuple[str, list[bytes]]]) -> dict[str, list[str]]:
    return {
        name.lower(): [v.decode("utf-8", "replace") for v in values] for name, values in entry_attrs
    }


def _expected(data: Dataset, flt: Filter, kind: Kind) -> list[int]:
    matches = []
    records = data.users if kind is Kind.USER else data.groups
    for record in records:
        if kind is Kind.USER:
            _, attrs = RENDERER.user(record)  # type: ignore[arg-type]
        else:
            _, attrs = RENDERER.group(record)  # type: ignore[arg-type]
        dn_values = {**DIT.static_dn_values(kind), "cn": (record.name,)}
        if evaluate(flt, _attributes(attrs), SCHEMA, dn_values) is True:
            matches.append(record.id)
    return matches


def _has_typeless_extensible(flt: Filter) -> bool:
    """``(:rule:=value)`` matches any attribute the rule applies to: the resolver
    implements that (tests/unit/test_filtering.py), ``evaluate`` (meant for the few
    static entries) answers Undefined, so such filters are no common ground."""
    match flt:
        case And(items) | Or(items):
            return any(_has_typeless_extensible(i) for i in items)
        case Not(item):
            return _has_typeless_extensible(item)
        case Extensible(attr=None):
            return True
    return False


def _selected(data: Dataset, flt: Filter, kind: Kind) -> list[int]:
    predicate = RESOLVER.resolve(flt, kind)
    if kind is Kind.USER:
        return [u.id for u in data.directory.search_users(predicate, limit=10_000)]
    return [g.id for g in data.directory.search_groups(predicate, limit=10_000)]


@FUZZ
@given(flt=filter_values(ATTRIBUTES, VALUES))
def test_sql_selects_exactly_the_entries_the_filter_is_true_for(
    dataset: Dataset, flt: Filter
) -> None:
    assume(not _has_typeless_extensible(flt))
    for kind in (Kind.USER, Kind.GROUP):
        assert _selected(dataset, flt, kind) == _expected(dataset, flt, kind), (kind, flt)


@FUZZ
@given(flt=filter_values())
def test_any_decodable_filter_resolves_and_compiles_without_error(
    dataset: Dataset, flt: Filter
) -> None:
    for kind in Kind:
        predicate = RESOLVER.resolve(flt, kind)
        if kind is Kind.GROUP:
            dataset.directory.search_groups(predicate, limit=5)
        elif kind is Kind.USER:
            dataset.directory.search_users(predicate, limit=5)
