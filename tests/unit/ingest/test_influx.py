"""Influx line protocol: escaping, field types, precision, gzip, errors naming line and column."""

from __future__ import annotations

import gzip
from typing import Any

import pytest

from rtpm.ingest.influx import LineError, field_value, parse_line
from tests._pusher import Pusher, now_ms

# ---- parser ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("line", "measurement", "tags", "fields", "ts"),
    [
        pytest.param("cpu usage=1", "cpu", [], [("usage", "1")], None, id="minimal"),
        pytest.param(
            "cpu,host=a,region=eu usage=1.5,idle=2i 1700000000000000000",
            "cpu",
            [("host", "a"), ("region", "eu")],
            [("usage", "1.5"), ("idle", "2i")],
            "1700000000000000000",
            id="tags-fields-timestamp",
        ),
        pytest.param(r"my\ cpu\,x v=1", "my cpu,x", [], [("v", "1")], None, id="measurement-escapes-space-comma"),
        pytest.param(r"m=x v=1", "m=x", [], [("v", "1")], None, id="equals-in-measurement-is-literal"),
        pytest.param(
            r"m,ta\ g\,k\=y=va\ l\,u\=e v=1",
            "m",
            [("ta g,k=y", "va l,u=e")],
            [("v", "1")],
            None,
            id="tag-escapes",
        ),
        pytest.param(r"m f\ i\,e\=ld=1", "m", [], [("f i,e=ld", "1")], None, id="field-key-escapes"),
        pytest.param(r"m,p=C:\dir v=1", "m", [("p", "C:\\dir")], [("v", "1")], None, id="lone-backslash-literal"),
        pytest.param(
            r'm s="say \"hi\" \\ back, x=1 y",v=2',
            "m",
            [],
            [("s", r'"say \"hi\" \\ back, x=1 y"'), ("v", "2")],
            None,
            id="string-with-quote-backslash-comma-space",
        ),
    ],
)
def test_parse_line(line: str, measurement: str, tags: Any, fields: Any, ts: str | None) -> None:
    p = parse_line(line)
    assert p.measurement == measurement
    assert p.tags == tags
    assert [(k, v) for k, v, _ in p.fields] == fields
    assert p.timestamp == ts


@pytest.mark.parametrize(
    ("line", "column", "reason_part"),
    [
        pytest.param(",a=b v=1", 1, "missing measurement", id="no-measurement"),
        pytest.param("cpu", 4, "missing fields", id="no-fields"),
        pytest.param("cpu,host v=1", 9, "expected '='", id="tag-without-equals"),
        pytest.param("cpu,host= v=1", 10, "missing value of tag", id="empty-tag-value"),
        pytest.param("cpu,a=b=c v=1", 8, "unescaped '='", id="equals-in-tag-value"),
        pytest.param("cpu v", 6, "expected '='", id="field-without-equals"),
        pytest.param("cpu  v=1", 5, "missing field key", id="double-space"),
        pytest.param('cpu s="abc', 7, "unterminated string", id="unterminated-string"),
        pytest.param('cpu s="abc"x', 12, "unexpected 'x'", id="junk-after-string"),
    ],
)
def test_parse_errors_name_the_column(line: str, column: int, reason_part: str) -> None:
    with pytest.raises(LineError) as info:
        parse_line(line)
    assert info.value.column == column
    assert reason_part in info.value.reason


@pytest.mark.parametrize(
    ("raw", "value"),
    [
        ("1", 1.0),
        ("-1.5", -1.5),
        ("1.", 1.0),
        (".5", 0.5),
        ("-1.2e+78", -1.2e78),
        ("1E-3", 0.001),
        ("42i", 42.0),
        ("-9223372036854775808i", -9223372036854775808.0),
        ("18446744073709551615u", 18446744073709551615.0),
        ("0u", 0.0),
        *[(b, 1.0) for b in ("t", "T", "true", "True", "TRUE")],
        *[(b, 0.0) for b in ("f", "F", "false", "False", "FALSE")],
        ('"text"', None),
    ],
)
def test_field_values(raw: str, value: float | None) -> None:
    assert field_value(raw, 1) == value


@pytest.mark.parametrize(
    "raw",
    ["1x", "nan", "NaN", "inf", "1_000", "9223372036854775808i", "-1u", "1.5i", "yes", "tRUE", "0x10", "1e999"],
)
def test_invalid_field_values(raw: str) -> None:
    with pytest.raises(LineError):
        field_value(raw, 7)


# ---- endpoints -------------------------------------------------------------------------------


