"""Reading the ``--expires`` an admin types, and writing lifetimes back for humans.

Accepted forms:

* a date, ``2027-01-31``: the token is valid *through* that day (UTC) and expires
  at the start of the next day, ``2027-02-01T00:00:00Z``. "Expires 31 January"
  read as "stops working at the first instant of 31 January" would surprise
  whoever typed it, so the day itself counts.
* a date and time, ``2027-01-31T12:00:00+01:00`` or ``...Z``; without a zone the
  time is UTC (the server's clocks and the database are all UTC).
* a duration from now: ``45s``, ``30m``, ``12h``, ``90d``, ``6w``, ``1y`` (a year
  is 365 days).

An instant that is not in the future is refused: a token created already expired
is always a typing mistake.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta
from typing import Final

ACCEPTED_FORMS: Final = (
    "a date (2027-01-31, valid through that day, UTC), a date and time "
    "(2027-01-31T12:00:00Z or with an offset such as +01:00; UTC when none is given), "
    "or a duration from now (45s, 30m, 12h, 90d, 6w, 1y)"
)

_UNITS: Final[dict[str, timedelta]] = {
    "s": timedelta(seconds=1),
    "m": timedelta(minutes=1),
    "h": timedelta(hours=1),
    "d": timedelta(days=1),
    "w": timedelta(weeks=1),
    "y": timedelta(days=365),
}
_DURATION: Final = re.compile(r"(\d{1,9})\s*([smhdwy])", re.ASCII)
_DATE: Final = re.compile(r"\d{4}-\d{2}-\d{2}", re.ASCII)
_DATETIME: Final = re.compile(r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}.*", re.ASCII)


def parse_duration(text: str) -> timedelta:
    """``90d`` and friends as a timedelta; ValueError otherwise."""
    match = _DURATION.fullmatch(text.strip().lower())
    if match is None:
        raise ValueError(f"{text!r} is not a duration such as 45s, 30m, 12h, 90d, 6w or 1y")
    return int(match.group(1)) * _UNITS[match.group(2)]


def parse_expiry(text: str, now: datetime) -> datetime:
    """The aware UTC instant ``text`` means, relative to ``now`` for durations.

    ValueError naming the accepted forms for anything else, and "... is in the
    past" for an instant at or before ``now``.
    """
    stripped = text.strip()
    try:
        instant = _read_instant(stripped, now)
    except OverflowError as exc:
        raise ValueError(f"expiry {text!r} is too far in the future") from exc
    except ValueError as exc:
        raise ValueError(f"cannot read expiry {text!r} ({exc}): expected {ACCEPTED_FORMS}") from exc
    if instant is None:
        raise ValueError(f"cannot read expiry {text!r}: expected {ACCEPTED_FORMS}")
    if instant <= now:
        raise ValueError(f"expiry {text!r} ({instant.isoformat()}) is in the past")
    return instant


def _read_instant(text: str, now: datetime) -> datetime | None:
    if _DURATION.fullmatch(text.lower()):
        return now + parse_duration(text)
    if _DATE.fullmatch(text):
        day = date.fromisoformat(text)
        return datetime.combine(day, datetime.min.time(), UTC) + timedelta(days=1)
    if _DATETIME.fullmatch(text):
        parsed = datetime.fromisoformat(text)
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=UTC)
        return parsed.astimezone(UTC)
    return None


def format_duration(td: timedelta) -> str:
    """A lifetime for humans and ``--json``: whole units, largest first, e.g.
    ``360d``, ``30m``, ``1d 12h``, ``0s``. Sub-second parts are dropped (the store
    keeps whole seconds); a year is shown as days since 365d is exact and 1y is
    not what everyone means by a year."""
    total = int(td.total_seconds())
    sign = "-" if total < 0 else ""
    total = abs(total)
    parts: list[str] = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        count, total = divmod(total, size)
        if count:
            parts.append(f"{count}{unit}")
    return sign + (" ".join(parts) if parts else "0s")
