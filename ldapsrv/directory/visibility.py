"""Who may see what (DESIGN.md section 3, issue 4).

Anonymous clients see the rootDSE and the subschema only, unless
``security.anonymous_read`` opens the whole directory. A bound account sees what
its grants allow; that decision is made in SQL (``VisibleTo``), as part of the
WHERE clause of every query, so paging, size limits and counts only ever see
visible rows, a restricted search costs no more than an unrestricted one, and a
revoked grant takes effect on the next search. Membership values (member,
memberUid, memberOf) are trimmed to visible counterparts, in filters as in
returned entries, so that nothing hidden leaks through a group's member list.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from ldapsrv.directory import predicates as p
from ldapsrv.directory.dit import Kind
from ldapsrv.directory.records import EffectivePermissions


@dataclass(frozen=True, slots=True)
class Viewer:
    """The identity a search runs as.

    ``account_name`` is None for anonymous clients. ``permissions`` is the
    snapshot taken at bind time; it decides only what the SQL cannot (whether
    state attributes such as the lock of a disabled person are shown).
    """

    account_name: str | None
    may_read_directory: bool
    permissions: EffectivePermissions = field(default_factory=EffectivePermissions)

    @property
    def restricted(self) -> bool:
        """Whether rows are filtered by the viewer's grants (a bound account)."""
        return self.account_name is not None

    @property
    def sees_state(self) -> bool:
        """Attributes revealing account state are for full-directory searchers."""
        if self.account_name is None:
            return self.may_read_directory
        return self.permissions.full_directory

    def restrict(self, kind: Kind, predicate: p.Predicate) -> p.Predicate:
        """The predicate limited to what this viewer may see (part of the SQL)."""
        if not self.may_read_directory:
            return p.FALSE
        if self.account_name is None or predicate == p.FALSE:
            return predicate  # anonymous_read: the whole directory; or nothing to see
        restricted = with_visibility(predicate, self.account_name, self.sees_state)
        return p.AllOf((restricted, p.VisibleTo(self.account_name)))

    @property
    def visible_to(self) -> str | None:
        """The name that trims membership lists, or None when nothing is trimmed."""
        return self.account_name


def with_visibility(pred: p.Predicate, viewer: str, sees_state: bool) -> p.Predicate:
    """Make every membership test count only counterparts ``viewer`` may see, so a
    filter like ``(member=cn=hidden,...)`` cannot reveal a hidden member; and make
    state tests FALSE (the attribute absent) for a viewer not shown state."""
    match pred:
        case p.AllOf(items):
            return p.AllOf(tuple(with_visibility(i, viewer, sees_state) for i in items))
        case p.AnyOf(items):
            return p.AnyOf(tuple(with_visibility(i, viewer, sees_state) for i in items))
        case p.Negation(item):
            return p.Negation(with_visibility(item, viewer, sees_state))
        case p.InGroup() | p.HasMember() | p.HasAnyMember() | p.InAnyGroup():
            return replace(pred, visible_to=viewer)
        case p.Disabled():
            return pred if sees_state else p.FALSE
    return pred
