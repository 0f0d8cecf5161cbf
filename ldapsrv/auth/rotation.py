"""Rotating token values: on an admin's request, and automatically at expiry.

An expiring token stops working at its expiry instant (see
``tokens.refusal_reason``). The rotation job then gives it a new value and a new
expiry of the same lifetime, writes an audit event, and runs the optional
rotation hook so the new value reaches the device that uses the token.

Several servers may share one database and all run this job. Exactly one of them
rotates a given token: ``replace_secret`` is a compare-and-swap on the row's
``generation``, and a loser simply skips the token.

The process may die anywhere. The new value is committed together with
``hook_pending`` set, and the flag is cleared only after the hook succeeded; a
server that finds the flag set later (``deliver_pending_hooks``) recovers the
value from its encrypted copy and delivers it again. Hooks are therefore
at-least-once: a hook command must tolerate being given the same value twice.

Everything here blocks (SQL, bcrypt, subprocesses): run it in a thread.
Values are never logged.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Final

from ldapsrv.auth.ports import NewSecret, TokenStore
from ldapsrv.auth.tokens import DEFAULT_LIFETIME, IssuedToken, issue_token
from ldapsrv.auth.vault import TokenVault, VaultError
from ldapsrv.directory.records import AuditEvent, TokenRecord
from ldapsrv.errors import DomainError

log = logging.getLogger("ldapsrv.tokens")

SERVER_ACTOR: Final = "ldapsrv"
SERVER_CHANNEL: Final = "server"
ENV_IDENTIFIER: Final = "LDAPSRV_TOKEN_IDENTIFIER"
ENV_ACCOUNT: Final = "LDAPSRV_TOKEN_ACCOUNT"
_STDERR_LINES: Final = 5
_MANUAL_ATTEMPTS: Final = 3
_DUE_BATCH: Final = 100


class HookFailed(Exception):
    """The rotation hook exited non-zero, timed out or could not start. The message
    carries the exit status and the first lines of stderr, never the value."""

    def __init__(self, message: str, *, returncode: int | None, stderr_head: str) -> None:
        super().__init__(message)
        self.returncode = returncode
        self.stderr_head = stderr_head


class RotationHook:
    """A configured command that receives a rotated token's new value.

    stdin carries two lines, the token identifier and then the new value; the
    value goes nowhere else: a command line is visible to every local user in
    ``ps`` and ``/proc``, and an environment is inherited by everything the hook
    starts and shows up in crash reports. The identifier and account name, which
    are not secret, are also in the environment (``LDAPSRV_TOKEN_IDENTIFIER``,
    ``LDAPSRV_TOKEN_ACCOUNT``).

    The command runs in a session of its own so that on timeout the whole process
    group is killed: ``subprocess.run`` kills only the direct child, and a shell
    script's grandchild holding stdout open would then hang the rotation job.
    """

    def __init__(self, command: Sequence[str], timeout: float) -> None:
        if not command:
            raise ValueError("a rotation hook needs a command")
        if timeout <= 0:
            raise ValueError("a rotation hook needs a positive timeout")
        self.command = tuple(command)
        self.timeout = timeout

    def __repr__(self) -> str:
        return f"RotationHook(command={self.command!r}, timeout={self.timeout!r})"

    def deliver(self, identifier: str, account_name: str, value: str) -> None:
        env = dict(os.environ)
        env[ENV_IDENTIFIER] = identifier
        env[ENV_ACCOUNT] = account_name
        try:
            process = subprocess.Popen(
                self.command,
                stdin=subprocess.PIPE,
                stdout=subprocess.DEVNULL,  # may echo the value: never read or logged
                stderr=subprocess.PIPE,
                env=env,
                start_new_session=True,
                close_fds=True,
            )
        except OSError as exc:
            raise HookFailed(
                f"rotation hook {self.command[0]!r} could not start: {exc.strerror or exc}",
                returncode=None,
                stderr_head="",
            ) from exc
        try:
            message = f"{identifier}\n{value}\n".encode()
            _, stderr = process.communicate(message, self.timeout)
        except subprocess.TimeoutExpired:
            _kill_group(process)
            _, stderr = process.communicate()
            head = _stderr_head(stderr, value)
            raise HookFailed(
                f"rotation hook {self.command[0]!r} timed out after {self.timeout:g}s"
                + (f"; stderr: {head}" if head else ""),
                returncode=None,
                stderr_head=head,
            ) from None
        if process.returncode != 0:
            head = _stderr_head(stderr, value)
            raise HookFailed(
                f"rotation hook {self.command[0]!r} exited with status {process.returncode}"
                + (f"; stderr: {head}" if head else ""),
                returncode=process.returncode,
                stderr_head=head,
            )


def _kill_group(process: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)
    with contextlib.suppress(ProcessLookupError):
        process.kill()


def _stderr_head(stderr: bytes | None, value: str) -> str:
    """The first lines of stderr, with the value blanked out should the hook have
    echoed it (the head ends up in logs and in HookFailed)."""
    text = (stderr or b"").decode("utf-8", "replace").replace(value, "[token value]")
    lines = [line.rstrip() for line in text.splitlines() if line.strip()]
    return " | ".join(lines[:_STDERR_LINES])[:1000]


class HookStatus(StrEnum):
    NOT_CONFIGURED = "not_configured"
    DELIVERED = "delivered"
    FAILED = "failed"  # hook_pending stays set; delivered again later
    UNDELIVERABLE = "undeliverable"  # the value cannot be recovered; flag cleared


@dataclass(frozen=True, slots=True)
class RotationOutcome:
    """What happened to one token in a rotation run (no value in here)."""

    identifier: str
    account_name: str
    generation: int
    expires_at: datetime | None
    hook: HookStatus
    error: str | None = None


class Rotator:
    """Rotates tokens: ``rotate`` for an admin, ``rotate_due`` and
    ``deliver_pending_hooks`` for the server's own job."""

    def __init__(
        self,
        store: TokenStore,
        cost: int,
        vault: TokenVault | None,
        clock: Callable[[], datetime],
        hook: RotationHook | None = None,
        on_rotated: Callable[[str], None] = lambda trigger: None,
    ) -> None:
        self.store = store
        self.cost = cost
        self.vault = vault
        self.clock = clock
        self.hook = hook
        self.on_rotated = on_rotated  # told "admin" or "expired" per rotation (metrics)

    def lifetime(self, record: TokenRecord) -> timedelta:
        """The lifetime a rotation grants again: the token's own, or its intent's
        default for a row that never recorded one."""
        if record.lifetime_seconds is not None and record.lifetime_seconds > 0:
            return timedelta(seconds=record.lifetime_seconds)
        return DEFAULT_LIFETIME[record.intent]

    def _new_secret(
        self, record: TokenRecord, now: datetime, *, hook_pending: bool
    ) -> tuple[NewSecret, IssuedToken]:
        issued = issue_token(self.cost, self.vault)
        # The new expiry counts from the rotation, not from the old expiry: after an
        # outage the new value still gets its whole lifetime.
        expires_at = now + self.lifetime(record) if record.expiring else None
        secret = NewSecret(
            lookup_id=issued.lookup_id,
            secret_hash=issued.secret_hash,
            encrypted_value=issued.encrypted_value,
            expires_at=expires_at,
            rotated_at=now,
            hook_pending=hook_pending,
        )
        return secret, issued

    def rotate(
        self, identifier: str, *, actor: str, channel: str
    ) -> tuple[TokenRecord, IssuedToken]:
        """A new value for ``identifier``, same intent, description and expiring
        flag; the caller shows the value to the admin. NotFound propagates.

        The hook runs here too, exactly as at expiry: the old value stops working
        at once, and the device that uses the token should not have to wait for an
        admin to copy the new one over. A failed hook does not fail the rotation
        (it is committed, and the admin holds the value); the returned row then
        still has ``hook_pending`` set and ``deliver_pending_hooks`` retries.

        Should the automatic job rotate the same token at the same moment, the
        compare-and-swap fails and this retries on the fresh row, so the admin
        always ends up holding the current value.
        """
        for _ in range(_MANUAL_ATTEMPTS):
            record = self.store.get_token(identifier)
            now = self.clock()
            secret, issued = self._new_secret(record, now, hook_pending=self.hook is not None)
            audit = _audit(actor, channel, "token.rotate", record, secret)
            updated = self.store.replace_secret(record.identifier, record.generation, secret, audit)
            if updated is None:
                continue
            self.on_rotated("admin")
            log.info(
                "token %s of %s rotated by %s (%s)",
                record.identifier,
                record.account_name,
                actor,
                channel,
            )
            if self.hook is not None:
                outcome = self._run_hook(self.hook, updated, issued.value)
                if outcome.hook is HookStatus.DELIVERED:
                    updated = replace(updated, hook_pending=False)
            return updated, issued
        raise DomainError(f"token {identifier} kept changing while it was being rotated; try again")

    def rotate_due(self) -> list[RotationOutcome]:
        """Rotate every expiring token whose expiry has passed. Tokens another
        server rotated first are skipped silently. A failed hook leaves
        ``hook_pending`` set for ``deliver_pending_hooks``; store errors propagate
        (the job tries again on its next run)."""
        outcomes: list[RotationOutcome] = []
        seen: set[tuple[str, int]] = set()
        while True:
            now = self.clock()
            batch = [
                record
                for record in self.store.tokens_due(now, _DUE_BATCH)
                if (record.identifier, record.generation) not in seen
            ]
            for record in batch:
                seen.add((record.identifier, record.generation))
                outcome = self._rotate_expired(record, now)
                if outcome is not None:
                    outcomes.append(outcome)
            if len(batch) < _DUE_BATCH:
                return outcomes

    def _rotate_expired(self, record: TokenRecord, now: datetime) -> RotationOutcome | None:
        secret, issued = self._new_secret(record, now, hook_pending=self.hook is not None)
        audit = _audit(SERVER_ACTOR, SERVER_CHANNEL, "token.rotate.expired", record, secret)
        updated = self.store.replace_secret(record.identifier, record.generation, secret, audit)
        if updated is None:
            log.debug("token %s was rotated by another server", record.identifier)
            return None
        self.on_rotated("expired")
        log.info(
            "expired token %s of %s rotated; new expiry %s",
            updated.identifier,
            updated.account_name,
            _iso(updated.expires_at),
        )
        if self.hook is None:
            return _outcome(updated, HookStatus.NOT_CONFIGURED)
        return self._run_hook(self.hook, updated, issued.value)

    def _run_hook(self, hook: RotationHook, record: TokenRecord, value: str) -> RotationOutcome:
        try:
            hook.deliver(record.identifier, record.account_name, value)
        except HookFailed as exc:
            log.warning("rotation hook for token %s failed, will retry: %s", record.identifier, exc)
            return _outcome(record, HookStatus.FAILED, str(exc))
        self.store.clear_hook_pending(record.identifier, record.generation)
        log.info("rotation hook delivered the new value of token %s", record.identifier)
        return _outcome(record, HookStatus.DELIVERED)

    def deliver_pending_hooks(self) -> list[RotationOutcome]:
        """Deliver the values whose rotation committed but whose hook never
        succeeded (a crash, a failing hook).

        The value itself is gone from memory, so it comes from the encrypted copy.
        Without a copy (viewable copies off) or a vault, it can never be delivered:
        that is logged and the flag cleared, and an admin has to rotate the token
        by hand. A copy this server's key cannot open stays pending, since a server
        with the right key file may deliver it. A rotation younger than the hook's
        timeout is left alone: its own server is probably still running the hook.
        """
        outcomes: list[RotationOutcome] = []
        now = self.clock()
        for record in self.store.tokens_with_pending_hook():
            if self.hook is None:
                log.warning(
                    "token %s awaits a rotation hook but none is configured; "
                    "clearing the flag (give the device the value by hand)",
                    record.identifier,
                )
                self.store.clear_hook_pending(record.identifier, record.generation)
                outcomes.append(_outcome(record, HookStatus.NOT_CONFIGURED))
                continue
            grace = timedelta(seconds=self.hook.timeout + 60)
            if record.rotated_at is not None and record.rotated_at > now - grace:
                continue
            if record.encrypted_value is None or self.vault is None:
                log.error(
                    "the new value of token %s can no longer be delivered to the rotation "
                    "hook (no encrypted copy is kept); rotate it by hand with "
                    "`ldapsrv token rotate %s`",
                    record.identifier,
                    record.identifier,
                )
                self.store.clear_hook_pending(record.identifier, record.generation)
                outcomes.append(_outcome(record, HookStatus.UNDELIVERABLE, "no encrypted copy"))
                continue
            try:
                value = self.vault.decrypt(record.encrypted_value, record.lookup_id)
            except VaultError as exc:
                log.error(
                    "cannot deliver the new value of token %s to the rotation hook: %s",
                    record.identifier,
                    exc,
                )
                outcomes.append(_outcome(record, HookStatus.FAILED, str(exc)))
                continue
            outcomes.append(self._run_hook(self.hook, record, value))
        return outcomes


def _iso(instant: datetime | None) -> str:
    return instant.isoformat() if instant is not None else "never"


def _audit(
    actor: str, channel: str, action: str, record: TokenRecord, secret: NewSecret
) -> AuditEvent:
    return AuditEvent(
        actor=actor,
        channel=channel,
        action=action,
        target=f"token {record.identifier}",
        details=(
            ("account", record.account_name),
            ("generation", str(record.generation + 1)),
            ("expires_at", _iso(secret.expires_at)),
        ),
    )


def _outcome(record: TokenRecord, hook: HookStatus, error: str | None = None) -> RotationOutcome:
    return RotationOutcome(
        identifier=record.identifier,
        account_name=record.account_name,
        generation=record.generation,
        expires_at=record.expires_at,
        hook=hook,
        error=error,
    )
