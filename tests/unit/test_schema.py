"""The published schema: parsed from schema/, consistent with itself and the field map."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from ldapsrv.directory.filtering import CLASSES
from ldapsrv.directory.schema import (
    Schema,
    SchemaError,
    Syntax,
    _parse_definition,
    load_schema,
    schema_dir,
)


@pytest.fixture(scope="module")
def schema() -> Schema:
    return load_schema()


def names_in(definitions: tuple[str, ...]) -> set[str]:
    out: set[str] = set()
    for text in definitions:
        fields = _parse_definition(text)
        for key in ("NAME", "OID"):
            value = fields.get(key, [])
            assert isinstance(value, list)
            out.update(v.lower() for v in value)
    return out


@pytest.mark.parametrize("name", ["cn", "CN", "commonName", "2.5.4.3", "cn;lang-en", "Cn;binary"])
def test_lookup_by_any_name_oid_or_case_ignoring_options(schema: Schema, name: str) -> None:
    at = schema.lookup(name)
    assert at is not None
    assert at.name == "cn"
    assert at.oid == "2.5.4.3"


def test_unknown_attributes_are_none(schema: Schema) -> None:
    assert schema.lookup("sudoUser") is None
    assert schema.lookup("") is None


@pytest.mark.parametrize(
    ("name", "syntax", "equality", "single", "operational", "case_exact"),
    [
        # cn inherits everything from its SUP name
        ("cn", Syntax.STRING, "caseIgnoreMatch", False, False, False),
        ("uid", Syntax.STRING, "caseIgnoreMatch", False, False, False),
        ("memberUid", Syntax.STRING, "caseExactIA5Match", False, False, True),
        ("homeDirectory", Syntax.STRING, "caseExactIA5Match", True, False, True),
        ("uidNumber", Syntax.INTEGER, "integerMatch", True, False, False),
        ("member", Syntax.DN, "distinguishedNameMatch", False, False, False),
        ("objectClass", Syntax.OID, "objectIdentifierMatch", False, False, False),
        ("entryUUID", Syntax.UUID, "UUIDMatch", True, True, False),
        ("createTimestamp", Syntax.TIME, "generalizedTimeMatch", True, True, False),
        ("hasSubordinates", Syntax.BOOLEAN, "booleanMatch", True, True, False),
        ("userPassword", Syntax.OCTETS, "octetStringMatch", False, False, False),
        ("namingContexts", Syntax.DN, None, False, True, False),
    ],
)
def test_attribute_properties(
    schema: Schema,
    name: str,
    syntax: Syntax,
    equality: str | None,
    single: bool,
    operational: bool,
    case_exact: bool,
) -> None:
    at = schema.lookup(name)
    assert at is not None
    assert (at.name, at.syntax, at.equality, at.single_value, at.operational) == (
        name,
        syntax,
        equality,
        single,
        operational,
    )
    assert at.case_exact is case_exact


def test_definitions_are_published_verbatim_by_kind(schema: Schema) -> None:
    assert set(schema.definitions) == {
        "attributeTypes",
        "objectClasses",
        "matchingRules",
        "ldapSyntaxes",
    }
    cn = schema.lookup("cn")
    assert cn is not None
    assert cn.definition in schema.definitions["attributeTypes"]
    assert cn.definition == "( 2.5.4.3 NAME ( 'cn' 'commonName' ) SUP name )"
    # continuation lines are joined with one space
    assert all("\n" not in t for texts in schema.definitions.values() for t in texts)


def test_field_map_is_keyed_by_canonical_names(schema: Schema) -> None:
    assert schema.user_fields["cn"] == "name"
    assert schema.user_fields["uid"] == "name"
    assert schema.user_fields["uidNumber"] == "uid_number"
    assert schema.group_fields["gidNumber"] == "gid_number"
    assert "uidNumber" not in schema.group_fields
    assert "userPassword" not in schema.user_fields


def test_every_class_the_server_emits_is_defined(schema: Schema) -> None:
    defined = names_in(schema.definitions["objectClasses"])
    for classes in CLASSES.values():
        assert {c.lower() for c in classes} <= defined


def test_every_attribute_a_class_names_is_defined(schema: Schema) -> None:
    for text in schema.definitions["objectClasses"]:
        fields = _parse_definition(text)
        for key in ("MUST", "MAY"):
            for name in fields.get(key, []) or []:
                assert schema.lookup(str(name)) is not None, (name, text)


def test_every_matching_rule_and_syntax_referenced_is_published(schema: Schema) -> None:
    rules = names_in(schema.definitions["matchingRules"])
    syntaxes = names_in(schema.definitions["ldapSyntaxes"])
    dangling = []
    for text in schema.definitions["attributeTypes"]:
        fields = _parse_definition(text)
        for key in ("EQUALITY", "ORDERING", "SUBSTR"):
            value = fields.get(key)
            if isinstance(value, list) and value[0].lower() not in rules:
                dangling.append(value[0])
        syntax = fields.get("SYNTAX")
        if isinstance(syntax, list) and syntax[0].split("{")[0] not in syntaxes:
            dangling.append(syntax[0])
    assert dangling == []


def test_schema_dir_can_be_moved_by_environment(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("LDAPSRV_SCHEMA_DIR", str(tmp_path))
    assert schema_dir() == tmp_path
    monkeypatch.delenv("LDAPSRV_SCHEMA_DIR")
    assert (schema_dir() / "ldapsrv.schema").is_file()


def make_schema(tmp_path: Path, schema_text: str, mapping: str = "") -> Path:
    (tmp_path / "ldapsrv.schema").write_text(schema_text, encoding="utf-8")
    (tmp_path / "attributes.toml").write_text(mapping, encoding="utf-8")
    return tmp_path


GOOD = (
    "# comment\n"
    "attributeTypes: ( 1.1 NAME 'base' EQUALITY caseExactMatch\n"
    "  SYNTAX 1.3.6.1.4.1.1466.115.121.1.15 )\n"
    "attributeTypes: ( 1.2 NAME ( 'child' 'kid' ) SUP base SINGLE-VALUE )\n"
    "attributeTypes: ( 1.3 NAME 'n' SYNTAX 1.3.6.1.4.1.1466.115.121.1.27 "
    "USAGE directoryOperation )\n"
)


def test_a_small_schema_with_inheritance(tmp_path: Path) -> None:
    schema = load_schema(make_schema(tmp_path, GOOD, '[user]\nkid = "name"\n'))
    child = schema.lookup("KID")
    assert child is not None
    assert (child.name, child.syntax, child.equality, child.single_value) == (
        "child",
        Syntax.STRING,
        "caseExactMatch",
        True,
    )
    assert child.case_exact
    n = schema.lookup("1.3")
    assert n is not None and n.operational and n.syntax is Syntax.INTEGER
    assert schema.user_fields == {"child": "name"}
    assert schema.group_fields == {}


@pytest.mark.parametrize(
    ("schema_text", "mapping", "fragment"),
    [
        (GOOD, '[user]\nnope = "name"\n', "attributes.toml [user] nope"),
        ("  ( 1.1 NAME 'x' )\n", "", "continuation line before any definition"),
        ("attributeTypes ( 1.1 )\n", "", "expected 'kind: ( ... )'"),
        ("attributeTypes: 1.1 NAME 'x'\n", "", "not a schema description"),
        ("attributeTypes: ( 1.1 NAME 'x' SUP missing )\n", "", "unknown SUP missing"),
    ],
)
def test_inconsistent_schema_files_raise_schema_error(
    tmp_path: Path, schema_text: str, mapping: str, fragment: str
) -> None:
    with pytest.raises(SchemaError, match=re.escape(fragment)):
        load_schema(make_schema(tmp_path, schema_text, mapping))


def test_a_missing_schema_directory_raises_schema_error(tmp_path: Path) -> None:
    with pytest.raises(SchemaError, match="cannot read the schema"):
        load_schema(tmp_path / "absent")
