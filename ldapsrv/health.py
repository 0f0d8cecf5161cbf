"""``ldapsrv health``: prove, the way a real client would, that the server works.

A listening port proves little: a server can accept connections and still
fail every bind (database gone, key file replaced, broken schema). So the
check asks the control socket for the credentials of the internal service
account ``ldapsrv-health`` and then, over TCP like any NAS or SSSD host,
binds with its token, asks WhoAmI, reads the base entry and finds the
account in ``ou=users``. Each step is timed, so a slow database shows up as
a slow step rather than as a vague timeout.

Exit status 0 when every step passed, 1 otherwise; the output names the step
that failed. The token is never printed, not even inside an error message
from the LDAP library.

Runs with ``ldap3`` (pure Python, no libldap needed on the host).
"""

from __future__ import annotations

import argparse
import json
import math
import ssl
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn, Protocol, TextIO

from ldapsrv.admin.client import call
from ldapsrv.admin.errors import AdminError

DEFAULT_TIMEOUT = 10.0
CREDENTIALS_COMMAND = "health.credentials"
STEP_NAMES = ("credentials", "connect", "bind", "whoami", "search base", "search users")


class HealthError(Exception):
    """One step failed; the message says how (never with the token in it)."""


@dataclass(frozen=True, slots=True)
class Credentials:
    """What ``health.credentials`` returns. The token is kept out of ``repr``."""

    account: str
    bind_dn: str
    token: str = field(repr=False)
    base_dn: str = ""
    ldap_url: str = ""
    ca_file: str | None = None

    @classmethod
    def from_result(cls, result: Any) -> Credentials:
        try:
            ca_file = result.get("ca_file")
            creds = cls(
                account=str(result["account"]),
                bind_dn=str(result["bind_dn"]),
                token=str(result["token"]),
                base_dn=str(result["base_dn"]),
                ldap_url=str(result["ldap_url"]),
                ca_file=str(ca_file) if ca_file else None,
            )
        except (KeyError, TypeError, AttributeError):
            raise HealthError("the server's answer to health.credentials is incomplete") from None
        return creds


@dataclass(slots=True)
class Step:
    name: str
    ok: bool
    ms: float
    detail: str

    def as_json(self) -> dict[str, Any]:
        return {"step": self.name, "ok": self.ok, "ms": round(self.ms, 3), "detail": self.detail}


class LdapSession(Protocol):
    """The LDAP operations the check needs; ``Ldap3Session`` is the real one.
    Each raises on failure; messages may contain anything, so the caller scrubs."""

    def connect(self) -> None: ...

    def bind(self) -> None: ...

    def whoami(self) -> str: ...

    def search_base(self) -> int: ...

    def find_account(self) -> list[str]: ...

    def close(self) -> None: ...


class Ldap3Session:
    """``LdapSession`` over ldap3 (synchronous strategy, exceptions on failure)."""

    def __init__(self, creds: Credentials, timeout: float) -> None:
        try:
            import ldap3  # imported here: only the health check needs it
        except ImportError:
            raise HealthError(
                "the health check needs the Python package ldap3 (pip install ldap3)"
            ) from None

        self._ldap3 = ldap3
        self._creds = creds
        tls = None
        if creds.ldap_url.lower().startswith("ldaps://"):
            # Verify the chain against the CA the server named. ldap3 skips the
            # host name check on LDAPS, which suits dialling 127.0.0.1 with a
            # certificate made out to the server's public name.
            tls = ldap3.Tls(validate=ssl.CERT_REQUIRED, ca_certs_file=creds.ca_file)
        server = ldap3.Server(creds.ldap_url, tls=tls, connect_timeout=timeout, get_info=ldap3.NONE)
        self._conn = ldap3.Connection(
            server,
            user=creds.bind_dn,
            password=creds.token,
            auto_bind=ldap3.AUTO_BIND_NONE,
            raise_exceptions=True,
            # ldap3 packs this into SO_RCVTIMEO as whole seconds: it must be an int
            receive_timeout=max(1, math.ceil(timeout)),
            read_only=True,
        )

    def connect(self) -> None:
        self._conn.open()

    def bind(self) -> None:
        if not self._conn.bind():
            raise HealthError(f"bind refused: {self._conn.result.get('description')}")

    def whoami(self) -> str:
        authzid = self._conn.extend.standard.who_am_i()
        return str(authzid) if authzid else ""

    def search_base(self) -> int:
        self._conn.search(
            self._creds.base_dn,
            "(objectClass=*)",
            search_scope=self._ldap3.BASE,
            attributes=["1.1"],
        )
        return len(self._conn.entries)

    def find_account(self) -> list[str]:
        from ldap3.utils.conv import escape_filter_chars

        self._conn.search(
            f"ou=users,{self._creds.base_dn}",
            f"(cn={escape_filter_chars(self._creds.account)})",
            search_scope=self._ldap3.LEVEL,
            attributes=["cn"],
        )
        return [str(entry.entry_dn) for entry in self._conn.entries]

    def close(self) -> None:
        try:
            self._conn.unbind()
        except Exception:  # closing after a failure may fail too; the report is made
            pass


SessionFactory = Callable[[Credentials, float], LdapSession]


def _same_dn(a: str, b: str) -> bool:
    """DN equality good enough for a health check: case and spaces after commas
    do not count (the server may hand back its normalised form)."""

    def norm(dn: str) -> str:
        return ",".join(part.strip() for part in dn.split(",")).lower()

    return norm(a) == norm(b)


