"""The server log's three formats: ``text`` (for people), ``json`` and ``logfmt``
(for log shippers). Every line of the process goes through one of them:
ldapsrv's own loggers, the access log, and Twisted's log (routed into
``logging``), so a shipper never meets a line in another shape.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, Final, TextIO

from ldapsrv.observability.accesslog import ACCESS_LOGGER, Fields, json_line, logfmt_line

_TEXT_FORMAT: Final = "%(asctime)s %(levelname)s %(name)s{pid}: %(message)s"


def _common(record: logging.LogRecord) -> Fields:
    instant = datetime.fromtimestamp(record.created, UTC)
    fields: Fields = {
        "time": instant.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        "level": record.levelname.lower(),
        "logger": record.name,
    }
    access: Fields | None = getattr(record, "access", None)
    if access is not None:
        fields.update(access)
    else:
        fields["msg"] = record.getMessage()
    return fields


class _StructuredFormatter(logging.Formatter):
    def __init__(self, with_pid: bool = False) -> None:
        super().__init__()
        self.with_pid = with_pid

    def render(self, fields: Fields) -> str:
        raise NotImplementedError

    def format(self, record: logging.LogRecord) -> str:
        fields = _common(record)
        if self.with_pid:
            fields["pid"] = record.process
        if record.exc_info:
            fields["exc"] = self.formatException(record.exc_info)
        return self.render(fields)


class JsonFormatter(_StructuredFormatter):
    def render(self, fields: Fields) -> str:
        return json_line(fields)


class LogfmtFormatter(_StructuredFormatter):
    def render(self, fields: Fields) -> str:
        return logfmt_line(fields)


def make_formatter(fmt: str, with_pid: bool = False) -> logging.Formatter:
    """``with_pid``: name the process on every line (several worker processes)."""
    if fmt == "json":
        return JsonFormatter(with_pid)
    if fmt == "logfmt":
        return LogfmtFormatter(with_pid)
    return logging.Formatter(_TEXT_FORMAT.format(pid="[%(process)d]" if with_pid else ""))


def configure_logging(
    level: str,
    fmt: str = "text",
    access_log: bool = True,
    stream: TextIO | None = None,
    with_pid: bool = False,
) -> None:
    """Send every log line to ``stream`` (stderr) in ``fmt`` at ``level``.

    The access log has its own switch: when on it logs at INFO whatever
    ``level`` is (an admin who wants only warnings still gets the access log
    they asked for); when off its logger is silenced.
    """
    handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
    handler.setFormatter(make_formatter(fmt, with_pid))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(getattr(logging, level.upper()))
    logging.getLogger("alembic").setLevel(logging.WARNING)
    access = logging.getLogger(ACCESS_LOGGER)
    access.setLevel(logging.INFO if access_log else logging.CRITICAL + 1)


def route_twisted_log(level: str) -> Callable[[str], None]:
    """Twisted's own messages (listeners starting, TLS errors) into ``logging``,
    so they get the same format. Once per process (Twisted's global log beginner).
    Returns a function that changes Twisted's level (SIGHUP)."""
    from twisted.logger import (
        FilteringLogObserver,
        LogLevel,
        LogLevelFilterPredicate,
        STDLibLogObserver,
        globalLogBeginner,
    )

    def twisted_level(name: str) -> Any:
        return LogLevel.levelWithName("warn" if name == "warning" else name)

    predicate: Any = LogLevelFilterPredicate(defaultLogLevel=twisted_level(level))
    stdlib: Any = STDLibLogObserver()
    observer: Any = FilteringLogObserver(stdlib, [predicate])
    globalLogBeginner.beginLoggingTo([observer], redirectStandardIO=False)

    def set_level(name: str) -> None:
        predicate.setLogLevelForNamespace(None, twisted_level(name))

    return set_level
