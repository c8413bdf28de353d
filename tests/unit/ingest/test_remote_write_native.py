"""The native remote write 1.0 decoder (rtpm.ingest._rwdecode) gives exactly what the pure-Python
path gives: the same batch, the same refusals, the same errors, on valid requests and on random
corruptions of them; and under CI=true it must have been built (no silent fallback)."""

from __future__ import annotations

import os
import random
import struct
import subprocess
import sys
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rtpm.ingest import remote_write
from rtpm.ingest.proto import WriteRequest
from rtpm.ingest.proto.histograms import encode_exemplar
from rtpm.ingest.remote_write import RemoteWriteDecoder
from rtpm.ingest.validate import Validator
from rtpm.model.histograms import Exemplar
from rtpm.model.samples import STALE_NAN
from rtpm.settings import LimitsSettings

NOW_S = 1_780_000_000.0
NOW = int(NOW_S * 1000)
LIMITS = LimitsSettings(max_past_seconds=3600, max_future_seconds=60, max_labels_per_series=6)

needs_native = pytest.mark.skipif(remote_write.native_module() is None, reason="rtpm.ingest._rwdecode not built")


@pytest.mark.skipif(os.environ.get("CI") != "true", reason="only CI must have a C compiler")
def test_the_native_decoder_was_built_in_ci() -> None:
    assert remote_write.native_module() is not None, (
        "rtpm.ingest._rwdecode was not built, or was built from an older _rwdecode.c (pip install -e . rebuilds it)"
    )