def test_v1_write_maps_fields_to_series_with_db_label(pusher: Pusher) -> None:
    t_ns = now_ms() * 1_000_000
    body = f"cpu,host=a usage_idle=97.5,usage_user=2i {t_ns}\nmem,host=a used=1024u,ok=true {t_ns}\n"
    r = pusher.client.post("/write?db=telegraf", content=body, headers={"Content-Type": "text/plain; charset=utf-8"})
    assert r.status_code == 204
    t = t_ns // 1_000_000
    assert pusher.stored() == {
        (("__name__", "cpu_usage_idle"), ("db", "telegraf"), ("host", "a")): [(t, 97.5)],
        (("__name__", "cpu_usage_user"), ("db", "telegraf"), ("host", "a")): [(t, 2.0)],
        (("__name__", "mem_ok"), ("db", "telegraf"), ("host", "a")): [(t, 1.0)],
        (("__name__", "mem_used"), ("db", "telegraf"), ("host", "a")): [(t, 1024.0)],
    }


def test_a_db_tag_wins_over_the_db_argument(pusher: Pusher) -> None:
    assert pusher.client.post("/write?db=telegraf", content="m,db=mine v=1").status_code == 204
    assert list(pusher.stored()) == [(("__name__", "m_v"), ("db", "mine"))]


def test_v2_write_with_bucket_and_precision(pusher: Pusher) -> None:
    t_s = now_ms() // 1000
    r = pusher.client.post("/api/v2/write?org=o&bucket=b&precision=s", content=f"m v=1 {t_s}")
    assert r.status_code == 204
    assert pusher.stored() == {(("__name__", "m_v"), ("db", "b")): [(t_s * 1000, 1.0)]}


@pytest.mark.parametrize(("precision", "factor"), [("ns", 10**6), ("us", 10**3), ("u", 10**3), ("ms", 1), ("n", 10**6)])
def test_precision_units(pusher: Pusher, precision: str, factor: int) -> None:
    t = now_ms()
    assert pusher.client.post(f"/write?precision={precision}", content=f"m v=1 {t * factor}").status_code == 204
    assert pusher.stored() == {(("__name__", "m_v"),): [(t, 1.0)]}


def test_missing_timestamp_gets_server_time_and_strings_are_skipped(pusher: Pusher) -> None:
    before = now_ms()
    r = pusher.client.post("/write", content='svc,host=a up=1i,version="1.2.3"\n')
    assert r.status_code == 204
    [(labels, [(t, v)])] = pusher.stored().items()
    assert labels == (("__name__", "svc_up"), ("host", "a"))
    assert before <= t <= now_ms() and v == 1.0


def test_escaped_names_are_sanitized_and_values_kept(pusher: Pusher) -> None:
    r = pusher.client.post("/write", content=r"disk.io,dev\ name=sd\,a read-bytes=5i" + "\n")
    assert r.status_code == 204
    assert list(pusher.stored()) == [(("__name__", "disk_io_read_bytes"), ("dev_name", "sd,a"))]


def test_comments_blank_lines_and_crlf(pusher: Pusher) -> None:
    body = "# a comment\r\n\r\n  m v=1\r\n#m v=2\n"
    assert pusher.client.post("/write", content=body).status_code == 204
    assert [len(v) for v in pusher.stored().values()] == [1]


def test_string_field_spanning_lines(pusher: Pusher) -> None:
    body = 'log,host=a msg="two\nlines",n=3i\nm v=1\n'
    assert pusher.client.post("/write", content=body).status_code == 204
    assert set(pusher.stored()) == {(("__name__", "log_n"), ("host", "a")), (("__name__", "m_v"),)}


def test_gzip_body(pusher: Pusher) -> None:
    body = gzip.compress(b"m,host=a v=1\nm,host=b v=2\n")
    r = pusher.client.post("/write", content=body, headers={"Content-Encoding": "gzip"})
    assert r.status_code == 204
    assert len(pusher.stored()) == 2


def test_empty_body_is_204_and_stores_nothing(pusher: Pusher) -> None:
    assert pusher.client.post("/write", content=b"").status_code == 204
    assert pusher.stored() == {}


def test_bad_lines_are_a_partial_write_and_the_good_lines_are_stored(pusher: Pusher) -> None:
    # InfluxDB 1.x: the points that parse are written; 400 "partial write: ... dropped=N".
    t = now_ms()
    body = f"m v=1 {t}\nm v=2 {t + 1}\ncpu,host=a usage=abc {t}\nm v=3x\n"
    r = pusher.client.post("/write?precision=ms", content=body)
    assert r.status_code == 400
    doc = r.json()
    assert doc["error"].startswith("partial write: line 3: column 18: invalid field value 'abc'")
    assert doc["error"].endswith("(and 1 more problems) dropped=2")
    assert doc["message"] == doc["error"] and doc["code"] == "invalid"
    assert [(d["index"], d["field"]) for d in doc["details"]] == [(3, "column 18"), (4, "column 5")]
    assert pusher.stored() == {(("__name__", "m_v"),): [(t, 1.0), (t + 1, 2.0)]}
    assert pusher.refused("influx", "parse_error") == 2


