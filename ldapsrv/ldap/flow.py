"""Back-pressure: a connection writes only as fast as its client reads.

:class:`WriteFlow` is registered with the transport as a streaming producer.
Twisted pauses it once the transport holds more than its ``bufferSize``
(64 KiB) of unsent replies and resumes it when that buffer has drained. While
paused, a search waits (:meth:`WriteFlow.wait`) before rendering its next
entry, and the connection stops reading requests; so a client that stops
reading costs the server one buffer and one batch of rows, never a whole
result.
"""

from __future__ import annotations

from collections.abc import Callable

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IPushProducer
from zope.interface import implementer


@implementer(IPushProducer)
class WriteFlow:
    def __init__(self, changed: Callable[[], None]) -> None:
        self._changed = changed
        self.paused = False
        self.stopped = False
        self._waiters: list[Deferred[None]] = []

    def wait(self) -> Deferred[None] | None:
        """None when the client keeps up; else a Deferred fired once it has read
        enough (or the connection is gone)."""
        if not self.paused:
            return None
        waiter: Deferred[None] = Deferred()
        self._waiters.append(waiter)
        return waiter

    def pauseProducing(self) -> None:
        if not self.paused and not self.stopped:
            self.paused = True
            self._changed()

    def resumeProducing(self) -> None:
        if self.paused:
            self.paused = False
            self._release()
            self._changed()

    def stopProducing(self) -> None:
        self.stopped = True
        self.paused = False
        self._release()

    def _release(self) -> None:
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            waiter.callback(None)