def test_rtpm_native_0_selects_the_pure_path() -> None:
    code = "from rtpm.ingest import remote_write as r; print(r.NATIVE)"
    env = {**os.environ, "RTPM_NATIVE": "0"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def decoders(cache_size: int = 100_000) -> tuple[RemoteWriteDecoder, RemoteWriteDecoder]:
    def make(native: bool) -> RemoteWriteDecoder:
        return RemoteWriteDecoder(Validator(LIMITS, clock=lambda: NOW_S), native=native, cache_size=cache_size)

    return make(True), make(False)


def outcome(decoder: RemoteWriteDecoder, data: bytes, *, partial: bool = True, extra: Any = None) -> Any:
    """Everything a decode gives back, comparable between the two paths (values by their bits)."""
    try:
        if partial:
            batch, refused = decoder.decode_partial(data, tenant="t", extra_labels=extra)
        else:
            batch, refused = decoder.decode(data, tenant="t", extra_labels=extra), None
    except Exception as exc:  # the error itself is what is compared
        return ("error", type(exc).__name__, str(exc), getattr(exc, "details", None))
    return (
        "ok",
        batch.series,  # the same series in the same order, each once
        batch.refs,
        batch.ts_ms,
        [struct.pack("<d", v) for v in batch.values],
        [(batch.series[r], t) for r, t in zip(batch.h_refs, batch.h_ts_ms, strict=True)],
        [(batch.series[r], e) for r, e in zip(batch.ex_refs, batch.exemplars, strict=True)],
        batch.metadata,
        None if refused is None else (refused.samples, refused.problems, refused.problem_count, refused.items),
        sorted(decoder._known.items()),
    )


def request(series: list[tuple[list[tuple[str, str]], list[tuple[int, float]]]]) -> WriteRequest:
    w = WriteRequest()
    for labels, samples in series:
        ts = w.timeseries.add()
        for k, v in labels:
            ts.labels.add(name=k, value=v)
        for t, v in samples:
            ts.samples.add(timestamp=t, value=v)
    return w


def base_requests() -> list[bytes]:
    plain = request(
        [
            ([("__name__", "up"), ("job", "a")], [(NOW, 1.0)]),
            ([("__name__", "up"), ("job", "b")], [(NOW, 0.0)]),
            ([("__name__", "cpu"), ("core", "0"), ("host", "h1")], [(NOW - 2000, 0.5), (NOW - 1000, STALE_NAN)]),
            ([("job", "c"), ("__name__", "up")], [(NOW - 7_200_000, 3.0), (NOW, 4.0)]),  # one too old
            ([("__name__", "up"), ("job", "a")], [(NOW + 5, 2.0)]),  # the first series again
            ([("__name__", "bad-name")], [(NOW, 1.0)]),
            ([("__name__", "x"), ("v", "\u00e9\u4e2d")], [(NOW, -0.0), (NOW + 3_600_000, 1.0)]),  # one too new
        ]
    )
    with_exemplar = request([([("__name__", "up"), ("job", "a")], [(NOW, 1.0)])])
    with_exemplar.timeseries[0].exemplars.add().MergeFromString(
        encode_exemplar(Exemplar((("trace_id", "abc"),), 1.5, NOW))
    )
    with_metadata = request([([("__name__", "up"), ("job", "a")], [(NOW, 1.0)])])
    with_metadata.metadata.add(type=1, metric_family_name="up", help="Up.", unit="")
    return [m.SerializeToString() for m in (plain, with_exemplar, with_metadata)]


def _field(number: int, payload: bytes) -> bytes:
    return bytes([number << 3 | 2]) + _varint(len(payload)) + payload


def _varint(n: int) -> bytes:
    out = bytearray()
    while n >= 0x80:
        out.append(n & 0x7F | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def one_series_many_encodings() -> bytes:
    """The series {__name__="a", x="1"} as four TimeSeries: sorted labels, unsorted, a non-minimal
    Label length, sorted again; and another series between them."""

    def label(name: str, value: str, *, long_length: bool = False) -> bytes:
        inner = _field(1, name.encode()) + _field(2, value.encode())
        if long_length:
            return b"\x0a" + bytes([0x80 | len(inner), 0]) + inner
        return _field(1, inner)

    def sample(t: int, v: float) -> bytes:
        return _field(2, b"\x09" + struct.pack("<d", v) + b"\x10" + _varint(t))

    series = [
        label("__name__", "a") + label("x", "1") + sample(NOW, 1.0),
        label("__name__", "b") + sample(NOW, 9.0),
        label("x", "1") + label("__name__", "a") + sample(NOW + 1, 2.0),
        label("__name__", "a", long_length=True) + label("x", "1") + sample(NOW + 2, 3.0),
        label("__name__", "a") + label("x", "1") + sample(NOW + 3, 4.0),
    ]
    return b"".join(_field(1, ts) for ts in series)


@needs_native
@pytest.mark.parametrize("cache_size", [100_000, 2, 1])
@pytest.mark.parametrize("extra", [None, {"cluster": "c1"}])
def test_one_series_in_several_encodings_is_one_series_of_the_batch(cache_size: int, extra: Any) -> None:
    native, pure = decoders(cache_size)
    data = one_series_many_encodings()
    for order in ([data, base_requests()[0]] * 3, [base_requests()[0], data] * 3):
        for body in order:
            got = outcome(native, body, extra=extra)
            assert got == outcome(pure, body, extra=extra)
            if body is data:
                assert len(got[1]) == 2  # {__name__="a", x="1"} once, whatever its encoding


def mutate(rng: random.Random, data: bytes) -> bytes:
    b = bytearray(data)
    for _ in range(rng.randint(1, 3)):
        kind = rng.randrange(5)
        i = rng.randrange(len(b) + 1) if b else 0
        if kind == 0 and b:  # change a byte
            b[min(i, len(b) - 1)] = rng.randrange(256)
        elif kind == 1:  # insert a byte
            b.insert(i, rng.randrange(256))
        elif kind == 2 and b:  # delete a few bytes
            del b[i : i + rng.randint(1, 4)]
        elif kind == 3:  # cut the message short
            del b[i:]
        else:  # repeat a slice
            j = rng.randrange(len(b) + 1) if b else 0
            lo, hi = min(i, j), max(i, j)
            b[hi:hi] = b[lo:hi]
    return bytes(b)


@needs_native
def test_native_and_pure_agree_on_valid_requests_first_and_second_time() -> None:
    native, pure = decoders()
    for data in base_requests() * 2:
        for partial in (True, False):
            assert outcome(native, data, partial=partial) == outcome(pure, data, partial=partial)


@needs_native
def test_native_and_pure_agree_on_thousands_of_corrupted_requests() -> None:
    rng = random.Random(20261204)
    bases = base_requests()
    native, pure = decoders()
    for data in bases:  # labels known: the mutations reach the fast path
        outcome(native, data)
        outcome(pure, data)
    errors = 0
    for _ in range(4000):
        data = mutate(rng, rng.choice(bases))
        got, want = outcome(native, data), outcome(pure, data)
        assert got == want, data.hex()
        errors += got[0] == "error"
    assert 100 < errors < 3900  # both kinds of outcome were exercised


label_text = st.text(alphabet=st.sampled_from("ab_:é0\x10\x12\t\n"), max_size=6)


@needs_native
@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.lists(st.tuples(st.sampled_from(["__name__", "a", "b", "__x", ""]), label_text), max_size=4),
            st.lists(
                st.tuples(
                    st.one_of(st.just(NOW), st.integers(0, 2**63 - 1), st.integers(NOW - 4_000_000, NOW + 100_000)),
                    st.floats(allow_nan=True),
                ),
                max_size=3,
            ),
        ),
        max_size=6,
    )
)
def test_native_and_pure_agree_on_generated_requests(series: Any) -> None:
    native, pure = decoders()
    data = request(series).SerializeToString()
    for _ in range(2):  # the second time with every valid label set known
        assert outcome(native, data) == outcome(pure, data)


