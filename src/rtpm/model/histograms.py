"""Native histograms (Prometheus's sparse, exponential-bucket histograms) and exemplars.

A `Histogram` holds absolute bucket counts (the remote-write integer form's deltas are resolved at
decode). Buckets are addressed by their index: for an exponential schema `s` (-4..8) bucket `i` is
`(base**(i-1), base**i]` with `base = 2**(2**-s)` (mirrored for the negative side), and the zero
bucket `[-zero_threshold, zero_threshold]` sits between them; for the custom-bucket schema (-53)
bucket `i` is `(custom_values[i-1], custom_values[i]]` with -Inf/+Inf at the ends. Spans are
`(offset, length)` runs of indices, the first offset absolute, the next ones gaps.

The operations follow Prometheus's FloatHistogram (model/histogram in prometheus/prometheus):
addition and subtraction at the lower of the two schemas and the wider zero bucket, counter reset
detection, scaling, quantile and fraction estimation (exponential interpolation in exponential
buckets, linear in custom buckets and the zero bucket), and the mean and variance estimates.
Pure functions and immutable values.
"""

from __future__ import annotations

import math
from bisect import bisect_left
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from decimal import Decimal, getcontext

from rtpm.model.stale import is_stale_nan

CUSTOM_BUCKETS_SCHEMA = -53
MIN_SCHEMA = -4
MAX_SCHEMA = 8

# Counter reset hints (prometheus.Histogram.ResetHint).
RESET_UNKNOWN = 0
RESET_YES = 1
RESET_NO = 2
RESET_GAUGE = 3

Spans = tuple[tuple[int, int], ...]


class HistogramError(ValueError):
    """Two histograms that cannot be combined (exponential with custom buckets)."""


def _exponential_fractions() -> list[list[float]]:
    """For schemas 0..8, the mantissas 2**(k / 2**s) / 2 of the bucket bounds in [0.5, 1),
    correctly rounded (computed with 40 significant digits)."""
    getcontext().prec = 40
    out = []
    for s in range(MAX_SCHEMA + 1):
        n = 1 << s
        out.append([float(Decimal(2) ** (Decimal(k) / Decimal(n)) / 2) for k in range(n)])
    return out


_FRACTIONS = _exponential_fractions()


def exponential_bound(idx: int, schema: int) -> float:
    """The upper bound of positive bucket `idx` in exponential `schema`. The last finite bucket
    ends at the largest float; the next one (observations of +Inf) at +Inf."""
    if schema < 0:
        exp = idx << -schema
        if exp == 1024:
            return 1.7976931348623157e308
        if exp > 1024:
            return math.inf
        if exp < -1100:
            return 0.0
        return math.ldexp(1.0, exp)
    frac = _FRACTIONS[schema][idx & ((1 << schema) - 1)]
    exp = (idx >> schema) + 1
    if frac == 0.5 and exp == 1025:
        return 1.7976931348623157e308
    if exp > 1025:
        return math.inf
    if exp < -1100:
        return 0.0
    return math.ldexp(frac, exp)


def bucket_bound(idx: int, schema: int, custom: tuple[float, ...]) -> float:
    if schema == CUSTOM_BUCKETS_SCHEMA:
        if idx >= len(custom):
            return math.inf
        if idx < 0:
            return -math.inf
        return custom[idx]
    return exponential_bound(idx, schema)


@dataclass(frozen=True, slots=True)
class Bucket:
    lower: float
    upper: float
    lower_inclusive: bool
    upper_inclusive: bool
    count: float
    index: int = 0

    def boundary_rule(self) -> int:
        """Prometheus's JSON `boundaries`: 0 left open, 1 right open, 2 open, 3 closed."""
        if self.lower_inclusive:
            return 3 if self.upper_inclusive else 1
        return 0 if self.upper_inclusive else 2


def _expand(spans: Spans, counts: tuple[float, ...]) -> dict[int, float]:
    out: dict[int, float] = {}
    idx = 0
    pos = 0
    for n, (offset, length) in enumerate(spans):
        idx = offset if n == 0 else idx + offset
        for _ in range(length):
            if pos >= len(counts):
                return out
            out[idx] = counts[pos]
            pos += 1
            idx += 1
    return out