def test_invalid_series_and_old_samples_are_a_partial_write(pusher: Pusher) -> None:
    t = now_ms()
    body = f"m,room={'x' * 65} v=1 {t}\nm,room=a v=2,w=3 {t}\nm v=4 1000\n"
    for api in ("/write?precision=ms", "/api/v2/write?precision=ms&bucket=b"):
        r = pusher.client.post(api, content=body)
        assert r.status_code == 400
        assert r.json()["error"].startswith("partial write: line 1: labels.room: value longer than 64")
        assert r.json()["error"].endswith("dropped=2")
    stored = pusher.stored()
    assert stored[(("__name__", "m_v"), ("room", "a"))] == [(t, 2.0)]
    assert stored[(("__name__", "m_w"), ("db", "b"), ("room", "a"))] == [(t, 3.0)]
    assert pusher.refused("influx", "invalid_series") == 2
    assert pusher.refused("influx", "too_old") == 2


def test_a_body_of_only_bad_lines_fails_naming_line_and_column(pusher: Pusher) -> None:
    body = "cpu,host=a usage=abc\nm v=3x\n"
    r = pusher.client.post("/write", content=body)
    assert r.status_code == 400
    error = r.json()["error"]
    assert error["message"].startswith("line 1, column 18: invalid field value 'abc'")
    assert "and 1 more" in error["message"]
    assert [(d["line"], d["column"]) for d in error["details"]] == [(1, 18), (2, 5)]
    assert pusher.stored() == {}


def test_columns_count_leading_blanks(pusher: Pusher) -> None:
    r = pusher.client.post("/write", content="  m v=")
    assert r.json()["error"]["details"][0]["column"] == 7


def test_invalid_timestamp_and_precision_are_400(pusher: Pusher) -> None:
    r = pusher.client.post("/write", content="m v=1 12abc")
    assert r.status_code == 400
    assert r.json()["error"]["message"].startswith("line 1, column 7: invalid timestamp")
    assert pusher.client.post("/write?precision=fortnight", content="m v=1").status_code == 400


def test_a_sample_out_of_the_time_window_is_a_partial_write(pusher: Pusher) -> None:
    r = pusher.client.post("/write?precision=s", content="m v=1\nm v=2 1000\n")
    assert r.status_code == 400
    assert r.json()["error"] == "partial write: line 2: timestamp: too far in the past (older than 3600 s) dropped=1"
    assert [v for _, v in pusher.stored()[(("__name__", "m_v"),)]] == [1.0]


def test_invalid_utf8_is_400(pusher: Pusher) -> None:
    r = pusher.client.post("/write", content=b"m v=1\nm,h=\xff v=1\n")
    assert r.status_code == 400
    assert r.json()["error"]["message"].startswith("line 2")


def test_gzip_bomb_is_refused_with_413(pusher: Pusher) -> None:
    bomb = gzip.compress(b"m v=1\n" * 200_000)  # 1.2 MB inflated, limit is 64 KB
    assert len(bomb) < 64 * 1024
    r = pusher.client.post("/write", content=bomb, headers={"Content-Encoding": "gzip"})
    assert r.status_code == 413
    assert pusher.stored() == {}


def test_truncated_gzip_is_400_and_unknown_encoding_415(pusher: Pusher) -> None:
    body = gzip.compress(b"m v=1\n" * 100)
    assert pusher.client.post("/write", content=body[:-10], headers={"Content-Encoding": "gzip"}).status_code == 400
    assert pusher.client.post("/write", content=body, headers={"Content-Encoding": "br"}).status_code == 415


@pytest.mark.parametrize("method", ["GET", "POST"])
def test_query_answers_telegraf_create_database_probe(pusher: Pusher, method: str) -> None:
    if method == "GET":
        r = pusher.client.get("/query", params={"q": 'CREATE DATABASE "telegraf"'})
    else:
        r = pusher.client.post(
            "/query",
            content="q=CREATE+DATABASE+%22telegraf%22",
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        )
    assert r.status_code == 200
    result = r.json()["results"][0]
    assert "error" not in result


# ---- the column-wise fast paths decode exactly like the line-by-line parser -------------------

