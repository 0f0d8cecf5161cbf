"""Account and group name rules (ldapsrv.directory.names)."""

from __future__ import annotations

import pytest

from ldapsrv.directory.names import (
    MAX_NAME_LENGTH,
    validate_account_name,
    validate_group_name,
)
from ldapsrv.errors import InvalidValue

VALIDATORS = [validate_account_name, validate_group_name]


@pytest.mark.parametrize("validate", VALIDATORS)
@pytest.mark.parametrize(
    "name",
    [
        "alice",
        "Alice",
        "a",
        "_svc",
        "0day",
        "j.doe",
        "web-admins",
        "a" * MAX_NAME_LENGTH,
        "x.y_z-0",
    ],
)
def test_valid_names_are_returned_unchanged(validate, name):
    assert validate(name) == name


@pytest.mark.parametrize(
    ("name", "rule"),
    [
        ("", "1 to 150 characters"),
        ("a" * (MAX_NAME_LENGTH + 1), "1 to 150 characters"),
        ("al ice", "may contain only"),
        ("alice@example", "may contain only"),
        ("émile", "may contain only"),
        ("a,b", "may contain only"),
        ("a/b", "may contain only"),
        ("-alice", "must start with a letter, a digit or an underscore"),
        (".alice", "must start with a letter, a digit or an underscore"),
        ("alice.", "must not end with a dot"),
    ],
)
@pytest.mark.parametrize("validate", VALIDATORS)
def test_invalid_names_are_refused_with_the_rule_they_break(validate, name, rule):
    with pytest.raises(InvalidValue, match=rule):
        validate(name)


def test_messages_say_which_kind_of_name_is_wrong():
    with pytest.raises(InvalidValue, match=r"^account name"):
        validate_account_name("bad name")
    with pytest.raises(InvalidValue, match=r"^group name"):
        validate_group_name("bad name")


def test_non_strings_are_refused_not_crashed_on():
    with pytest.raises(InvalidValue, match=r"must be a string"):
        validate_account_name(42)  # type: ignore[arg-type]