def _spans_of(buckets: dict[int, float], keep_empty: bool = False) -> tuple[Spans, tuple[float, ...]]:
    """Spans and counts of an index -> count map (empty buckets dropped unless `keep_empty`)."""
    spans: list[list[int]] = []
    counts: list[float] = []
    prev_end = 0
    for idx in sorted(buckets):
        c = buckets[idx]
        if c == 0 and not keep_empty:
            continue
        if spans and idx == prev_end:
            spans[-1][1] += 1
        else:
            spans.append([idx if not spans else idx - prev_end, 1])
        prev_end = idx + 1
        counts.append(c)
    return tuple((a, b) for a, b in spans), tuple(counts)


@dataclass(frozen=True, slots=True)
class Histogram:
    """One native histogram sample (counts may be floats: rates, sums and averages are)."""

    schema: int = 0
    zero_threshold: float = 0.0
    zero_count: float = 0.0
    count: float = 0.0
    sum: float = 0.0
    positive_spans: Spans = ()
    positive: tuple[float, ...] = ()
    negative_spans: Spans = ()
    negative: tuple[float, ...] = ()
    custom_values: tuple[float, ...] = ()
    reset_hint: int = RESET_UNKNOWN
    is_int: bool = False  # sent as an integer histogram (counts are whole numbers)

    # -- structure -----------------------------------------------------------------------------

    @property
    def uses_custom_buckets(self) -> bool:
        return self.schema == CUSTOM_BUCKETS_SCHEMA

    def positive_map(self) -> dict[int, float]:
        return _expand(self.positive_spans, self.positive)

    def negative_map(self) -> dict[int, float]:
        return _expand(self.negative_spans, self.negative)

    def validate(self) -> str | None:
        """Why this histogram is malformed, or None."""
        s = self.schema
        if s != CUSTOM_BUCKETS_SCHEMA and not (MIN_SCHEMA <= s <= MAX_SCHEMA):
            return f"schema {s} is not supported (valid: -4..8, or -53 for custom buckets)"
        for side, spans, counts in (
            ("positive", self.positive_spans, self.positive),
            ("negative", self.negative_spans, self.negative),
        ):
            if sum(length for _, length in spans) != len(counts):
                return f"{side} spans cover {sum(length for _, length in spans)} buckets but {len(counts)} are given"
            for n, (offset, _) in enumerate(spans):
                if n and offset < 0:
                    return f"{side} span {n} has a negative offset"
            if any(c < 0 or c != c for c in counts):
                return f"{side} bucket counts must be non-negative"
        if self.uses_custom_buckets:
            cv = self.custom_values
            if any(b >= a for a, b in zip(cv[1:], cv, strict=False)) or any(v != v or v == math.inf for v in cv):
                return "custom bucket bounds must be finite and increasing"
            if self.negative:
                return "histograms with custom buckets have no negative buckets"
            top = max(self.positive_map(), default=-1)
            if top > len(cv) or (self.positive_spans and self.positive_spans[0][0] < 0):
                return "custom bucket index out of range of the custom bounds"
        elif self.custom_values:
            return "custom bounds are only allowed with schema -53"
        if self.zero_threshold < 0 or self.zero_count < 0 or self.zero_threshold != self.zero_threshold:
            return "zero bucket threshold and count must be non-negative"
        return None

    def is_stale(self) -> bool:
        return self.sum != self.sum and is_stale_nan(self.sum)

    # -- bucket iteration ----------------------------------------------------------------------

    def _bucket(self, idx: int, count: float, positive: bool) -> Bucket:
        s, cv = self.schema, self.custom_values
        if positive:
            upper, lower = bucket_bound(idx, s, cv), bucket_bound(idx - 1, s, cv)
        else:
            lower, upper = -bucket_bound(idx, s, cv), -bucket_bound(idx - 1, s, cv)
        if self.uses_custom_buckets:
            return Bucket(lower, upper, idx == 0, True, count, idx)
        return Bucket(lower, upper, lower < 0, upper > 0, count, idx)

    def _clamped(self, b: Bucket) -> Bucket:
        zt = self.zero_threshold
        if b.upper < 0 and b.upper > -zt:
            return replace(b, upper=-zt)
        if b.lower > 0 and b.lower < zt:
            return replace(b, lower=zt)
        return b

    def buckets(self) -> Iterator[Bucket]:
        """Every bucket in ascending order: negative, zero (if populated), positive."""
        neg = self.negative_map()
        for idx in sorted(neg, reverse=True):
            yield self._clamped(self._bucket(idx, neg[idx], False))
        if self.zero_count > 0 and not self.uses_custom_buckets:
            zt = self.zero_threshold
            yield Bucket(-zt, zt, True, True, self.zero_count)
        pos = self.positive_map()
        for idx in sorted(pos):
            yield self._clamped(self._bucket(idx, pos[idx], True))

    def reverse_buckets(self) -> Iterator[Bucket]:
        """Every bucket in descending order."""
        pos = self.positive_map()
        for idx in sorted(pos, reverse=True):
            yield self._clamped(self._bucket(idx, pos[idx], True))
        if self.zero_count > 0 and not self.uses_custom_buckets:
            zt = self.zero_threshold
            yield Bucket(-zt, zt, True, True, self.zero_count)
        neg = self.negative_map()
        for idx in sorted(neg):
            yield self._clamped(self._bucket(idx, neg[idx], False))

    # -- arithmetic ----------------------------------------------------------------------------

    def scaled(self, factor: float) -> Histogram:
        """Every count and the sum times `factor` (a negative factor makes it a gauge)."""
        hint = RESET_GAUGE if factor < 0 else self.reset_hint
        return Histogram(
            self.schema,
            self.zero_threshold,
            self.zero_count * factor,
            self.count * factor,
            self.sum * factor,
            self.positive_spans,
            tuple(c * factor for c in self.positive),
            self.negative_spans,
            tuple(c * factor for c in self.negative),
            self.custom_values,
            hint,
        )

    def divided(self, divisor: float) -> Histogram:
        """Every count and the sum divided by `divisor`, with IEEE semantics (x/0 is +-Inf or NaN)."""
        return _map_counts(self, lambda c: go_div(c, divisor))

    def with_hint(self, hint: int) -> Histogram:
        return Histogram(
            self.schema,
            self.zero_threshold,
            self.zero_count,
            self.count,
            self.sum,
            self.positive_spans,
            self.positive,
            self.negative_spans,
            self.negative,
            self.custom_values,
            hint,
            self.is_int,
        )

    def compact(self) -> Histogram:
        ps, pc = _spans_of(self.positive_map())
        ns, nc = _spans_of(self.negative_map())
        return Histogram(
            self.schema,
            self.zero_threshold,
            self.zero_count,
            self.count,
            self.sum,
            ps,
            pc,
            ns,
            nc,
            self.custom_values,
            self.reset_hint,
            self.is_int,
        )


