"""rtpm.model.time: the one parser of times and durations and the one RFC3339 formatter."""

from __future__ import annotations

import pytest

from rtpm.model.time import (
    DURATION_UNITS_MS,
    MAX_TIME_MS,
    MIN_TIME_MS,
    RFC3339_MAX_MS,
    RFC3339_MIN_MS,
    format_duration,
    parse_duration,
    parse_timestamp,
    to_rfc3339,
)

T0 = 1_700_000_000_000  # 2023-11-14T22:13:20Z


# ---- timestamps -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "ms"),
    [
        pytest.param("1700000000", T0, id="unix-seconds"),
        pytest.param(" 1700000000 ", T0, id="blank-around"),
        pytest.param(1700000000, T0, id="int"),
        pytest.param(1700000000.5, T0 + 500, id="float"),
        pytest.param("1700000000.1234", T0 + 123, id="fraction-rounded-down"),
        pytest.param("1700000000.1236", T0 + 124, id="fraction-rounded-up"),
        pytest.param("1.7e9", T0, id="exponent"),
        pytest.param("-1.5", -1500, id="before-epoch"),
        pytest.param("0", 0, id="epoch"),
        pytest.param("2023-11-14T22:13:20Z", T0, id="rfc3339-z"),
        pytest.param("2023-11-14T22:13:20.5Z", T0 + 500, id="rfc3339-fraction"),
        pytest.param("2023-11-14T22:13:20.123456789Z", T0 + 123, id="rfc3339-nanos-truncated"),
        pytest.param("2023-11-14T23:13:20+01:00", T0, id="rfc3339-offset"),
        pytest.param("2023-11-14T17:43:20.250-04:30", T0 + 250, id="rfc3339-negative-offset"),
        pytest.param("2023-11-14T22:13:20", T0, id="no-zone-is-utc"),
        pytest.param("1969-12-31T23:59:59.999Z", -1, id="rfc3339-before-epoch"),
    ],
)
def test_timestamp_forms(raw: object, ms: int) -> None:
    assert parse_timestamp(raw) == ms


@pytest.mark.parametrize(
    "raw",
    ["1e308", "-1e308", "inf", "-Inf", "nan", "NaN", "1e19", "10000-01-01T00:00:00Z", "", "  ", "soon", "12:00"],
)
def test_timestamp_refusals(raw: str) -> None:
    with pytest.raises(ValueError):
        parse_timestamp(raw)


@pytest.mark.parametrize("raw", [True, False, None, [1], {"t": 1}, b"1700000000", float("nan"), float("inf"), 1e308])
def test_timestamp_refuses_other_types_and_non_finite_numbers(raw: object) -> None:
    with pytest.raises(ValueError):
        parse_timestamp(raw)


def test_timestamp_bounds() -> None:
    # float seconds this large are exact to a few microseconds' worth of ms only
    assert abs(parse_timestamp(MAX_TIME_MS // 1000 - 1) - (MAX_TIME_MS - 1000)) < 2000
    assert abs(parse_timestamp(MIN_TIME_MS // 1000 + 1) - (MIN_TIME_MS + 1000)) < 2000
    assert parse_timestamp("4e15") == 4e18  # Prometheus takes times this far out
    with pytest.raises(ValueError, match="outside"):
        parse_timestamp(MAX_TIME_MS // 1000 + 10)
    # routes that answer RFC3339 narrow the range to years 0001..9999
    assert parse_timestamp("9999-12-31T23:59:59.999Z", lo=RFC3339_MIN_MS, hi=RFC3339_MAX_MS) == RFC3339_MAX_MS
    with pytest.raises(ValueError, match="9999"):
        parse_timestamp("4e15", lo=RFC3339_MIN_MS, hi=RFC3339_MAX_MS)


def test_timestamp_reasons_say_what_is_wrong() -> None:
    with pytest.raises(ValueError, match="finite"):
        parse_timestamp("nan")
    with pytest.raises(ValueError, match="RFC3339"):
        parse_timestamp("yesterday")
    with pytest.raises(ValueError, match="empty"):
        parse_timestamp("")


# ---- durations --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "ms"),
    [
        pytest.param("90", 90_000, id="seconds"),
        pytest.param("1.5", 1500, id="fractional-seconds"),
        pytest.param(90, 90_000, id="int"),
        pytest.param(0.25, 250, id="float"),
        pytest.param("-5", -5000, id="negative-seconds"),
        pytest.param("0", 0, id="zero"),
        pytest.param("1e3", 1_000_000, id="exponent"),
        pytest.param("250ms", 250, id="ms"),
        pytest.param("90s", 90_000, id="s"),
        pytest.param("5m", 300_000, id="m"),
        pytest.param("1h30m", 5_400_000, id="h-m"),
        pytest.param("1d", 86_400_000, id="d"),
        pytest.param("2w", 14 * 86_400_000, id="w"),
        pytest.param("1y", 365 * 86_400_000, id="y"),
        pytest.param("1y2w3d4h5m6s7ms", 31_536_000_000 + 1_209_600_000 + 259_200_000 + 14_400_000 + 306_007, id="all"),
        pytest.param(" 5m ", 300_000, id="blank-around"),
    ],
)
def test_duration_forms(raw: object, ms: int) -> None:
    assert parse_duration(raw) == ms


@pytest.mark.parametrize(
    "raw",
    [
        "1e308",
        "nan",
        "inf",
        "5 minutes",
        "",
        "m",
        "1.5h",  # Prometheus takes no fraction with a unit
        "30s1m",  # nor units out of order
        "5us",  # nor micro- or nanoseconds
        "5ns",
        "-5m",  # a sign only on plain seconds
        "5M",
        None,
        True,
        [5],
    ],
)
def test_duration_refusals(raw: object) -> None:
    with pytest.raises(ValueError):
        parse_duration(raw)


def test_duration_too_long() -> None:
    with pytest.raises(ValueError, match="too long"):
        parse_duration(f"{2**63}ms")
    with pytest.raises(ValueError, match="too long"):
        parse_duration(1e17)


def test_format_duration_round_trips() -> None:
    assert format_duration(0) == "0s"
    assert format_duration(90) == "1m30s"
    assert format_duration(5400) == "1h30m"
    assert format_duration(0.25) == "250ms"
    for text in ("1h30m", "1d", "2w", "1y", "1m1s1ms"):
        assert format_duration(parse_duration(text) / 1000) == text
    assert list(DURATION_UNITS_MS) == ["y", "w", "d", "h", "m", "s", "ms"]


# ---- RFC3339 ----------------------------------------------------------------------------------


def test_to_rfc3339() -> None:
    assert to_rfc3339(T0 + 123) == "2023-11-14T22:13:20.123Z"
    assert to_rfc3339(T0) == "2023-11-14T22:13:20.000Z"
    assert to_rfc3339(-1) == "1969-12-31T23:59:59.999Z"
    assert to_rfc3339(0) == "1970-01-01T00:00:00.000Z"
    assert to_rfc3339(RFC3339_MIN_MS) == "0001-01-01T00:00:00.000Z"
    # clamped to what RFC3339 can print, never an exception
    assert to_rfc3339(MAX_TIME_MS) == "9999-12-31T23:59:59.999Z"
    assert to_rfc3339(MIN_TIME_MS) == "0001-01-01T00:00:00.000Z"


def test_rfc3339_round_trips_through_the_parser() -> None:
    for ms in (T0, T0 + 1, T0 + 999, -1, 0, RFC3339_MIN_MS, RFC3339_MAX_MS):
        assert parse_timestamp(to_rfc3339(ms)) == ms
