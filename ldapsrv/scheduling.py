"""The server's own token job: rotate expired tokens, deliver pending hooks.

An expiring token already stops working at its expiry instant (the bind checks
the time); this job gives it a new value soon after, so the device using it can
be handed the new one by the rotation hook. It runs every
``tokens.rotation_check_interval`` seconds and also right after the earliest
expiry, all of its database and bcrypt work in the thread pool. Several servers
on one database may run it at once: the store's compare-and-swap lets exactly
one of them rotate each token.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime
from typing import Any

from twisted.application.service import Service
from twisted.internet.defer import Deferred

from ldapsrv.auth.ports import TokenStore
from ldapsrv.auth.rotation import Rotator
from ldapsrv.blocking import Blocking

log = logging.getLogger("ldapsrv.tokens")

# After the earliest expiry, wake this much later so that ``expires_at <= now`` holds.
_GRACE_SECONDS = 0.05


class RotationService(Service):
    def __init__(
        self,
        reactor: Any,
        blocking: Blocking,
        rotator: Rotator,
        tokens: TokenStore,
        interval: float,
        clock: Callable[[], datetime],
    ) -> None:
        self.reactor = reactor
        self.blocking = blocking
        self.rotator = rotator
        self.tokens = tokens
        self.interval = interval
        self.clock = clock
        self._call: Any = None
        self._running_pass: Deferred[None] | None = None
        self._due_at: float | None = None  # reactor time of the pending pass

    def startService(self) -> None:
        super().startService()  # type: ignore[no-untyped-call]
        self._schedule(0)

    def stopService(self) -> Deferred[None] | None:
        super().stopService()  # type: ignore[no-untyped-call]
        if self._call is not None and self._call.active():
            self._call.cancel()
        self._call = None
        return self._running_pass  # let a pass in flight finish before shutdown

    def tokens_changed(self) -> None:
        """A token got a new expiry here: wake at it if that is before the next pass.
        (Tokens changed by another server are found at the next regular pass.)"""
        if self.running:
            Deferred.fromCoroutine(self._rearm())

    async def _rearm(self) -> None:
        try:
            next_expiry = await self.blocking.run(self.tokens.next_expiry)
        except Exception:
            log.exception("cannot read the next token expiry")
            return
        if next_expiry is None or self._running_pass is not None:
            return  # a pass in flight schedules the next one itself
        delay = (next_expiry - self.clock()).total_seconds() + _GRACE_SECONDS
        if self._due_at is None or self.reactor.seconds() + delay < self._due_at:
            self._schedule(delay)

    def _schedule(self, delay: float) -> None:
        if not self.running:
            return
        if self._call is not None and self._call.active():
            self._call.cancel()
        delay = max(delay, 0.0)
        self._due_at = self.reactor.seconds() + delay
        self._call = self.reactor.callLater(delay, self._tick)

    def _tick(self) -> None:
        self._call = None
        self._due_at = None
        self._running_pass = Deferred.fromCoroutine(self._pass())

    async def _pass(self) -> None:
        try:
            # Every pass: a hook that failed (or a server that died before running
            # it) is retried until the value is delivered.
            await self.blocking.run(self.rotator.deliver_pending_hooks)
            outcomes = await self.blocking.run(self.rotator.rotate_due)
            for outcome in outcomes:
                log.debug("rotation outcome: %s", outcome)
            next_expiry = await self.blocking.run(self.tokens.next_expiry)
        except Exception:
            log.exception("token rotation pass failed; retrying in %ss", self.interval)
            next_expiry = None
        finally:
            self._running_pass = None
        delay = self.interval
        if next_expiry is not None:
            until = (next_expiry - self.clock()).total_seconds() + _GRACE_SECONDS
            delay = min(delay, until)
        self._schedule(delay)