def go_div(a: float, b: float) -> float:
    """a / b as IEEE floats divide (Python raises on a zero divisor)."""
    if b != 0:
        return a / b
    if a != a or a == 0:
        return math.nan
    return math.copysign(math.inf, a) * math.copysign(1.0, b)


def _map_counts(h: Histogram, f: Callable[[float], float]) -> Histogram:
    return Histogram(
        h.schema,
        h.zero_threshold,
        f(h.zero_count),
        f(h.count),
        f(h.sum),
        h.positive_spans,
        tuple(f(c) for c in h.positive),
        h.negative_spans,
        tuple(f(c) for c in h.negative),
        h.custom_values,
        h.reset_hint,
    )


def _reduce(buckets: dict[int, float], origin: int, target: int) -> dict[int, float]:
    if origin == target:
        return buckets
    out: dict[int, float] = {}
    shift = origin - target
    for idx, c in buckets.items():
        t = ((idx - 1) >> shift) + 1
        out[t] = out.get(t, 0.0) + c
    return out


def _zero_widened(
    h: Histogram, pos: dict[int, float], neg: dict[int, float], threshold: float
) -> tuple[float, float, dict[int, float], dict[int, float]]:
    """Merge the buckets of `h` (at schema h.schema, maps `pos`/`neg`) that lie within a zero
    bucket of `threshold` into the zero count. A populated bucket straddling the threshold moves
    the threshold to its upper bound. Returns (zero_count, threshold, pos, neg)."""
    if threshold <= h.zero_threshold:
        return h.zero_count, h.zero_threshold, pos, neg
    s, cv = h.schema, h.custom_values
    while True:
        zero = h.zero_count
        new_pos = dict(pos)
        new_neg = dict(neg)
        moved = False
        for idx in sorted(pos):
            lower, upper = bucket_bound(idx - 1, s, cv), bucket_bound(idx, s, cv)
            if lower >= threshold:
                break
            zero += pos[idx]
            del new_pos[idx]
            if upper > threshold:
                if pos[idx] != 0:
                    threshold = upper
                break
        for idx in sorted(neg):
            lower, upper = bucket_bound(idx - 1, s, cv), bucket_bound(idx, s, cv)
            if lower >= threshold:
                break
            zero += neg[idx]
            del new_neg[idx]
            if upper > threshold:
                if neg[idx] != 0:
                    threshold = upper
                    moved = True
                break
        if not moved:
            return zero, threshold, new_pos, new_neg


