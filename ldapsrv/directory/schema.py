"""The schema ldapsrv publishes, read from ``schema/`` once at start-up.

``ldapsrv.schema`` holds RFC 4512 descriptions: they are published verbatim in
``cn=subschema`` and also tell the server each attribute's names, syntax and
matching rules, so the two can never disagree. ``attributes.toml`` says which
store field holds each attribute for each kind of entry.
"""

from __future__ import annotations

import os
import re
import tomllib
from dataclasses import dataclass
from enum import Enum
from functools import cache
from pathlib import Path


class SchemaError(Exception):
    """The schema files are inconsistent; raised at start-up, never at run time."""


class Syntax(Enum):
    STRING = "string"
    INTEGER = "integer"
    DN = "dn"
    TIME = "time"
    UUID = "uuid"
    BOOLEAN = "boolean"
    OID = "oid"
    OCTETS = "octets"


_SYNTAX_BY_OID = {
    "1.3.6.1.4.1.1466.115.121.1.27": Syntax.INTEGER,
    "1.3.6.1.4.1.1466.115.121.1.12": Syntax.DN,
    "1.3.6.1.4.1.1466.115.121.1.24": Syntax.TIME,
    "1.3.6.1.1.16.1": Syntax.UUID,
    "1.3.6.1.4.1.1466.115.121.1.7": Syntax.BOOLEAN,
    "1.3.6.1.4.1.1466.115.121.1.38": Syntax.OID,
    "1.3.6.1.4.1.1466.115.121.1.40": Syntax.OCTETS,
}


@dataclass(frozen=True, slots=True)
class AttributeType:
    oid: str
    names: tuple[str, ...]
    syntax: Syntax
    equality: str | None
    single_value: bool
    operational: bool
    definition: str

    @property
    def name(self) -> str:
        return self.names[0] if self.names else self.oid

    @property
    def case_exact(self) -> bool:
        return self.equality is not None and self.equality.lower().startswith("caseexact")


@dataclass(frozen=True, slots=True)
class Schema:
    attributes: dict[str, AttributeType]  # lower-case name or OID -> type
    definitions: dict[str, tuple[str, ...]]  # attributeTypes/objectClasses/... -> texts
    user_fields: dict[str, str]  # canonical attribute name -> store field
    group_fields: dict[str, str]
    service_fields: dict[str, str]

    def lookup(self, name: str) -> AttributeType | None:
        """Find an attribute by any of its names or its OID, ignoring case and options."""
        base = name.split(";", 1)[0].lower()
        return self.attributes.get(base)


_TOKEN = re.compile(r"'[^']*'|\(|\)|[^\s()']+")


def _parse_definition(text: str) -> dict[str, list[str] | bool]:
    tokens = _TOKEN.findall(text)
    if len(tokens) < 3 or tokens[0] != "(" or tokens[-1] != ")":
        raise SchemaError(f"not a schema description: {text[:60]}")
    fields: dict[str, list[str] | bool] = {"OID": [tokens[1]]}
    i, end = 2, len(tokens) - 1
    while i < end:
        key = tokens[i]
        i += 1
        if i < end and tokens[i] == "(":
            values: list[str] = []
            i += 1
            while i < end and tokens[i] != ")":
                if tokens[i] != "$":
                    values.append(tokens[i].strip("'"))
                i += 1
            i += 1
            fields[key] = values
        elif i < end and (tokens[i].startswith("'") or key in _VALUED):
            fields[key] = [tokens[i].strip("'")]
            i += 1
        else:
            fields[key] = True
    return fields


_VALUED = {"SUP", "EQUALITY", "ORDERING", "SUBSTR", "SYNTAX", "USAGE", "MUST", "MAY", "NAME"}


def _logical_lines(text: str) -> list[tuple[str, str]]:
    entries: list[tuple[str, str]] = []
    for raw in text.splitlines():
        if not raw.strip() or raw.lstrip().startswith("#"):
            continue
        if raw[0].isspace():
            if not entries:
                raise SchemaError("continuation line before any definition")
            kind, body = entries[-1]
            entries[-1] = (kind, f"{body} {raw.strip()}")
            continue
        kind, sep, body = raw.partition(":")
        if not sep:
            raise SchemaError(f"expected 'kind: ( ... )', got {raw!r}")
        entries.append((kind.strip(), body.strip()))
    return entries


def _build_attributes(texts: tuple[str, ...]) -> dict[str, AttributeType]:
    parsed = [(_parse_definition(t), t) for t in texts]
    by_name: dict[str, dict[str, list[str] | bool]] = {}
    for fields, _ in parsed:
        names = fields.get("NAME", [])
        assert isinstance(names, list)
        for key in [*names, fields["OID"][0]]:  # type: ignore[index]
            by_name[key.lower()] = fields

    def inherited(fields: dict[str, list[str] | bool], key: str, depth: int = 0) -> str | None:
        value = fields.get(key)
        if isinstance(value, list):
            return value[0]
        sup = fields.get("SUP")
        if isinstance(sup, list) and depth < 10:
            parent = by_name.get(sup[0].lower())
            if parent is None:
                raise SchemaError(f"unknown SUP {sup[0]}")
            return inherited(parent, key, depth + 1)
        return None

    result: dict[str, AttributeType] = {}
    for fields, text in parsed:
        names = fields.get("NAME", [])
        assert isinstance(names, list)
        syntax_oid = (inherited(fields, "SYNTAX") or "").split("{", 1)[0]
        usage = inherited(fields, "USAGE") or "userApplications"
        attr = AttributeType(
            oid=str(fields["OID"][0]),  # type: ignore[index]
            names=tuple(names),
            syntax=_SYNTAX_BY_OID.get(syntax_oid, Syntax.STRING),
            equality=inherited(fields, "EQUALITY"),
            single_value=bool(fields.get("SINGLE-VALUE", False)),
            operational=usage != "userApplications",
            definition=text,
        )
        for key in [*names, attr.oid]:
            result[key.lower()] = attr
    return result


def schema_dir() -> Path:
    configured = os.environ.get("LDAPSRV_SCHEMA_DIR")
    if configured:
        return Path(configured)
    return Path(__file__).resolve().parents[2] / "schema"


@cache
def load_schema(directory: Path | None = None) -> Schema:
    folder = directory or schema_dir()
    try:
        text = (folder / "ldapsrv.schema").read_text(encoding="utf-8")
        mapping = tomllib.loads((folder / "attributes.toml").read_text(encoding="utf-8"))
    except OSError as exc:
        raise SchemaError(f"cannot read the schema in {folder}: {exc}") from exc
    definitions: dict[str, list[str]] = {}
    for kind, body in _logical_lines(text):
        definitions.setdefault(kind, []).append(body)
    frozen = {k: tuple(v) for k, v in definitions.items()}
    attributes = _build_attributes(frozen.get("attributeTypes", ()))
    fields: dict[str, dict[str, str]] = {}
    for kind in ("user", "group", "service"):
        table = mapping.get(kind, {})
        fields[kind] = {}
        for attr_name, field in table.items():
            attr = attributes.get(attr_name.lower())
            if attr is None:
                raise SchemaError(f"attributes.toml [{kind}] {attr_name}: not in ldapsrv.schema")
            fields[kind][attr.name] = field
    return Schema(attributes, frozen, fields["user"], fields["group"], fields["service"])
