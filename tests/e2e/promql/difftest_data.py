"""Generated data for the differential test against a real Prometheus, and the remote-write
encoding used to load it into Prometheus (a hand-rolled protobuf writer: the schema is tiny)."""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

import numpy as np

from rtpm.model.labels import Labels, make_labels
from rtpm.model.samples import STALE_NAN

SCRAPE_MS = 15_000
SPAN_MS = 2 * 3600 * 1000
BUCKETS = ["0.05", "0.1", "0.25", "0.5", "1", "2.5", "5", "+Inf"]


@dataclass
class Dataset:
    t0_ms: int
    series: dict[Labels, tuple[list[int], list[float]]] = field(default_factory=dict)

    def add(self, labels: Labels, ts: list[int], vals: list[float]) -> None:
        self.series[labels] = (ts, vals)

    @property
    def samples(self) -> int:
        return sum(len(ts) for ts, _ in self.series.values())


def generate(t0_ms: int, seed: int = 7) -> Dataset:
    """Several hundred series over 2 h at 15 s. Every series' timestamps carry a fixed sub-second
    jitter, so no sample ever sits exactly on a window boundary (queries use whole seconds): the
    result does not depend on whether windows are left-open (Prometheus 3) or closed (2.x)."""
    rng = np.random.default_rng(seed)
    ds = Dataset(t0_ms)
    n = SPAN_MS // SCRAPE_MS + 1

    def times() -> np.ndarray:
        jitter = int(rng.integers(1, 999))
        return t0_ms + np.arange(n, dtype=np.int64) * SCRAPE_MS + jitter

    # counters with resets
    for job in ("j0", "j1"):
        for inst in range(20):
            for mode in ("user", "system", "idle"):
                ts = times()
                inc = rng.exponential(3.0, n)
                vals = np.cumsum(inc) + rng.integers(0, 1000)
                for r in np.flatnonzero(rng.random(n) < 0.01):
                    vals[r:] -= vals[r] - rng.uniform(0, 5)
                ds.add(
                    make_labels("test_counter_total", {"job": job, "instance": f"i{inst}", "mode": mode}),
                    ts.tolist(),
                    vals.tolist(),
                )
    # gauges (squashed random walks in (1, 99)); a few with gaps longer than the lookback delta
    for job in ("j0", "j1"):
        for inst in range(20):
            ts = times()
            vals = 50 + 49 * np.tanh(np.cumsum(rng.normal(0, 2.0, n)) / 60)  # in (1, 99), no ties
            keep = np.ones(n, dtype=bool)
            if inst < 4:
                a = int(rng.integers(60, 300))
                keep[a : a + 40 + inst * 10] = False
            ds.add(
                make_labels("test_gauge", {"job": job, "instance": f"i{inst}", "region": f"r{inst % 3}"}),
                ts[keep].tolist(),
                vals[keep].tolist(),
            )
            ds.add(
                make_labels("test_info", {"job": job, "instance": f"i{inst}", "owner": "a" if inst % 2 else "b"}),
                ts.tolist(),
                [1.0] * n,
            )
    # classic histograms
    for job in ("j0", "j1"):
        for inst in range(6):
            ts = times()
            obs = rng.lognormal(-1.0, 1.0, (n, 5))
            counts = np.zeros((n, len(BUCKETS)))
            for i, le in enumerate(BUCKETS):
                bound = float(le)
                counts[:, i] = np.cumsum((obs <= bound).sum(axis=1))
            for i, le in enumerate(BUCKETS):
                ds.add(
                    make_labels("test_hist_bucket", {"job": job, "instance": f"i{inst}", "le": le}),
                    ts.tolist(),
                    counts[:, i].tolist(),
                )
            ds.add(
                make_labels("test_hist_count", {"job": job, "instance": f"i{inst}"}),
                ts.tolist(),
                counts[:, -1].tolist(),
            )
            ds.add(
                make_labels("test_hist_sum", {"job": job, "instance": f"i{inst}"}),
                ts.tolist(),
                np.cumsum(obs.sum(axis=1)).tolist(),
            )
    # intermittent series: on for a while, then a stale marker, then off
    for inst in range(20):
        ts = times()
        vals = np.cumsum(rng.exponential(1.0, n)) + inst
        out_t: list[int] = []
        out_v: list[float] = []
        on, period_on, period_off = True, int(rng.integers(40, 100)), int(rng.integers(30, 60))
        left = period_on
        for k in range(n):
            if on:
                out_t.append(int(ts[k]))
                out_v.append(float(vals[k]))
            elif left == period_off:
                out_t.append(int(ts[k]))
                out_v.append(STALE_NAN)
            left -= 1
            if left <= 0:
                on = not on
                left = period_on if on else period_off
        ds.add(make_labels("test_intermittent", {"instance": f"i{inst}", "job": "flaky"}), out_t, out_v)
    _special(ds, np.random.default_rng(seed + 1), n)
    return ds