def _custom_reconciled(a: tuple[float, ...], b: tuple[float, ...]) -> tuple[tuple[float, ...], bool]:
    if a == b:
        return a, False
    common = tuple(sorted(set(a) & set(b)))
    return common, True


def _to_bounds(buckets: dict[int, float], cv: tuple[float, ...], target: tuple[float, ...]) -> dict[int, float]:
    if cv == target:
        return buckets
    out: dict[int, float] = {}
    for idx, c in buckets.items():
        upper = cv[idx] if idx < len(cv) else math.inf
        t = bisect_left(target, upper) if upper != math.inf else len(target)
        out[t] = out.get(t, 0.0) + c
    return out


def combine(a: Histogram, b: Histogram, sign: float = 1.0) -> tuple[Histogram, bool]:
    """a + sign * b at the lower schema and the wider zero bucket; the flag says whether
    mismatched custom bounds had to be reconciled. Raises HistogramError for exponential with
    custom buckets."""
    if a.uses_custom_buckets != b.uses_custom_buckets:
        raise HistogramError("vector contains a mix of histograms with exponential and custom buckets schemas")
    apos, aneg, bpos, bneg = a.positive_map(), a.negative_map(), b.positive_map(), b.negative_map()
    reconciled = False
    if a.uses_custom_buckets:
        cv, reconciled = _custom_reconciled(a.custom_values, b.custom_values)
        apos = _to_bounds(apos, a.custom_values, cv)
        bpos = _to_bounds(bpos, b.custom_values, cv)
        schema = CUSTOM_BUCKETS_SCHEMA
        zc, zt = a.zero_count + sign * b.zero_count, 0.0
    else:
        cv = ()
        schema = min(a.schema, b.schema)
        apos, aneg = _reduce(apos, a.schema, schema), _reduce(aneg, a.schema, schema)
        bpos, bneg = _reduce(bpos, b.schema, schema), _reduce(bneg, b.schema, schema)
        ar = Histogram(schema, a.zero_threshold, a.zero_count)
        br = Histogram(schema, b.zero_threshold, b.zero_count)
        threshold = max(a.zero_threshold, b.zero_threshold)
        while True:  # a populated bucket straddling the threshold widens it (for both)
            az, at, apos2, aneg2 = _zero_widened(ar, apos, aneg, threshold)
            bz, bt, bpos2, bneg2 = _zero_widened(br, bpos, bneg, at)
            if bt == at:
                break
            threshold = bt
        apos, aneg, bpos, bneg = apos2, aneg2, bpos2, bneg2
        zt = max(at, bt)
        zc = az + sign * bz
    pos = dict(apos)
    for idx, c in bpos.items():
        pos[idx] = pos.get(idx, 0.0) + sign * c
    neg = dict(aneg)
    for idx, c in bneg.items():
        neg[idx] = neg.get(idx, 0.0) + sign * c
    ps, pc = _spans_of(pos, keep_empty=True)
    ns, nc = _spans_of(neg, keep_empty=True)
    out = Histogram(schema, zt, zc, a.count + sign * b.count, a.sum + sign * b.sum, ps, pc, ns, nc, cv, a.reset_hint)
    return out, reconciled