@needs_native
def test_known_series_in_the_usual_layout_do_not_reach_the_python_parser(monkeypatch: pytest.MonkeyPatch) -> None:
    native, _ = decoders()
    data = base_requests()[0]
    native.decode_partial(data, tenant="t")
    calls: list[int] = []
    slow = RemoteWriteDecoder._series_of

    def counting(self: RemoteWriteDecoder, *args: Any) -> None:
        calls.append(args[3])
        slow(self, *args)

    monkeypatch.setattr(RemoteWriteDecoder, "_series_of", counting)
    batch, refused = native.decode_partial(data, tenant="t")
    assert calls == [5]  # only the series whose name is invalid (never remembered) is parsed again
    assert len(batch) == 7 and refused.samples == {"invalid_series": 1, "too_old": 1, "too_new": 1}


@needs_native
def test_a_natively_decoded_batch_takes_more_samples_without_repeating_a_series() -> None:
    native, _ = decoders()
    data = request([([("__name__", "up"), ("job", j)], [(NOW, 1.0)]) for j in "abc"]).SerializeToString()
    native.decode_partial(data, tenant="t")
    batch, _ = native.decode_partial(data, tenant="t")  # labels known: series appended in C
    series = list(batch.series)
    up_a = (("__name__", "up"), ("job", "a"))
    assert batch.ref(up_a) == series.index(up_a)
    batch.add((("__name__", "new"),), NOW, 1.0)
    batch.append_columns([up_a, (("__name__", "new"),)], [NOW + 1, NOW + 1], [2.0, 3.0])
    assert batch.series == [*series, (("__name__", "new"),)]
    assert batch.refs[-3:] == [len(series), series.index(up_a), len(series)]


def v2_requests() -> list[bytes]:
    from rtpm.ingest.proto import WriteRequestV2
    from rtpm.ingest.proto.histograms import encode_histogram
    from rtpm.model.histograms import Histogram

    req = WriteRequestV2()
    symbols = ["", "__name__", "up", "job", "a", "b", "Up.", "seconds", "bad-name", "\u00e9\u4e2d"]
    req.symbols.extend(symbols)
    s = symbols.index
    plain = [
        ([s("__name__"), s("up"), s("job"), s("a")], [(NOW, 1.0)], (1, s("Up."), 0)),
        ([s("__name__"), s("up"), s("job"), s("b")], [(NOW - 1000, STALE_NAN), (NOW, 2.0)], None),
        ([s("__name__"), s("bad-name")], [(NOW, 1.0)], None),
        (
            [s("job"), s("\u00e9\u4e2d"), s("__name__"), s("up")],
            [(NOW - 7_200_000, 1.0), (NOW, 0.0)],
            (2, 0, s("seconds")),
        ),
        ([s("__name__"), s("up"), s("job")], [(NOW, 1.0)], None),  # odd refs
        ([s("__name__"), s("up"), s("job"), 99], [(NOW, 1.0)], (0, 0, 0)),  # ref past the end
        ([s("__name__"), s("up"), s("job"), s("a")], [(NOW + 5, 3.0)], (1, 99, 0)),
    ]
    for refs, samples, md in plain:
        ts = req.timeseries.add()
        ts.labels_refs.extend(refs)
        for t, v in samples:
            ts.samples.add(timestamp=t, value=v)
        if md is not None:
            ts.metadata.type, ts.metadata.help_ref, ts.metadata.unit_ref = md
    with_histogram = req.timeseries.add()
    with_histogram.labels_refs.extend([s("__name__"), s("up"), s("job"), s("b")])
    with_histogram.histograms.add().MergeFromString(
        encode_histogram(Histogram(schema=0, count=2.0, sum=3.0, positive_spans=((0, 1),), positive=(2.0,)), NOW)
    )
    with_exemplar = req.timeseries.add()
    with_exemplar.labels_refs.extend([s("__name__"), s("up"), s("job"), s("a")])
    with_exemplar.samples.add(timestamp=NOW + 9, value=4.0)
    with_exemplar.exemplars.add(labels_refs=[s("job"), s("a")], value=1.0, timestamp=NOW)
    return [req.SerializeToString()]


