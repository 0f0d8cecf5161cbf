"""Test support for the admin plane: an in-memory directory and a synchronous
``BlockingRunner``, plus a tiny control-socket server for end-to-end tests.

Shipped in the package (like ``twisted.internet.testing``) so unit tests,
e2e tests and later issues share one fake that behaves like the store: the
same errors for the same mistakes, case-insensitive names shared by people
and service accounts, numbers allocated from the configured ranges and never
reused, tokens that go with their account, and an audit trail (``audit``).

``python -m ldapsrv.admin.testing --socket PATH`` serves the control socket
over the in-memory directory until SIGTERM.
"""

from __future__ import annotations

import argparse
import sys
import threading
import uuid
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar

from twisted.internet.defer import Deferred, fail, succeed

from ldapsrv.admin.ports import NewUser
from ldapsrv.auth.ports import NewSecret, NewToken
from ldapsrv.directory.names import validate_account_name, validate_group_name
from ldapsrv.directory.records import (
    MANAGEMENT_PERMISSIONS,
    AccountKind,
    AuditEvent,
    EffectivePermissions,
    GrantRecord,
    GroupRecord,
    Permission,
    ServiceAccountRecord,
    TokenRecord,
    UserRecord,
)
from ldapsrv.errors import AlreadyExists, InvalidValue, NotFound, RangeExhausted
from ldapsrv.store.tokens import validate_token_identifier

if TYPE_CHECKING:
    from ldapsrv.admin.context import AdminContext, Caller
    from ldapsrv.admin.errors import AdminError
    from ldapsrv.admin.ports import BlockingRunner
    from ldapsrv.config import Config

P = ParamSpec("P")
T = TypeVar("T")


