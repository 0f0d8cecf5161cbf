"""Reading --expires: dates valid through the day, zoned instants, durations from now."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from ldapsrv.auth.expiry import ACCEPTED_FORMS, format_duration, parse_duration, parse_expiry

NOW = datetime(2026, 6, 15, 10, 30, 0, tzinfo=UTC)


def test_a_date_is_valid_through_that_day_and_expires_at_the_next_midnight_utc() -> None:
    assert parse_expiry("2027-01-31", NOW) == datetime(2027, 2, 1, tzinfo=UTC)
    assert parse_expiry("2026-12-31", NOW) == datetime(2027, 1, 1, tzinfo=UTC)


def test_todays_date_means_until_tonight() -> None:
    assert parse_expiry("2026-06-15", NOW) == datetime(2026, 6, 16, tzinfo=UTC)


def test_yesterdays_date_is_in_the_past() -> None:
    with pytest.raises(ValueError, match="is in the past"):
        parse_expiry("2026-06-14", NOW)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2027-01-31T12:00:00Z", datetime(2027, 1, 31, 12, tzinfo=UTC)),
        ("2027-01-31T12:00:00+01:00", datetime(2027, 1, 31, 11, tzinfo=UTC)),
        ("2027-01-31T12:00:00-05:30", datetime(2027, 1, 31, 17, 30, tzinfo=UTC)),
        ("2027-01-31T12:00", datetime(2027, 1, 31, 12, tzinfo=UTC)),
        ("2027-01-31 12:00:00", datetime(2027, 1, 31, 12, tzinfo=UTC)),
        ("  2027-01-31T12:00:00Z  ", datetime(2027, 1, 31, 12, tzinfo=UTC)),
    ],
)
def test_datetimes_keep_their_zone_and_naive_ones_are_utc(text: str, expected: datetime) -> None:
    result = parse_expiry(text, NOW)
    assert result == expected
    assert result.tzinfo is UTC


@pytest.mark.parametrize(
    ("text", "delta"),
    [
        ("45s", timedelta(seconds=45)),
        ("30m", timedelta(minutes=30)),
        ("12h", timedelta(hours=12)),
        ("90d", timedelta(days=90)),
        ("6w", timedelta(weeks=6)),
        ("1y", timedelta(days=365)),
        ("2Y", timedelta(days=730)),
        ("360 d", timedelta(days=360)),
    ],
)
def test_durations_count_from_now(text: str, delta: timedelta) -> None:
    assert parse_expiry(text, NOW) == NOW + delta
    assert parse_duration(text) == delta


def test_an_instant_equal_to_now_is_in_the_past() -> None:
    with pytest.raises(ValueError, match="is in the past"):
        parse_expiry("0s", NOW)
    with pytest.raises(ValueError, match="is in the past"):
        parse_expiry(NOW.isoformat(), NOW)


def test_a_past_instant_names_what_was_typed() -> None:
    with pytest.raises(ValueError, match=r"'2020-01-01T00:00:00Z' .* is in the past"):
        parse_expiry("2020-01-01T00:00:00Z", NOW)


@pytest.mark.parametrize(
    "text",
    ["", "soon", "90", "d90", "-5d", "1.5d", "90days", "2027-13-01", "2027-02-30", "31/01/2027",
     "2027-01-31T25:00", "20270131", "1mo", "5d4h"],
)  # fmt: skip
def test_garbage_is_refused_with_the_accepted_forms(text: str) -> None:
    with pytest.raises(ValueError) as caught:
        parse_expiry(text, NOW)
    assert ACCEPTED_FORMS in str(caught.value)
    assert repr(text) in str(caught.value)


def test_an_absurdly_far_expiry_is_a_value_error_not_an_overflow() -> None:
    with pytest.raises(ValueError, match="too far"):
        parse_expiry("999999999y", NOW)
    with pytest.raises(ValueError, match="too far"):
        parse_expiry("9999-12-31", NOW)


@pytest.mark.parametrize(
    ("delta", "text"),
    [
        (timedelta(days=360), "360d"),
        (timedelta(days=365), "365d"),
        (timedelta(minutes=30), "30m"),
        (timedelta(days=1, hours=12), "1d 12h"),
        (timedelta(hours=1, seconds=5), "1h 5s"),
        (timedelta(seconds=59, microseconds=999), "59s"),
        (timedelta(0), "0s"),
        (-timedelta(minutes=5), "-5m"),
    ],
)
def test_format_duration_writes_whole_units_largest_first(delta: timedelta, text: str) -> None:
    assert format_duration(delta) == text


def test_single_unit_durations_read_back_to_themselves() -> None:
    for delta in (timedelta(days=90), timedelta(hours=12), timedelta(minutes=30)):
        assert parse_duration(format_duration(delta)) == delta
