"""Tokens: the secrets service accounts (and people's apps) bind with.

The store keeps what ``ldapsrv.auth`` hands it (a bcrypt hash, an optional
encrypted copy, a public lookup id) and never sees a token's value. Three
properties matter for binds and rotation when several servers share one
database, and each is a single statement here rather than a read-then-write:

* a bind finds its token by ``lookup_id`` (unique index, one query) and checks
  the row it got, so a deleted or rotated token stops working on every server
  at its next bind;
* a rotation is a compare-and-swap on ``generation`` (``UPDATE ... WHERE
  generation = <read>``): two servers rotating the same token at once produce
  exactly one rotation, the loser learns it from the row count;
* ``hook_pending`` is set in the rotating transaction and cleared only after
  the hook ran, so a server dying in between leaves a visible to-do rather
  than a device that never learns its new secret.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import bindparam, delete, func, or_, select, true, update
from sqlalchemy.engine import Connection

from ldapsrv.auth.ports import NewSecret, NewToken
from ldapsrv.directory.records import AccountKind, AuditEvent, TokenIntent, TokenRecord
from ldapsrv.errors import AlreadyExists, InvalidValue, NotFound
from ldapsrv.store.audit import AuditLog, encode_details
from ldapsrv.store.base import check_text, name_key
from ldapsrv.store.engine import run
from ldapsrv.store.models import accounts, tokens
from ldapsrv.store.sqlfilter import storable

USE_RECORD_INTERVAL = timedelta(seconds=60)
"""A token's last use is written at most once per this interval: an SSSD host
binding many times a second must not turn every bind into a write."""

MAX_ADDRESS_LENGTH = 64

_IDENTIFIER = re.compile(r"[A-Za-z0-9_.-]{1,100}")
_LOOKUP_ID = re.compile(r"[A-Za-z0-9_-]{1,32}")
"""The lookup id travels inside the token value, whose alphabet is [A-Za-z0-9_-]."""

_TOKEN_COLUMNS = (*tokens.c, accounts.c.name.label("account_name"), accounts.c.kind)


def validate_token_identifier(identifier: str) -> str:
    """``identifier`` if it is 1-100 characters of ``[A-Za-z0-9_.-]``, else InvalidValue.

    A narrow alphabet keeps identifiers safe on a command line, in JSON, in
    logs and as an argument to the rotation hook."""
    if not isinstance(identifier, str) or not _IDENTIFIER.fullmatch(identifier):
        raise InvalidValue(
            "token identifier must be 1-100 characters of letters, digits, '_', '.' and '-',"
            f" got {identifier!r}"
        )
    return identifier


def _check_lookup_id(lookup_id: str) -> str:
    if not isinstance(lookup_id, str) or not _LOOKUP_ID.fullmatch(lookup_id):
        raise InvalidValue(
            f"token lookup id must be 1-32 characters of [A-Za-z0-9_-], got {lookup_id!r}"
        )
    return lookup_id


def _check_hash(secret_hash: str) -> str:
    checked = check_text("token hash", secret_hash)
    if checked is None:
        raise InvalidValue("token hash must not be empty")
    return checked


def _check_instant(label: str, value: datetime | None) -> datetime | None:
    if value is not None and (value.tzinfo is None or value.utcoffset() is None):
        raise InvalidValue(f"{label} must carry a time zone, got {value!r}")
    return value


def check_new_token(spec: NewToken) -> dict[str, Any]:
    """The column values for ``spec``, or InvalidValue naming the broken rule."""
    identifier = validate_token_identifier(spec.identifier)
    try:
        intent = TokenIntent(spec.intent)
    except ValueError:
        raise InvalidValue(
            f"token intent must be app_password or api, got {spec.intent!r}"
        ) from None
    if spec.expiring != (spec.expires_at is not None):
        # One meaning per state: an expiring token always knows when, a
        # non-expiring one never has a date that some check might honour.
        raise InvalidValue("an expiring token needs an expiry, a non-expiring one must have none")
    lifetime = spec.lifetime_seconds
    if lifetime is not None and (isinstance(lifetime, bool) or not isinstance(lifetime, int)):
        raise InvalidValue(f"token lifetime must be a number of seconds, got {lifetime!r}")
    if lifetime is not None and lifetime <= 0:
        raise InvalidValue(f"token lifetime must be positive, got {lifetime}")
    return {
        "identifier": identifier,
        "identifier_lower": identifier.lower(),
        "intent": intent.value,
        "description": check_text("description", spec.description),
        "lookup_id": _check_lookup_id(spec.lookup_id),
        "secret_hash": _check_hash(spec.secret_hash),
        "encrypted_value": spec.encrypted_value or None,
        "expiring": spec.expiring,
        "expires_at": _check_instant("token expiry", spec.expires_at),
        "lifetime_seconds": lifetime,
    }


def _record(row: Any) -> TokenRecord:
    return TokenRecord(
        id=row.id,
        identifier=row.identifier,
        account_name=row.account_name,
        account_kind=AccountKind(row.kind),
        intent=TokenIntent(row.intent),
        description=row.description,
        lookup_id=row.lookup_id,
        secret_hash=row.secret_hash,
        encrypted_value=row.encrypted_value,
        expiring=bool(row.expiring),
        expires_at=row.expires_at,
        lifetime_seconds=row.lifetime_seconds,
        created=row.created_at,
        last_used_at=row.last_used_at,
        last_used_address=row.last_used_address,
        rotated_at=row.rotated_at,
        generation=row.generation,
        hook_pending=bool(row.hook_pending),
    )


def _select_tokens() -> Any:
    return select(*_TOKEN_COLUMNS).join(accounts, accounts.c.id == tokens.c.account_id)


# Built once (every bind runs it): constructing a statement costs more than running it.
_TOKEN_BY_LOOKUP_ID = _select_tokens().where(tokens.c.lookup_id == bindparam("lookup_id"))


class Tokens(AuditLog):
    """``TokenStore`` (ldapsrv.auth.ports) on the tokens table."""

    # ------------------------------------------------------- used by others

    def _insert_token(self, conn: Connection, values: dict[str, Any], account_id: int) -> int:
        """Insert a checked token (``check_new_token``) for ``account_id``; its id.

        AlreadyExists when the identifier or the lookup id is taken."""
        taken = conn.execute(
            select(tokens.c.identifier).where(
                tokens.c.identifier_lower == values["identifier_lower"]
            )
        ).scalar()
        if taken is not None:
            raise AlreadyExists(f'token "{taken}" already exists')
        self._refuse_taken_lookup_id(conn, values["lookup_id"])
        result = conn.execute(
            tokens.insert().values(
                account_id=account_id,
                created_at=self._now(),
                generation=1,
                hook_pending=False,
                **values,
            )
        )
        return int(result.inserted_primary_key[0])  # type: ignore[index]

    def _refuse_taken_lookup_id(
        self, conn: Connection, lookup_id: str, *, other_than: int | None = None
    ) -> None:
        # Lookup ids are random; a clash means the caller should draw again,
        # which it can only do if told so rather than hit a bare IntegrityError.
        query = select(tokens.c.id).where(tokens.c.lookup_id == lookup_id)
        if other_than is not None:
            query = query.where(tokens.c.id != other_than)
        if conn.execute(query).first() is not None:
            raise AlreadyExists("token lookup id is already in use: draw another")

    def _load_token(self, conn: Connection, token_id: int) -> TokenRecord:
        return _record(conn.execute(_select_tokens().where(tokens.c.id == token_id)).one())

    # ------------------------------------------------------------ TokenStore

    def create_token(self, spec: NewToken, audit: AuditEvent | None = None) -> TokenRecord:
        """Store a token for an account of any kind (people may have app passwords).

        AlreadyExists when the identifier is taken (case-insensitive); NotFound
        when the account does not exist."""
        values = check_new_token(spec)
        if audit is not None:
            encode_details(audit.details)

        def work(conn: Connection) -> TokenRecord:
            account_id = conn.execute(
                select(accounts.c.id).where(accounts.c.name_lower == name_key(spec.account_name))
            ).scalar()
            if account_id is None:
                raise NotFound(f'account "{spec.account_name}" not found')
            token_id = self._insert_token(conn, values, account_id)
            if audit is not None:
                self._insert_audit(conn, audit)
            return self._load_token(conn, token_id)

        return run(self.engine, work, write=True)

    def get_token(self, identifier: str) -> TokenRecord:
        """The token called ``identifier`` (case-insensitive), or NotFound."""

        def work(conn: Connection) -> TokenRecord:
            row = conn.execute(
                _select_tokens().where(tokens.c.identifier_lower == name_key(identifier))
            ).first()
            if row is None:
                raise NotFound(f'token "{identifier}" not found')
            return _record(row)

        return run(self.engine, work, write=False)

    def find_token(self, lookup_id: str) -> TokenRecord | None:
        """The token with this public lookup id (one indexed query per bind)."""
        if not storable(lookup_id):
            return None

        def work(conn: Connection) -> TokenRecord | None:
            row = conn.execute(_TOKEN_BY_LOOKUP_ID, {"lookup_id": lookup_id}).first()
            return None if row is None else _record(row)

        return run(self.engine, work, write=False)

    def list_tokens(self, account_name: str | None = None) -> list[TokenRecord]:
        """Every token, or those of ``account_name`` (NotFound if no such account),
        ordered by identifier."""

        def work(conn: Connection) -> list[TokenRecord]:
            query = _select_tokens()
            if account_name is not None:
                account_id = conn.execute(
                    select(accounts.c.id).where(accounts.c.name_lower == name_key(account_name))
                ).scalar()
                if account_id is None:
                    raise NotFound(f'account "{account_name}" not found')
                query = query.where(tokens.c.account_id == account_id)
            rows = conn.execute(query.order_by(tokens.c.identifier_lower)).all()
            return [_record(row) for row in rows]

        return run(self.engine, work, write=False)

    def delete_token(self, identifier: str, audit: AuditEvent | None = None) -> None:
        """Delete (revoke) a token, or NotFound. Every server's next bind with it
        fails: binds read the row, nothing caches its existence."""
        if audit is not None:
            encode_details(audit.details)

        def work(conn: Connection) -> None:
            result = conn.execute(
                delete(tokens).where(tokens.c.identifier_lower == name_key(identifier))
            )
            if result.rowcount == 0:
                raise NotFound(f'token "{identifier}" not found')
            if audit is not None:
                self._insert_audit(conn, audit)

        run(self.engine, work, write=True)

    def replace_secret(
        self,
        identifier: str,
        expected_generation: int,
        secret: NewSecret,
        audit: AuditEvent | None = None,
    ) -> TokenRecord | None:
        """Compare-and-swap on ``generation``: write the new secret and
        generation+1 and return the new row, or None when the generation is no
        longer ``expected_generation`` (another server rotated first). NotFound
        when the token does not exist (any more). The audit event is written
        only by the winner, in the same transaction."""
        lookup_id = _check_lookup_id(secret.lookup_id)
        secret_hash = _check_hash(secret.secret_hash)
        expires_at = _check_instant("token expiry", secret.expires_at)
        rotated_at = _check_instant("rotation time", secret.rotated_at)
        if audit is not None:
            encode_details(audit.details)

        def work(conn: Connection) -> TokenRecord | None:
            row = conn.execute(
                select(tokens.c.id, tokens.c.expiring).where(
                    tokens.c.identifier_lower == name_key(identifier)
                )
            ).first()
            if row is None:
                raise NotFound(f'token "{identifier}" not found')
            if bool(row.expiring) != (expires_at is not None):
                raise InvalidValue(
                    f'token "{identifier}" is {"" if row.expiring else "not "}expiring:'
                    f" its new secret must {'' if row.expiring else 'not '}have an expiry"
                )
            self._refuse_taken_lookup_id(conn, lookup_id, other_than=row.id)
            result = conn.execute(
                update(tokens)
                .where(tokens.c.id == row.id, tokens.c.generation == expected_generation)
                .values(
                    lookup_id=lookup_id,
                    secret_hash=secret_hash,
                    encrypted_value=secret.encrypted_value or None,
                    expires_at=expires_at,
                    rotated_at=rotated_at,
                    hook_pending=secret.hook_pending,
                    generation=tokens.c.generation + 1,
                )
            )
            if result.rowcount == 0:
                return None
            if audit is not None:
                self._insert_audit(conn, audit)
            return self._load_token(conn, row.id)

        return run(self.engine, work, write=True)

    def tokens_due(self, now: datetime, limit: int = 100) -> list[TokenRecord]:
        """Expiring tokens whose expiry is at or before ``now``, soonest first."""
        if limit <= 0:
            return []

        def work(conn: Connection) -> list[TokenRecord]:
            rows = conn.execute(
                _select_tokens()
                .where(tokens.c.expiring == true(), tokens.c.expires_at <= now)
                .order_by(tokens.c.expires_at, tokens.c.id)
                .limit(limit)
            ).all()
            return [_record(row) for row in rows]

        return run(self.engine, work, write=False)

    def next_expiry(self) -> datetime | None:
        """The earliest expiry among expiring tokens (to schedule the next rotation)."""

        def work(conn: Connection) -> datetime | None:
            value: datetime | None = conn.execute(
                select(func.min(tokens.c.expires_at)).where(tokens.c.expiring == true())
            ).scalar()
            return value

        return run(self.engine, work, write=False)

    def tokens_with_pending_hook(self) -> list[TokenRecord]:
        """Tokens rotated whose hook has not (yet) reported success, oldest first."""

        def work(conn: Connection) -> list[TokenRecord]:
            rows = conn.execute(
                _select_tokens().where(tokens.c.hook_pending == true()).order_by(tokens.c.id)
            ).all()
            return [_record(row) for row in rows]

        return run(self.engine, work, write=False)

    def clear_hook_pending(self, identifier: str, generation: int) -> None:
        """Mark the hook of rotation ``generation`` done. A no-op if the token was
        rotated again meanwhile: that newer secret's hook is still to run."""

        def work(conn: Connection) -> None:
            conn.execute(
                update(tokens)
                .where(
                    tokens.c.identifier_lower == name_key(identifier),
                    tokens.c.generation == generation,
                )
                .values(hook_pending=False)
            )

        run(self.engine, work, write=True, changes=())  # bookkeeping: no answer changes

    def record_token_use(self, lookup_id: str, at: datetime, address: str | None) -> None:
        """Last-used time and address, written at most once a minute per token.

        A read decides first, so a busy host's binds cost no write transaction
        (which on SQLite would take the database's write lock); the UPDATE
        repeats the condition so two servers racing still write once."""
        if not storable(lookup_id):
            return
        _check_instant("time of use", at)
        cutoff = at - USE_RECORD_INTERVAL
        stale = or_(tokens.c.last_used_at.is_(None), tokens.c.last_used_at <= cutoff)
        if address is not None:
            address = address[:MAX_ADDRESS_LENGTH]

        def due(conn: Connection) -> bool:
            found = conn.execute(
                select(tokens.c.id).where(tokens.c.lookup_id == lookup_id, stale)
            ).first()
            return found is not None

        if not run(self.engine, due, write=False):
            return

        def work(conn: Connection) -> None:
            conn.execute(
                update(tokens)
                .where(tokens.c.lookup_id == lookup_id, stale)
                .values(last_used_at=at, last_used_address=address)
            )

        # Last use is bookkeeping: no LDAP answer or bind decision reads it back.
        run(self.engine, work, write=True, changes=())