def _special(ds: Dataset, rng: np.random.Generator, n: int) -> None:
    """Series for the numerics edge cases (their own generator, so the other series stay as
    they were): NaN and +-Inf among ordinary values, values whose sum overflows float64, sums
    that need compensation, and equal values."""

    def times() -> np.ndarray:
        return ds.t0_ms + np.arange(n, dtype=np.int64) * SCRAPE_MS + int(rng.integers(1, 999))

    for kind, special in (("nan", np.nan), ("inf", np.inf), ("ninf", -np.inf)):
        for inst in range(4):
            vals = rng.uniform(0, 10, n)
            vals[rng.random(n) < 0.15 * (inst + 1) / 2] = special
            ds.add(make_labels("test_special", {"kind": kind, "instance": f"i{inst}"}), times().tolist(), vals.tolist())
    # near the top of float64: any plain sum of two overflows, the mean does not
    for inst in range(3):
        vals = rng.uniform(1.0e308, 1.7e308, n) * (1 if inst < 2 else -1)
        ds.add(make_labels("test_special", {"kind": "big", "instance": f"i{inst}"}), times().tolist(), vals.tolist())
    # 1e100, 1, -1e100, 1 (by instance, and over time): 2 with compensation, 0 without
    pattern = [1e100, 1.0, -1e100, 1.0]
    for inst, v in enumerate(pattern):
        ds.add(make_labels("test_special", {"kind": "kahan", "instance": f"i{inst}"}), times().tolist(), [v] * n)
    ds.add(
        make_labels("test_special", {"kind": "kahan_time", "instance": "i0"}),
        times().tolist(),
        [pattern[k % 4] for k in range(n)],
    )
    # equal values that are not exact in binary: the spread must be exactly 0
    for inst in range(3):
        ds.add(make_labels("test_special", {"kind": "equal", "instance": f"i{inst}"}), times().tolist(), [0.1] * n)


# ---- remote write encoding --------------------------------------------------------------------


def _varint(n: int) -> bytes:
    n &= (1 << 64) - 1
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def _ld(field_no: int, payload: bytes) -> bytes:
    return _varint((field_no << 3) | 2) + _varint(len(payload)) + payload


def encode_write_request(series: list[tuple[Labels, list[int], list[float]]]) -> bytes:
    """A remote-write 1.0 WriteRequest protobuf (uncompressed)."""
    out = bytearray()
    for labels, ts, vals in series:
        ts_msg = bytearray()
        for k, v in sorted(labels):
            ts_msg += _ld(1, _ld(1, k.encode()) + _ld(2, v.encode()))
        for t, v in zip(ts, vals, strict=True):
            ts_msg += _ld(2, b"\x09" + struct.pack("<d", v) + b"\x10" + _varint(t))
        out += _ld(1, bytes(ts_msg))
    return bytes(out)
