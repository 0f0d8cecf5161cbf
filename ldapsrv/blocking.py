"""Run blocking work (SQL, bcrypt) off the reactor thread.

One thread pool for the process, sized by ``server.worker_threads``; its
lifetime follows the reactor. Everything that touches the database or hashes a
password goes through ``Blocking.run`` so the reactor thread only does I/O and
encoding.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ParamSpec, TypeVar

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorThreads
from twisted.internet.threads import deferToThreadPool
from twisted.python.threadpool import ThreadPool

P = ParamSpec("P")
T = TypeVar("T")


class Blocking:
    def __init__(self, reactor: Any, threads: int, name: str = "ldapsrv-blocking") -> None:
        self._reactor: IReactorThreads = reactor
        self._pool = ThreadPool(minthreads=1, maxthreads=threads, name=name)
        self._started = False
        reactor.addSystemEventTrigger("during", "shutdown", self.stop)

    def start(self) -> None:
        if not self._started:
            self._pool.start()
            self._started = True

    def stop(self) -> None:
        if self._started:
            self._started = False
            self._pool.stop()

    def run(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> Deferred[T]:
        self.start()
        return deferToThreadPool(self._reactor, self._pool, fn, *args, **kwargs)