def detect_reset(curr: Histogram, prev: Histogram) -> bool:
    """Whether `curr` follows a counter reset after `prev` (Prometheus's DetectReset)."""
    if curr.reset_hint == RESET_YES:
        return True
    if curr.reset_hint == RESET_NO:
        return False
    if curr.count < prev.count:
        return True
    if curr.uses_custom_buckets != prev.uses_custom_buckets:
        return True
    if curr.uses_custom_buckets and curr.custom_values != prev.custom_values:
        cv, _ = _custom_reconciled(curr.custom_values, prev.custom_values)
        cp = _to_bounds(curr.positive_map(), curr.custom_values, cv)
        pp = _to_bounds(prev.positive_map(), prev.custom_values, cv)
        return any(cp.get(i, 0.0) < c for i, c in pp.items())
    if curr.schema > prev.schema:
        return True
    if curr.zero_threshold < prev.zero_threshold:
        return True
    s = curr.schema
    ppos = _reduce(prev.positive_map(), prev.schema, s) if not curr.uses_custom_buckets else prev.positive_map()
    pneg = _reduce(prev.negative_map(), prev.schema, s) if not curr.uses_custom_buckets else prev.negative_map()
    reduced = Histogram(s, prev.zero_threshold, prev.zero_count, custom_values=prev.custom_values)
    pz, threshold, ppos, pneg = _zero_widened(reduced, ppos, pneg, curr.zero_threshold)
    if threshold != curr.zero_threshold:
        return True
    if curr.zero_count < pz:
        return True
    for cmap, pmap in ((curr.positive_map(), ppos), (curr.negative_map(), pneg)):
        for idx, c in pmap.items():
            if c != 0 and cmap.get(idx, 0.0) < c:
                return True
    return False


# -- estimates ---------------------------------------------------------------------------------


QUANTILE_NAN_RESULT = "input to histogram_quantile has NaN observations, result is NaN"
QUANTILE_NAN_SKEW = "input to histogram_quantile has NaN observations, result is skewed higher"
FRACTION_NANS = "input to histogram_fraction has NaN observations, which are excluded from all fractions"


def quantile(q: float, h: Histogram, notes: list[str] | None = None) -> float:
    """Prometheus's HistogramQuantile (native histograms). `notes` receives the annotations
    Prometheus gives (NaN observations)."""
    if q < 0:
        return -math.inf
    if q > 1:
        return math.inf
    if h.count == 0 or q != q:
        return math.nan
    forward = h.sum != h.sum or q < 0.5
    it = h.buckets() if forward else h.reverse_buckets()
    rank = q * h.count if forward else (1 - q) * h.count
    count = 0.0
    bucket: Bucket | None = None
    for bucket in it:
        if bucket.count == 0:
            continue
        count += bucket.count
        if count >= rank:
            break
    if bucket is None:
        return math.nan
    lower, upper = bucket.lower, bucket.upper
    if not h.uses_custom_buckets and lower < 0 and upper > 0:
        if not h.negative and h.positive:
            lower = 0.0
        elif not h.positive and h.negative:
            upper = 0.0
    elif h.uses_custom_buckets:
        if lower == -math.inf:
            if upper <= 0:
                return upper
            lower = 0.0
        elif upper == math.inf:
            return lower
    count = min(count, h.count)
    if count < rank:
        if h.sum != h.sum:
            if notes is not None:
                notes.append(QUANTILE_NAN_RESULT)
            return math.nan
        return upper
    if h.sum != h.sum and notes is not None and sum(b.count for b in h.buckets()) < h.count:
        notes.append(QUANTILE_NAN_SKEW)
    if forward:
        rank -= count - bucket.count
    else:
        rank = count - rank
    fraction = rank / bucket.count
    if h.uses_custom_buckets or (lower <= 0 and upper >= 0):
        return lower + (upper - lower) * fraction
    log_lower = math.log2(abs(lower))
    log_upper = math.log2(abs(upper))
    if lower > 0:
        return 2.0 ** (log_lower + (log_upper - log_lower) * fraction)
    return -(2.0 ** (log_upper + (log_lower - log_upper) * (1 - fraction)))


