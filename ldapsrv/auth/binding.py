"""Bind and password checks for people. Blocking: run in the thread pool.

Every refusal looks the same to the client (invalidCredentials); the reason is
returned here only so that the server can log it.
"""

from __future__ import annotations

from dataclasses import dataclass

from ldapsrv.auth.passwords import (
    PasswordRejected,
    check_password_rules,
    hash_password,
    needs_rehash,
    verify_password,
)
from ldapsrv.directory.ports import DirectoryReader


@dataclass(frozen=True, slots=True)
class BindOutcome:
    name: str | None  # the account's stored name when accepted
    reason: str  # why it was refused, for the log only

    @property
    def accepted(self) -> bool:
        return self.name is not None


class WrongPassword(Exception):
    """The current password given for a change does not match."""


class PasswordAuthenticator:
    def __init__(self, reader: DirectoryReader, bcrypt_cost: int) -> None:
        self.reader = reader
        self.cost = bcrypt_cost

    def check(self, name: str, password: bytes) -> BindOutcome:
        credentials = self.reader.get_credentials(name)
        if credentials is None:
            verify_password(password, None, self.cost)  # same cost as a wrong password
            return BindOutcome(None, "no such account")
        if not verify_password(password, credentials.password_hash, self.cost):
            if credentials.password_hash is None:
                return BindOutcome(None, "account has no password")
            return BindOutcome(None, "wrong password")
        if credentials.disabled:
            return BindOutcome(None, "account is disabled")
        assert credentials.password_hash is not None
        if needs_rehash(credentials.password_hash, self.cost):
            self.reader.set_password_hash(credentials.name, hash_password(password, self.cost))
        return BindOutcome(credentials.name, "")

    def change_password(self, name: str, old: bytes, new: bytes) -> None:
        """Self-service change: ``old`` must match. Raises WrongPassword or
        PasswordRejected (with a message naming the rule)."""
        check_password_rules(new)
        credentials = self.reader.get_credentials(name)
        if credentials is None or not verify_password(old, credentials.password_hash):
            raise WrongPassword("the current password is wrong")
        if credentials.disabled:
            raise PasswordRejected("the account is disabled")
        self.reader.set_password_hash(credentials.name, hash_password(new, self.cost))