class SyncBlocking:
    """Runs the work at once on the calling thread: deterministic unit tests."""

    def __init__(self) -> None:
        self.calls = 0

    def run(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> Deferred[T]:
        self.calls += 1
        try:
            return succeed(fn(*args, **kwargs))
        except Exception:
            return fail()


class InMemoryTokenTable:
    """The token rows of an in-memory ``TokenStore``: everything that needs only the
    rows, a lock and an audit sink. ``InMemoryDirectory`` and the token unit tests'
    fake both build on it, so the fakes agree with each other and with the store's
    rules (compare-and-swap on ``generation``, expiry at the instant)."""

    _tokens: dict[str, TokenRecord]  # identifier.lower() -> row
    _lock: Any  # a threading.Lock or RLock

    def _record_audit(self, event: AuditEvent | None) -> None:
        raise NotImplementedError

    def _token(self, identifier: str) -> TokenRecord:
        try:
            return self._tokens[identifier.lower()]
        except KeyError:
            raise NotFound(f"no token named {identifier!r}") from None

    def get_token(self, identifier: str) -> TokenRecord:
        with self._lock:
            return self._token(identifier)

    def find_token(self, lookup_id: str) -> TokenRecord | None:
        with self._lock:
            return next((t for t in self._tokens.values() if t.lookup_id == lookup_id), None)

    def delete_token(self, identifier: str, audit: AuditEvent | None = None) -> None:
        with self._lock:
            del self._tokens[self._token(identifier).identifier.lower()]
            self._record_audit(audit)

    def replace_secret(
        self,
        identifier: str,
        expected_generation: int,
        secret: NewSecret,
        audit: AuditEvent | None = None,
    ) -> TokenRecord | None:
        with self._lock:
            row = self._token(identifier)
            if row.generation != expected_generation:
                return None
            updated = replace(
                row,
                lookup_id=secret.lookup_id,
                secret_hash=secret.secret_hash,
                encrypted_value=secret.encrypted_value,
                expires_at=secret.expires_at,
                rotated_at=secret.rotated_at,
                hook_pending=secret.hook_pending,
                generation=row.generation + 1,
            )
            self._tokens[row.identifier.lower()] = updated
            self._record_audit(audit)
            return updated

    def tokens_due(self, now: datetime, limit: int = 100) -> list[TokenRecord]:
        with self._lock:
            due = [
                t
                for t in self._tokens.values()
                if t.expiring and t.expires_at is not None and t.expires_at <= now
            ]
            return sorted(due, key=lambda t: (t.expires_at or now, t.id))[:limit]

    def next_expiry(self) -> datetime | None:
        with self._lock:
            times = [t.expires_at for t in self._tokens.values() if t.expiring and t.expires_at]
            return min(times, default=None)

    def tokens_with_pending_hook(self) -> list[TokenRecord]:
        with self._lock:
            return [t for t in self._tokens.values() if t.hook_pending]

    def clear_hook_pending(self, identifier: str, generation: int) -> None:
        with self._lock:
            row = self._tokens.get(identifier.lower())
            if row is not None and row.generation == generation:
                self._tokens[identifier.lower()] = replace(row, hook_pending=False)

    def record_token_use(self, lookup_id: str, at: datetime, address: str | None) -> None:
        with self._lock:
            for key, row in self._tokens.items():
                if row.lookup_id == lookup_id:
                    self._tokens[key] = replace(row, last_used_at=at, last_used_address=address)


class InMemoryDirectory(InMemoryTokenTable):
    """A DirectoryPort, TokenStore, ServiceAccountStore, PermissionStore and
    AuditReader over dicts, thread-safe so it can sit behind a real thread pool."""

    def __init__(
        self,
        uid_range: tuple[int, int] = (10000, 59999),
        gid_range: tuple[int, int] = (10000, 59999),
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._lock = threading.Lock()
        self._users: dict[str, UserRecord] = {}
        self._machines: dict[str, ServiceAccountRecord] = {}  # service accounts, both kinds
        self._groups: dict[str, GroupRecord] = {}
        self._members: dict[str, set[str]] = {}  # group key -> account keys (either kind)
        self._tokens: dict[str, TokenRecord] = {}  # identifier.lower() -> row
        self.audit: list[AuditEvent] = []
        self.audit_times: list[datetime] = []  # when each event of ``audit`` was written
        self.disabled: set[str] = set()  # keys of disabled people
        # (id, permission, account key, group key, scope key, created)
        self._grants: list[
            tuple[int, Permission, str | None, str | None, str | None, datetime]
        ] = []
        self.password_hashes: dict[str, str | None] = {}
        self._uid_range = uid_range
        self._gid_range = gid_range
        self._used_uids: set[int] = set()
        self._used_gids: set[int] = set()
        self._next_id = 1
        self._clock = clock

    # helpers -----------------------------------------------------------------

    @staticmethod
    def _check_name(kind: str, name: str) -> str:
        if kind == "user":
            validate_account_name(name)
        else:
            validate_group_name(name)
        return name.lower()

    def _allocate(self, used: set[int], bounds: tuple[int, int], what: str) -> int:
        for number in range(bounds[0], bounds[1] + 1):
            if number not in used:
                return number
        raise RangeExhausted(f"no free {what} left in {bounds[0]}-{bounds[1]}")

    def _user(self, name: str) -> UserRecord:
        key = name.lower()
        if key not in self._users:
            raise NotFound(f"no user named {name!r}")
        groups = tuple(
            sorted(self._groups[g].name for g, members in self._members.items() if key in members)
        )
        return replace(self._users[key], group_names=groups, disabled=key in self.disabled)

    def _account_name(self, key: str) -> str:
        return self._users[key].name if key in self._users else self._machines[key].name

    def _groups_of(self, key: str) -> tuple[str, ...]:
        return tuple(
            sorted(self._groups[g].name for g, members in self._members.items() if key in members)
        )

    def _group(self, name: str) -> GroupRecord:
        key = name.lower()
        if key not in self._groups:
            raise NotFound(f"no group named {name!r}")
        members = tuple(sorted(self._account_name(u) for u in self._members[key]))
        return replace(self._groups[key], member_names=members)

    def _refuse_taken_account(self, name: str) -> None:
        key = name.lower()
        if key in self._users:
            raise AlreadyExists(f"a user named {self._users[key].name!r} already exists")
        if key in self._machines:
            existing = self._machines[key]
            raise AlreadyExists(
                f"an account named {existing.name!r} already exists (a {existing.kind.value})"
            )

    def _new_id(self) -> int:
        self._next_id += 1
        return self._next_id

    # DirectoryPort -----------------------------------------------------------

    def create_user(self, spec: NewUser, audit: AuditEvent | None = None) -> UserRecord:
        key = self._check_name("user", spec.name)
        with self._lock:
            self._refuse_taken_account(spec.name)
            if spec.uid_number is not None and spec.uid_number in self._used_uids:
                raise AlreadyExists(f"uid number {spec.uid_number} is already in use")
            uid = spec.uid_number or self._allocate(self._used_uids, self._uid_range, "uid")
            gid = spec.gid_number or uid  # the store uses a primary group; enough here
            now = self._clock()
            self._users[key] = UserRecord(
                id=self._new_id(),
                uuid=str(uuid.uuid4()),
                name=spec.name,
                uid_number=uid,
                gid_number=gid,
                display_name=spec.display_name,
                given_name=spec.given_name,
                surname=spec.surname,
                mail=spec.mail,
                home_directory=spec.home_directory or f"/home/{spec.name}",
                login_shell=spec.login_shell or "/bin/bash",
                gecos=spec.gecos,
                created=now,
                modified=now,
            )
            self._used_uids.add(uid)
            self.password_hashes[key] = spec.password_hash
            self._record_audit(audit)
            return self._user(key)

    def get_user(self, name: str) -> UserRecord:
        with self._lock:
            return self._user(name)

    def list_users(self) -> list[UserRecord]:
        with self._lock:
            return [self._user(k) for k in sorted(self._users)]

    def delete_user(self, name: str, audit: AuditEvent | None = None) -> None:
        with self._lock:
            key = self._user(name).name.lower()
            del self._users[key]
            self.password_hashes.pop(key, None)
            self.disabled.discard(key)
            self._forget_account(key)
            self._record_audit(audit)

    def create_group(
        self,
        name: str,
        *,
        gid_number: int | None = None,
        description: str | None = None,
        audit: AuditEvent | None = None,
    ) -> GroupRecord:
        key = self._check_name("group", name)
        with self._lock:
            if key in self._groups:
                raise AlreadyExists(f"a group named {name!r} already exists")
            if gid_number is not None and gid_number in self._used_gids:
                raise AlreadyExists(f"gid number {gid_number} is already in use")
            gid = gid_number or self._allocate(self._used_gids, self._gid_range, "gid")
            now = self._clock()
            self._groups[key] = GroupRecord(
                id=self._new_id(),
                uuid=str(uuid.uuid4()),
                name=name,
                gid_number=gid,
                description=description,
                created=now,
                modified=now,
            )
            self._members[key] = set()
            self._used_gids.add(gid)
            self._record_audit(audit)
            return self._group(key)

    def get_group(self, name: str) -> GroupRecord:
        with self._lock:
            return self._group(name)

    def list_groups(self) -> list[GroupRecord]:
        with self._lock:
            return [self._group(k) for k in sorted(self._groups)]

    def delete_group(self, name: str, audit: AuditEvent | None = None) -> None:
        with self._lock:
            key = self._group(name).name.lower()
            del self._groups[key]
            del self._members[key]
            self._grants = [g for g in self._grants if key not in (g[3], g[4])]
            self._record_audit(audit)

    def _member_key(self, name: str) -> str:
        key = name.lower()
        if key in self._machines:
            return key
        return self._user(name).name.lower()

    def add_member(self, group: str, user: str, audit: AuditEvent | None = None) -> None:
        with self._lock:
            group_key, user_key = self._group(group).name.lower(), self._member_key(user)
            if user_key in self._members[group_key]:
                raise AlreadyExists(f"{user!r} is already a member of {group!r}")
            self._members[group_key].add(user_key)
            self._record_audit(audit)

    def remove_member(self, group: str, user: str, audit: AuditEvent | None = None) -> None:
        with self._lock:
            group_key, user_key = self._group(group).name.lower(), self._member_key(user)
            if user_key not in self._members[group_key]:
                raise NotFound(f"{user!r} is not a member of {group!r}")
            self._members[group_key].discard(user_key)
            self._record_audit(audit)

    def set_password_hash(
        self, name: str, password_hash: str, audit: AuditEvent | None = None
    ) -> None:
        with self._lock:
            key = self._user(name).name.lower()
            self.password_hashes[key] = password_hash
            self._record_audit(audit)

    def set_disabled(self, name: str, disabled: bool, audit: AuditEvent | None = None) -> None:
        with self._lock:
            key = self._user(name).name.lower()
            if disabled:
                self.disabled.add(key)
            else:
                self.disabled.discard(key)
            self._record_audit(audit)

    def _forget_account(self, key: str) -> None:
        """What deleting an account takes with it: memberships and tokens."""
        for members in self._members.values():
            members.discard(key)
        for token_key, token in list(self._tokens.items()):
            if token.account_name.lower() == key:
                del self._tokens[token_key]
        self._grants = [g for g in self._grants if g[2] != key]

    def _record_audit(self, event: AuditEvent | None) -> None:
        if event is not None:
            self.audit.append(event)
            self.audit_times.append(self._clock())

    # AuditReader -------------------------------------------------------------

    def list_audit(
        self, *, since: datetime | None = None, limit: int = 1000
    ) -> list[tuple[datetime, AuditEvent]]:
        with self._lock:
            events = [
                (at, event)
                for at, event in zip(self.audit_times, self.audit, strict=True)
                if since is None or at >= since
            ]
        return events[-limit:] if limit > 0 else []

    # PermissionStore ---------------------------------------------------------

    def _grant_record(
        self, row: tuple[int, Permission, str | None, str | None, str | None, datetime]
    ) -> GrantRecord:
        grant_id, permission, account, group, scope, created = row
        return GrantRecord(
            id=grant_id,
            permission=permission,
            account_name=None if account is None else self._account_name(account),
            group_name=None if group is None else self._groups[group].name,
            scope_group=None if scope is None else self._groups[scope].name,
            created=created,
        )

    def _grant_keys(
        self,
        permission: Permission | str,
        account: str | None,
        group: str | None,
        scope_group: str | None,
        *,
        shape: bool = True,
    ) -> tuple[Permission, str | None, str | None, str | None]:
        """The same rules, in the same order, as ``ldapsrv.store.permissions``
        (a revoke checks names and the subject, not the shape)."""
        try:
            perm = Permission(permission)
        except ValueError:
            raise InvalidValue(f"unknown permission {permission!r}") from None
        if (account is None) == (group is None):
            raise InvalidValue("a grant goes to exactly one account or one group")
        if shape and perm is Permission.SEARCH and scope_group is None:
            raise InvalidValue("permission 'search' needs a scope group")
        if shape and perm is Permission.SEARCH_FULL_DIRECTORY and scope_group is not None:
            raise InvalidValue("permission 'search_full_directory' takes no scope group")
        if shape and perm in MANAGEMENT_PERMISSIONS and scope_group is not None:
            raise InvalidValue(f"permission '{perm.value}' is a management permission")
        account_key = group_key = scope_key = None
        if account is not None:
            account_key = account.lower()
            if account_key not in self._users and account_key not in self._machines:
                raise NotFound(f'account "{account}" not found')
        if group is not None:
            group_key = self._group(group).name.lower()
        if scope_group is not None:
            scope_key = scope_group.lower()
            if scope_key not in self._groups:
                raise NotFound(f'scope group "{scope_group}" not found')
        return perm, account_key, group_key, scope_key

    def grant(
        self,
        permission: Permission,
        *,
        account: str | None = None,
        group: str | None = None,
        scope_group: str | None = None,
        audit: AuditEvent | None = None,
    ) -> GrantRecord:
        with self._lock:
            keys = self._grant_keys(permission, account, group, scope_group)
            machine = self._machines.get(keys[1] or "")
            if machine is not None and machine.kind is AccountKind.INTERNAL_SERVICE_ACCOUNT:
                raise InvalidValue(
                    f'"{machine.name}" is an internal service account: it cannot receive a '
                    "grant directly; grant it to a group the account is in"
                )
            if any(row[1:5] == keys for row in self._grants):
                raise AlreadyExists(f"grant {keys[0].value} already exists")
            row = (self._new_id(), *keys, self._clock())
            self._grants.append(row)
            self._record_audit(audit)
            return self._grant_record(row)

    def revoke(
        self,
        permission: Permission,
        *,
        account: str | None = None,
        group: str | None = None,
        scope_group: str | None = None,
        audit: AuditEvent | None = None,
    ) -> None:
        with self._lock:
            keys = self._grant_keys(permission, account, group, scope_group, shape=False)
            kept = [row for row in self._grants if row[1:5] != keys]
            if len(kept) == len(self._grants):
                raise NotFound(f"there is no grant {keys[0].value} like that")
            self._grants = kept
            self._record_audit(audit)

    def list_grants(
        self, *, account: str | None = None, group: str | None = None
    ) -> list[GrantRecord]:
        with self._lock:
            rows = self._grants
            if account is not None:
                key = account.lower()
                if key not in self._users and key not in self._machines:
                    raise NotFound(f'account "{account}" not found')
                rows = [r for r in rows if r[2] == key]
            if group is not None:
                key = self._group(group).name.lower()
                rows = [r for r in rows if r[3] == key]
            return [self._grant_record(r) for r in rows]

    def effective_permissions(self, account_name: str) -> EffectivePermissions:
        with self._lock:
            key = account_name.lower()
            own = {g for g, members in self._members.items() if key in members}
            held = [r for r in self._grants if r[2] == key or r[3] in own]
            return EffectivePermissions(
                full_directory=any(r[1] is Permission.SEARCH_FULL_DIRECTORY for r in held),
                search_scopes=frozenset(
                    r[4] for r in held if r[1] is Permission.SEARCH and r[4] is not None
                ),
                reset_password_everyone=any(
                    r[1] is Permission.RESET_PASSWORD and r[4] is None for r in held
                ),
                reset_password_scopes=frozenset(
                    r[4] for r in held if r[1] is Permission.RESET_PASSWORD and r[4] is not None
                ),
                management=frozenset(r[1] for r in held if r[1] in MANAGEMENT_PERMISSIONS),
            )

    def is_member(self, group_name: str, account_name: str) -> bool:
        with self._lock:
            return account_name.lower() in self._members.get(group_name.lower(), set())

    # ServiceAccountStore -----------------------------------------------------

    def _machine(self, name: str) -> ServiceAccountRecord:
        key = name.lower()
        if key not in self._machines:
            raise NotFound(f"no service account named {name!r}")
        return replace(self._machines[key], group_names=self._groups_of(key))

    def create_service_account(
        self,
        name: str,
        *,
        kind: AccountKind = AccountKind.SERVICE_ACCOUNT,
        description: str | None = None,
        create_group: bool = False,
        token: NewToken | None = None,
        audit: AuditEvent | None = None,
    ) -> tuple[ServiceAccountRecord, TokenRecord | None]:
        key = self._check_name("user", name)
        if kind is AccountKind.USER:
            raise InvalidValue("a service account's kind must not be user")
        if create_group:
            validate_group_name(name)
        if token is not None:
            validate_token_identifier(token.identifier)
            if token.account_name.lower() != key:
                raise InvalidValue(f"the first token of {name!r} must belong to it")
        with self._lock:  # all checks before any change: all or nothing
            self._refuse_taken_account(name)
            if create_group and key in self._groups:
                raise AlreadyExists(f"a group named {name!r} already exists")
            if token is not None and token.identifier.lower() in self._tokens:
                raise AlreadyExists(f"a token named {token.identifier!r} already exists")
            now = self._clock()
            self._machines[key] = ServiceAccountRecord(
                id=self._new_id(),
                uuid=str(uuid.uuid4()),
                name=name,
                kind=kind,
                description=description,
                created=now,
                modified=now,
            )
            if create_group:
                gid = self._allocate(self._used_gids, self._gid_range, "gid")
                self._groups[key] = GroupRecord(
                    id=self._new_id(),
                    uuid=str(uuid.uuid4()),
                    name=name,
                    gid_number=gid,
                    description=None,
                    created=now,
                    modified=now,
                )
                self._members[key] = {key}
                self._used_gids.add(gid)
            first = self._insert_token(token, kind) if token is not None else None
            self._record_audit(audit)
            return self._machine(key), first

    def get_service_account(self, name: str) -> ServiceAccountRecord:
        with self._lock:
            return self._machine(name)

    def list_service_accounts(self, *, include_internal: bool = True) -> list[ServiceAccountRecord]:
        with self._lock:
            return [
                self._machine(k)
                for k in sorted(self._machines)
                if include_internal
                or self._machines[k].kind is not AccountKind.INTERNAL_SERVICE_ACCOUNT
            ]

    def delete_service_account(
        self, name: str, *, allow_internal: bool = False, audit: AuditEvent | None = None
    ) -> None:
        with self._lock:
            account = self._machine(name)
            if account.kind is AccountKind.INTERNAL_SERVICE_ACCOUNT and not allow_internal:
                raise InvalidValue(
                    f"{account.name!r} is an internal service account managed by the server"
                )
            key = account.name.lower()
            del self._machines[key]
            self._forget_account(key)
            self._record_audit(audit)

    def record_audit(self, event: AuditEvent) -> None:
        with self._lock:
            self._record_audit(event)

    # TokenStore --------------------------------------------------------------

    def _insert_token(self, spec: NewToken, kind: AccountKind) -> TokenRecord:
        if spec.expiring != (spec.expires_at is not None):
            raise InvalidValue("an expiring token needs an expiry, a non-expiring one none")
        record = TokenRecord(
            id=self._new_id(),
            identifier=spec.identifier,
            account_name=self._account_name(spec.account_name.lower()),
            account_kind=kind,
            intent=spec.intent,
            description=spec.description,
            lookup_id=spec.lookup_id,
            secret_hash=spec.secret_hash,
            encrypted_value=spec.encrypted_value,
            expiring=spec.expiring,
            expires_at=spec.expires_at,
            lifetime_seconds=spec.lifetime_seconds,
            created=self._clock(),
            last_used_at=None,
            last_used_address=None,
            rotated_at=None,
            generation=1,
            hook_pending=False,
        )
        self._tokens[spec.identifier.lower()] = record
        return record

    def _account_kind(self, name: str) -> AccountKind:
        key = name.lower()
        if key in self._users:
            return AccountKind.USER
        if key in self._machines:
            return self._machines[key].kind
        raise NotFound(f"no account named {name!r}")

    def create_token(self, spec: NewToken, audit: AuditEvent | None = None) -> TokenRecord:
        validate_token_identifier(spec.identifier)
        with self._lock:
            if spec.identifier.lower() in self._tokens:
                raise AlreadyExists(f"a token named {spec.identifier!r} already exists")
            record = self._insert_token(spec, self._account_kind(spec.account_name))
            self._record_audit(audit)
            return record

    def list_tokens(self, account_name: str | None = None) -> list[TokenRecord]:
        with self._lock:
            if account_name is not None:
                self._account_kind(account_name)  # NotFound for nobody
            return [
                self._tokens[k]
                for k in sorted(self._tokens)
                if account_name is None
                or self._tokens[k].account_name.lower() == account_name.lower()
            ]


def in_memory_context(
    config: Config,
    directory: InMemoryDirectory | None = None,
    blocking: BlockingRunner | None = None,
    **extra: Any,
) -> AdminContext:
    """An AdminContext whose every store port is one InMemoryDirectory.

    ``extra`` sets the optional fields (``rotator``, ``vault``, ``clock``).
    """
    from ldapsrv.admin.context import AdminContext

    store = directory if directory is not None else InMemoryDirectory()
    return AdminContext(
        directory=store,
        blocking=blocking if blocking is not None else SyncBlocking(),
        config=config,
        tokens=store,
        service_accounts=store,
        permissions=extra.pop("permissions", store),
        audit_log=extra.pop("audit_log", store),
        **extra,
    )


class AdminHarness:
    """Runs commands through the real registry on an in-memory context and reports
    failures as the wire would (``AdminError`` with its kind), for unit tests."""

    def __init__(self, context: AdminContext, caller: Caller | None = None) -> None:
        from ldapsrv.admin.commands import build_registry
        from ldapsrv.admin.context import Caller

        self.context = context
        self.caller = caller if caller is not None else Caller("control-socket", 0, 0, 1)
        self.registry = build_registry()

    def call(self, command: str, **args: Any) -> Any:
        """The command's result; raises the AdminError the client would see."""
        from twisted.python.failure import Failure

        from ldapsrv.admin.errors import classify

        box: list[Any] = []
        self.registry.dispatch(self.context, self.caller, command, args).addBoth(box.append)
        if not box:
            raise AssertionError(f"{command} did not finish: is the BlockingRunner synchronous?")
        if isinstance(box[0], Failure):
            failure = box[0]
            mapped = classify(failure.value) if failure.value is not None else None
            if mapped is None:
                failure.raiseException()
            raise mapped
        return box[0]

    def error(self, command: str, **args: Any) -> AdminError:
        """The AdminError ``command`` fails with; AssertionError if it succeeds."""
        from ldapsrv.admin.errors import AdminError

        try:
            self.call(command, **args)
        except AdminError as exc:
            return exc
        raise AssertionError(f"{command} succeeded")


def _serve(argv: list[str] | None = None) -> int:
    """Serve the control socket over an in-memory directory (e2e tests)."""
    from twisted.internet import reactor
    from twisted.logger import globalLogBeginner, textFileLogObserver

    from ldapsrv.admin.server import ControlSocketError, listen_control_socket
    from ldapsrv.auth.rotation import Rotator
    from ldapsrv.auth.vault import TokenVault
    from ldapsrv.blocking import Blocking
    from ldapsrv.config import load_config

    parser = argparse.ArgumentParser(prog="python -m ldapsrv.admin.testing")
    parser.add_argument("--socket", required=True, type=Path)
    parser.add_argument("--mode", default="0600")
    ns = parser.parse_args(argv)
    globalLogBeginner.beginLoggingTo([textFileLogObserver(sys.stderr)])  # type: ignore[list-item]
    config = load_config(
        None,
        {
            "server.control_socket": str(ns.socket),
            "security.bcrypt_cost": 4,
            "tokens.bcrypt_cost": 4,
        },
        environ={},
    )
    # A throwaway key: token view works, and nothing outlives the process.
    store = InMemoryDirectory()
    vault = TokenVault.generate()
    context = in_memory_context(
        config,
        store,
        Blocking(reactor, 2),
        vault=vault,
        rotator=Rotator(store, config.token_bcrypt_cost, vault, lambda: datetime.now(UTC)),
    )
    try:
        listen_control_socket(reactor, config.control_socket, int(ns.mode, 8), context)
    except ControlSocketError as exc:
        print(f"ldapsrv: error: {exc}", file=sys.stderr)
        return 1
    print("ready", flush=True)
    reactor.run()  # type: ignore[misc]
    return 0


if __name__ == "__main__":
    sys.exit(_serve())