def _fraction_below(b: Bucket, lower: float, upper: float, v: float, linear: bool) -> float:
    if linear:
        return (v - lower) / (upper - lower)
    log_lower = math.log2(abs(lower))
    log_upper = math.log2(abs(upper))
    log_v = math.log2(abs(v))
    if v > 0:
        return (log_v - log_lower) / (log_upper - log_lower)
    return 1 - ((log_v - log_upper) / (log_lower - log_upper))


def fraction(lo: float, hi: float, h: Histogram, notes: list[str] | None = None) -> float:
    """Prometheus's HistogramFraction: the estimated share of observations in [lo, hi]."""
    if h.count == 0 or lo != lo or hi != hi:
        return math.nan
    if lo >= hi:
        return 0.0
    rank = 0.0
    lower_rank = upper_rank = 0.0
    lower_set = upper_set = False
    custom = h.uses_custom_buckets
    for b in h.buckets():
        bl, bu = b.lower, b.upper
        zero_bucket = False
        if bl <= 0 and bu >= 0:
            zero_bucket = True
            if not h.negative and h.positive:
                bl = 0.0
            elif not h.positive and h.negative:
                bu = 0.0

        def interp(
            v: float, bl: float = bl, bu: float = bu, b: Bucket = b, zero: bool = zero_bucket, rank: float = rank
        ) -> float:
            if custom or zero:
                if bl == -math.inf:
                    return b.count
                return rank + b.count * _fraction_below(b, bl, bu, v, True)
            return rank + b.count * _fraction_below(b, bl, bu, v, False)

        if not lower_set and bl >= lo:
            lower_rank, lower_set = rank, True
        if not upper_set and bl >= hi:
            upper_rank, upper_set = rank, True
        if lower_set and upper_set:
            break
        if not lower_set and bl < lo < bu:
            lower_rank, lower_set = interp(lo), True
        if not upper_set and bl < hi < bu:
            upper_rank, upper_set = interp(hi), True
        if lower_set and upper_set:
            break
        rank += b.count
    count = h.count
    if h.sum != h.sum:
        count = sum(b.count for b in h.buckets())
        if count < h.count and notes is not None:
            notes.append(FRACTION_NANS)
    if not lower_set or lower_rank > count:
        lower_rank = count
    if not upper_set or upper_rank > count:
        upper_rank = count
    return (upper_rank - lower_rank) / h.count


def variance(h: Histogram) -> float:
    """Prometheus's histogram_stdvar estimate (bucket midpoints: geometric in exponential
    buckets, arithmetic in custom ones, 0 in the zero bucket)."""
    mean = h.sum / h.count if h.count else math.nan
    total = 0.0
    comp = 0.0
    for b in h.buckets():
        if b.count == 0:
            continue
        if h.uses_custom_buckets:
            val = (b.upper + b.lower) / 2.0
        elif b.lower <= 0 and b.upper >= 0:
            val = 0.0
        else:
            val = math.sqrt(b.upper * b.lower)
            if b.upper < 0:
                val = -val
        delta = val - mean
        term = b.count * delta * delta
        # Kahan-Babuska (Neumaier) summation, as Prometheus's kahansum.Inc
        t = total + term
        if abs(total) >= abs(term):
            comp += (total - t) + term
        else:
            comp += (term - t) + total
        total = t
    total += comp
    return total / h.count if h.count else math.nan


@dataclass(frozen=True, slots=True)
class Exemplar:
    """A sampled observation with its trace labels (trace_id, span_id...)."""

    labels: tuple[tuple[str, str], ...]
    value: float
    ts_ms: int
