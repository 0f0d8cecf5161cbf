"""What SIGHUP changes in a running server, and what it cannot.

``ReloadableTLS`` stands in for the TLS options of the LDAPS listener and of
StartTLS: every new handshake asks it for the current context, so swapping in
a rotated certificate reaches new connections while established ones keep
their session. ``reload_plan`` compares the configuration the server runs
with a freshly read one: reloadable settings are applied by the caller, every
other change is named in a warning (it needs a restart).
"""

from __future__ import annotations

import logging
from dataclasses import fields
from typing import Any

from OpenSSL.SSL import Connection
from twisted.internet import ssl
from twisted.internet.interfaces import IOpenSSLServerConnectionCreator
from zope.interface import implementer

from ldapsrv.config import Config

log = logging.getLogger("ldapsrv.reload")

#: Config fields a SIGHUP applies without a restart ([limits] except
#: search_batch_size, the TLS files, [security]'s access switches, the log level).
RELOADABLE = frozenset(
    {
        "tls_cert",
        "tls_key",
        "max_pdu_bytes",
        "max_filter_depth",
        "size_limit",
        "time_limit",
        "max_connections",
        "max_connections_per_address",
        "per_address_exempt",
        "max_outstanding_operations",
        "idle_timeout",
        "pdu_timeout",
        "identity_limits",
        "anonymous_read",
        "require_tls_for_binds",
        "require_tls_for_searches",
        "log_level",
    }
)


@implementer(IOpenSSLServerConnectionCreator)
class ReloadableTLS:
    """TLS options whose certificate can be replaced while the server runs."""

    def __init__(self, options: ssl.CertificateOptions) -> None:
        self.options = options

    def replace(self, options: ssl.CertificateOptions) -> None:
        self.options = options

    def getContext(self) -> Any:
        return self.options.getContext()

    def serverConnectionForTLS(self, tlsProtocol: Any) -> Connection:
        return Connection(self.options.getContext(), None)


def needs_restart(running: Config, new: Config) -> list[str]:
    """The settings that differ between ``running`` and ``new`` but are not reloadable."""
    return [
        f.name
        for f in fields(Config)
        if f.name not in RELOADABLE and getattr(running, f.name) != getattr(new, f.name)
    ]


def warn_unreloadable(running: Config, new: Config) -> None:
    changed = needs_restart(running, new)
    if changed:
        log.warning(
            "SIGHUP: these changed settings need a restart and are not applied: %s",
            ", ".join(changed),
        )