def outcome_v2(data: bytes, native: bool, validator: Validator) -> Any:
    from rtpm.ingest.remote_write_v2 import decode_v2

    try:
        batch, refused, written = decode_v2(data, tenant="t", validator=validator, native=native)
    except Exception as exc:
        return ("error", type(exc).__name__, str(exc), getattr(exc, "details", None))
    return (
        "ok",
        batch.series,
        batch.refs,
        batch.ts_ms,
        [struct.pack("<d", v) for v in batch.values],
        [(batch.series[r], t, h) for r, t, h in zip(batch.h_refs, batch.h_ts_ms, batch.h_values, strict=True)],
        [(batch.series[r], e) for r, e in zip(batch.ex_refs, batch.exemplars, strict=True)],
        batch.metadata,
        (refused.samples, refused.problems, refused.problem_count, refused.items),
        written,
    )


@needs_native
def test_v2_native_and_pure_agree_on_valid_and_thousands_of_corrupted_requests() -> None:
    rng = random.Random(4)
    bases = v2_requests()
    native_v, pure_v = Validator(LIMITS, clock=lambda: NOW_S), Validator(LIMITS, clock=lambda: NOW_S)
    for data in bases * 2:
        assert outcome_v2(data, True, native_v) == outcome_v2(data, False, pure_v)
    kinds = set()
    for _ in range(4000):
        data = mutate(rng, rng.choice(bases))
        got = outcome_v2(data, True, native_v)
        assert got == outcome_v2(data, False, pure_v), data.hex()
        kinds.add(got[0])
    assert kinds == {"ok", "error"}


@needs_native
@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.sampled_from(["__name__", "up", "job", "a", "", "bad-name", "\u00e9", "Up."]), max_size=8),
    st.lists(
        st.tuples(
            st.lists(st.integers(0, 9), max_size=6),
            st.lists(st.tuples(st.integers(-(2**63), 2**63 - 1) | st.just(NOW), st.floats()), max_size=3),
            st.none() | st.tuples(st.integers(-3, 9), st.integers(0, 9), st.integers(0, 9)),
        ),
        max_size=6,
    ),
)
def test_v2_native_and_pure_agree_on_generated_requests(symbols: list[str], series: Any) -> None:
    from rtpm.ingest.proto import WriteRequestV2

    req = WriteRequestV2()
    req.symbols.extend(["", *symbols])
    for refs, samples, md in series:
        ts = req.timeseries.add()
        ts.labels_refs.extend(refs)
        for t, v in samples:
            ts.samples.add(timestamp=t, value=v)
        if md is not None:
            ts.metadata.type, ts.metadata.help_ref, ts.metadata.unit_ref = md
    data = req.SerializeToString()
    native_v, pure_v = Validator(LIMITS, clock=lambda: NOW_S), Validator(LIMITS, clock=lambda: NOW_S)
    for _ in range(2):  # the second time with the series cache filled
        assert outcome_v2(data, True, native_v) == outcome_v2(data, False, pure_v)


@needs_native
def test_one_decoder_serves_requests_decoded_at_once_in_several_threads(monkeypatch: pytest.MonkeyPatch) -> None:
    """Big bodies are decoded in a thread while others are decoded on the event loop: a decode that
    gives up the GIL in the middle (here in every series it parses in Python) must not disturb
    another one on the same decoder."""
    import threading
    import time

    slow = RemoteWriteDecoder._series_of

    def sleepy(self: RemoteWriteDecoder, *args: Any) -> None:
        time.sleep(0.0002)
        slow(self, *args)

    monkeypatch.setattr(RemoteWriteDecoder, "_series_of", sleepy)
    native, pure = decoders()
    bodies = [
        request(
            [([("__name__", "m"), ("t", str(k)), ("i", str(i))], [(NOW, float(i))]) for i in range(30)]
        ).SerializeToString()
        for k in range(4)
    ]
    errors: list[BaseException] = []
    results: dict[int, list[Any]] = {}

    def run(k: int) -> None:
        try:
            results[k] = [outcome(native, bodies[k])[1:4] for _ in range(5)]
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    for k, got in results.items():
        assert got == [outcome(pure, bodies[k])[1:4]] * 5