class _Run:
    """Times steps, stops at the first failure, scrubs the token from messages."""

    def __init__(self, secret: str = "") -> None:
        self.steps: list[Step] = []
        self.secret = secret

    def scrub(self, text: str) -> str:
        if self.secret:
            text = text.replace(self.secret, "***")
        return " ".join(text.split())[:500]

    @contextmanager
    def step(self, name: str) -> Iterator[list[str]]:
        """Run the body as step ``name``; it may append a detail line to the list."""
        detail: list[str] = []
        start = time.perf_counter()
        try:
            yield detail
        except Exception as exc:
            ms = (time.perf_counter() - start) * 1000
            message = self.scrub(str(exc) or type(exc).__name__)
            self.steps.append(Step(name, False, ms, message))
            raise HealthError(name) from None
        ms = (time.perf_counter() - start) * 1000
        self.steps.append(Step(name, True, ms, self.scrub(" ".join(detail))))

    def failed(self, name: str, exc: Exception) -> NoReturn:
        """Record step ``name`` as failed before it could start."""
        self.steps.append(Step(name, False, 0.0, self.scrub(str(exc) or type(exc).__name__)))
        raise HealthError(name) from None


def check(
    fetch: Callable[[], Any],
    session_factory: SessionFactory,
    timeout: float = DEFAULT_TIMEOUT,
) -> list[Step]:
    """Run every step in order; the list ends at the first failed one."""
    run = _Run()
    try:
        with run.step("credentials") as detail:
            creds = Credentials.from_result(fetch())
            run.secret = creds.token
            detail.append(f"{creds.account} ({creds.ldap_url})")
        # Making the client (importing ldap3) is not timed: "connect" should
        # measure the network and the TLS handshake, not Python start-up.
        try:
            session = session_factory(creds, timeout)
        except Exception as exc:
            run.failed("connect", exc)
        try:
            with run.step("connect") as detail:
                session.connect()
                detail.append(creds.ldap_url)
            _ldap_steps(run, session, creds)
        finally:
            session.close()
    except HealthError:
        pass
    return run.steps


def _ldap_steps(run: _Run, session: LdapSession, creds: Credentials) -> None:
    with run.step("bind") as detail:
        session.bind()
        detail.append(creds.bind_dn)
    with run.step("whoami") as detail:
        authzid = session.whoami()
        if not authzid.lower().startswith("dn:") or not _same_dn(authzid[3:], creds.bind_dn):
            raise HealthError(f"the server says we are {authzid!r}, expected dn:{creds.bind_dn}")
        detail.append(authzid)
    with run.step("search base") as detail:
        count = session.search_base()
        detail.append(f"{creds.base_dn}: {count} entr{'y' if count == 1 else 'ies'}")
    with run.step("search users") as detail:
        found = session.find_account()
        if not any(_same_dn(dn, creds.bind_dn) for dn in found):
            raise HealthError(
                f"one-level search of ou=users for cn={creds.account} did not return "
                f"{creds.bind_dn} (got {len(found)} entries)"
            )
        detail.append(f"found {creds.bind_dn}")


def is_healthy(steps: Sequence[Step]) -> bool:
    return len(steps) == len(STEP_NAMES) and all(s.ok for s in steps)


def format_steps(steps: Sequence[Step]) -> str:
    width = max((len(s.name) for s in steps), default=0)
    lines = [
        f"{'ok' if s.ok else 'FAILED':<6} {s.name:<{width}} {s.ms:8.1f} ms  {s.detail}".rstrip()
        for s in steps
    ]
    if is_healthy(steps):
        lines.append(f"healthy ({sum(s.ms for s in steps):.1f} ms)")
    else:
        failed = next((s.name for s in steps if not s.ok), "unknown")
        lines.append(f"unhealthy: the {failed} step failed")
    return "\n".join(lines)


def report(steps: Sequence[Step], as_json: bool, out: TextIO) -> int:
    """Print the outcome; the exit status (0 healthy, 1 not)."""
    healthy = is_healthy(steps)
    if as_json:
        failed = next((s.name for s in steps if not s.ok), None)
        document = {
            "healthy": healthy,
            "failed_step": failed,
            "total_ms": round(sum(s.ms for s in steps), 3),
            "steps": [s.as_json() for s in steps],
        }
        print(json.dumps(document, indent=2), file=out)
    else:
        print(format_steps(steps), file=out)
    return 0 if healthy else 1


def run_health(
    socket: Path,
    *,
    as_json: bool = False,
    timeout: float = DEFAULT_TIMEOUT,
    session_factory: SessionFactory = Ldap3Session,
    out: TextIO | None = None,
) -> int:
    """``ldapsrv health``: the whole check against the server behind ``socket``."""

    def fetch() -> Any:
        try:
            return call(socket, CREDENTIALS_COMMAND, {}, timeout=timeout)
        except AdminError as exc:
            raise HealthError(exc.message) from None

    steps = check(fetch, session_factory, timeout)
    return report(steps, as_json, out if out is not None else sys.stdout)


def configure_parser(parser: argparse.ArgumentParser) -> None:
    """Options of ``ldapsrv health`` beyond the common --socket/--config/--json."""
    parser.add_argument(
        "--timeout",
        type=float,
        default=DEFAULT_TIMEOUT,
        metavar="SECONDS",
        help=f"limit for each network step (default {DEFAULT_TIMEOUT:g})",
    )
