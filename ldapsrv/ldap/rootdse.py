"""The root DSE and the subschema subentry: what clients read before anything
else (SSSD and Synology do it anonymously on every connection)."""

from __future__ import annotations

from collections.abc import Sequence

from ldapsrv import __version__
from ldapsrv.directory.entries import Attribute
from ldapsrv.directory.filtering import SUBSCHEMA_DN, evaluate
from ldapsrv.directory.filters import Filter
from ldapsrv.directory.schema import Schema

PAGED_RESULTS = "1.2.840.113556.1.4.319"
PASSWORD_POLICY_REQUEST = "1.3.6.1.4.1.42.2.27.8.5.1"
DEREF = "1.3.6.1.4.1.4203.666.5.16"
MANAGE_DSA_IT = "2.16.840.1.113730.3.4.2"
START_TLS = "1.3.6.1.4.1.1466.20037"
PASSWORD_MODIFY = "1.3.6.1.4.1.4203.1.11.1"
WHO_AM_I = "1.3.6.1.4.1.4203.1.11.3"
NOTICE_OF_DISCONNECTION = "1.3.6.1.4.1.1466.20036"

SUPPORTED_CONTROLS = (PAGED_RESULTS, MANAGE_DSA_IT)
SUPPORTED_EXTENSIONS = (START_TLS, PASSWORD_MODIFY, WHO_AM_I)
SUPPORTED_FEATURES = (
    "1.3.6.1.4.1.4203.1.5.1",  # all operational attributes: "+"
    "1.3.6.1.4.1.4203.1.5.3",  # absolute true (&) and false (|) filters
)


def root_dse_attributes(base_dn: str, starttls: bool) -> list[tuple[str, list[str]]]:
    extensions = [e for e in SUPPORTED_EXTENSIONS if starttls or e != START_TLS]
    return [
        ("objectClass", ["top", "extensibleObject"]),
        ("namingContexts", [base_dn]),
        ("subschemaSubentry", [SUBSCHEMA_DN]),
        ("supportedLDAPVersion", ["3"]),
        ("supportedControl", list(SUPPORTED_CONTROLS)),
        ("supportedExtension", extensions),
        ("supportedFeatures", list(SUPPORTED_FEATURES)),
        ("vendorName", ["ldapsrv"]),
        ("vendorVersion", [f"ldapsrv {__version__}"]),
    ]


def subschema_attributes(schema: Schema) -> list[tuple[str, list[str]]]:
    return [
        ("objectClass", ["top", "subentry", "subschema", "extensibleObject"]),
        ("cn", ["Subschema"]),
        *((kind, list(texts)) for kind, texts in schema.definitions.items()),
    ]


def select_special(
    attributes: list[tuple[str, list[str]]],
    requested: Sequence[str],
    schema: Schema,
    types_only: bool,
    user_attributes: frozenset[str],
) -> list[Attribute]:
    """Attribute selection for the root DSE / subschema.

    For the root DSE every attribute counts as returned by default (no list or
    ``*``): NAS devices and simple clients read namingContexts without naming
    it. For the subschema only ``user_attributes`` come with ``*``.
    """
    asked = [a.strip() for a in requested]
    everything = "+" in asked
    default = not asked or "*" in asked
    wanted: set[str] = set()
    for a in asked:
        at = schema.lookup(a)
        wanted.add(at.name.lower() if at is not None else a.lower())
    out: list[Attribute] = []
    for name, values in attributes:
        lower = name.lower()
        by_default = default and (not user_attributes or lower in user_attributes)
        if everything or by_default or lower in wanted:
            out.append((name, () if types_only else [v.encode() for v in values]))
    return out


def matches(flt: Filter, attributes: list[tuple[str, list[str]]], schema: Schema) -> bool:
    return evaluate(flt, {n.lower(): v for n, v in attributes}, schema) is True