_BODIES = [
    pytest.param("cpu,host=a,region=eu usage=1.5 {t}\ncpu,host=b,region=eu usage=2 {t}\n", id="one-field-lines"),
    pytest.param("cpu,host=a usage=1.5 {t}\ncpu,host=a usage=2.5 {t2}\n", id="same-series-twice"),
    pytest.param("cpu,region=eu,host=a usage=1 {t}\ncpu,host=a,region=eu usage=2 {t2}", id="tag-order-same-series"),
    pytest.param("cpu,host=a usage=1i,idle=2u,up=true,down=F {t}\n", id="several-fields-every-type"),
    pytest.param("cpu,host=a usage=1\ncpu,host=b usage=-2e3", id="no-timestamps"),
    pytest.param("cpu,host=a usage=1 {t}\ncpu,host=b usage=2", id="mixed-timestamps"),
    pytest.param('cpu,host=a usage=1,s="x" {t}\n', id="string-field"),
    pytest.param("cpu,host=a usage=.5 {t}\n\ncpu,host=a idle=+1 {t}\n", id="blank-line"),
    pytest.param("cpu,host=a usage=nan {t}\n", id="nan-is-invalid"),
    pytest.param("cpu,host=a usage=1e999 {t}\n", id="float-out-of-range"),
    pytest.param("cpu,host=a usage=1_0 {t}\n", id="underscore-is-invalid"),
    pytest.param("cpu,host=a usage=1=2 {t}\n", id="equals-in-value"),
    pytest.param("cpu,host=a usage=1,x {t}\n", id="field-without-value"),
    pytest.param("cpu,host usage=1 {t}\n", id="tag-without-value"),
    pytest.param(",host=a usage=1 {t}\n", id="no-measurement"),
    pytest.param("cpu,host=a usage=1 12\n", id="timestamp-out-of-window"),
    pytest.param("cpu,host=a usage=1 +{t}\n", id="timestamp-with-plus"),
    pytest.param("cpu,host=a usage=1 {t} 5\n", id="extra-token"),
    pytest.param("cpu,1host=a,h-k=b,__x=c usage=1 {t}\n", id="label-names-sanitized-or-invalid"),
    pytest.param("9cpu.x,host=a us-age=1 {t}\n", id="metric-name-sanitized"),
]


def _decode_both(body: str, monkeypatch: pytest.MonkeyPatch, **kw: Any) -> tuple[Any, Any]:
    from rtpm.ingest.influx import InfluxDecoder
    from rtpm.ingest.validate import Validator
    from rtpm.settings import LimitsSettings

    now = now_ms()

    def run(decoder: InfluxDecoder) -> Any:
        out = []
        for _ in range(2):  # the second time from the decoder's cache
            try:
                b = decoder.decode(body.encode(), tenant="t", now_ms=now, **kw)
                out.append((b.series, b.refs, b.ts_ms, [str(v) for v in b.values], b._index))
            except Exception as exc:  # noqa: BLE001
                out.append((type(exc).__name__, str(exc), getattr(exc, "details", None)))
        return out

    fast = run(InfluxDecoder(Validator(LimitsSettings())))
    slow_decoder = InfluxDecoder(Validator(LimitsSettings()))
    monkeypatch.setattr(slow_decoder, "_decode_single", lambda *a: None)
    monkeypatch.setattr(slow_decoder, "_decode_plain", lambda *a: None)
    return fast, run(slow_decoder)


@pytest.mark.parametrize("template", _BODIES)
@pytest.mark.parametrize("kw", [{}, {"db": "telegraf"}, {"extra_labels": {"env": "x"}}], ids=["plain", "db", "extra"])
def test_fast_paths_decode_like_the_line_parser(
    template: str, kw: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    t = now_ms() * 1_000_000
    body = template.format(t=t, t2=t + 1_000_000_000)
    fast, slow = _decode_both(body, monkeypatch, **kw)
    assert fast == slow


def test_fast_paths_with_seconds_precision(monkeypatch: pytest.MonkeyPatch) -> None:
    t = now_ms() // 1000
    fast, slow = _decode_both(f"cpu,host=a usage=1 {t}\ncpu,host=b usage=2 {t}\n", monkeypatch, precision="s")
    assert fast == slow
    assert fast[0][2] == [t * 1000, t * 1000]


def test_common_bodies_take_the_fast_paths(monkeypatch: pytest.MonkeyPatch) -> None:
    from rtpm.ingest.influx import InfluxDecoder
    from rtpm.ingest.validate import Validator
    from rtpm.settings import LimitsSettings

    decoder = InfluxDecoder(Validator(LimitsSettings()))
    t = now_ms() * 1_000_000
    parser = {"used": 0}
    original = decoder._decode_plain

    def plain(*args: Any) -> Any:
        parser["used"] += 1
        return original(*args)

    monkeypatch.setattr(decoder, "_decode_plain", plain)
    single = decoder.decode(f"cpu,host=a v=1 {t}\ncpu,host=b v=2 {t}\n".encode(), tenant="t", now_ms=now_ms())
    assert len(single) == 2 and parser["used"] == 0
    several = decoder.decode(f"cpu,host=a v=1,w=2i {t}\n".encode(), tenant="t", now_ms=now_ms())
    assert len(several) == 2 and parser["used"] == 1
