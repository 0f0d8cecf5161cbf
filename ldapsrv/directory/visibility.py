"""Who may see what. Until access control lands (issue 4): every bound account
may read the directory; anonymous clients see only the rootDSE and the
subschema unless ``security.anonymous_read`` is set."""

from __future__ import annotations

from dataclasses import dataclass

from ldapsrv.directory import predicates as p
from ldapsrv.directory.dit import Kind


@dataclass(frozen=True, slots=True)
class Viewer:
    account_name: str | None
    may_read_directory: bool

    def restrict(self, kind: Kind, predicate: p.Predicate) -> p.Predicate:
        """The predicate limited to what this viewer may see (part of the SQL)."""
        return predicate if self.may_read_directory else p.FALSE
