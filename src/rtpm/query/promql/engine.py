"""The PromQL engine: `Engine.instant()` and `Engine.range()` over a storage `Querier`.

A query is evaluated in two phases:

1. plan + load (async): walk the tree, work out which time range every selector needs (offsets,
   `@`, ranges, subqueries and the lookback delta included), and load those series from storage,
   counting series and samples against the limits;
2. evaluate (in a worker thread): every node is evaluated for all of its steps at once over numpy
   arrays (see `values.py`), checking the deadline between nodes.

Semantics follow Prometheus 3: lookback and range windows are left-open, right-closed `(t-Δ, t]`,
stale markers end a series, `rate()` extrapolates as Prometheus does.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

import numpy as np

from rtpm.errors import QueryError, QueryParseError, QueryTimeout, TooManySamples
from rtpm.model.labels import is_valid_label_name
from rtpm.model.samples import Series
from rtpm.query.promql import aggregations, binops, rollup_hint
from rtpm.query.promql import ast as a
from rtpm.query.promql import histograms as histo
from rtpm.query.promql.calls import call
from rtpm.query.promql.info import enrich
from rtpm.query.promql.selectors import Flat, instant, windows
from rtpm.query.promql.values import F64, I64, RangeVec, Scalar, String, Value, Vector, drop_name
from rtpm.settings import Settings
from rtpm.storage.base import Storage
from rtpm.storage.histograms import HistogramSeries

DEFAULT_LOOKBACK_MS = 5 * 60 * 1000


@dataclass(frozen=True, slots=True)
class EngineOptions:
    lookback_ms: int = DEFAULT_LOOKBACK_MS
    timeout_s: float = 120.0
    max_samples: int = 50_000_000
    max_series: int = 10_000
    subquery_step_ms: int = 60_000  # Prometheus' default evaluation interval

    @classmethod
    def from_settings(cls, settings: Settings) -> EngineOptions:
        q = settings.query
        return cls(
            lookback_ms=round(q.lookback_delta_seconds * 1000),
            timeout_s=q.timeout_seconds,
            max_samples=settings.limits.max_query_samples,
            max_series=settings.limits.max_query_series,
            subquery_step_ms=round(q.subquery_step_seconds * 1000),
        )


@dataclass(slots=True)
class Result:
    """`value` is the evaluated expression; `steps` the evaluation times (ms); `type` one of
    scalar | vector | matrix | string (the Prometheus resultType for an instant query)."""

    type: str
    value: Value
    steps: I64
    samples_loaded: int = 0
    load_seconds: float = 0.0
    eval_seconds: float = 0.0
    warnings: list[str] = field(default_factory=list)  # PromQL annotations (mixed histograms and floats...)
    rollup_rows: int = 0  # rollup rows read in place of samples (query/promql/rollup_hint.py), in samples_loaded


@dataclass(slots=True)
class _Query:
    start_ms: int
    end_ms: int
    lookback_ms: int
    deadline: float
    subquery_step_ms: int
    step_ms: int = 0  # the query's step; 0 for an instant query
    samples_until_ms: int | None = None  # no sample after this is read (None: as far as the selectors reach)
    hints: dict[int, rollup_hint.Hint] = field(default_factory=dict)  # by id() of the call, read hints
    data: dict[int, Flat] = field(default_factory=dict)
    stale_free: dict[int, Flat] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)

    def check(self) -> None:
        if time.monotonic() > self.deadline:
            raise QueryTimeout("query timed out in expression evaluation")

    def at_ms(self, at: a.At) -> int:
        if at.kind == "start":
            return self.start_ms
        if at.kind == "end":
            return self.end_ms
        return at.ms


class Engine:
    def __init__(self, storage: Storage, options: EngineOptions | None = None) -> None:
        self.storage = storage
        self.options = options or EngineOptions()

    async def instant(
        self, tenant: str, query: str, time_ms: int, *, lookback_ms: int | None = None, timeout_s: float | None = None
    ) -> Result:
        node = a.parse(query)
        return await self._run(tenant, node, time_ms, time_ms, 0, lookback_ms, timeout_s, is_range=False)

    async def range(
        self,
        tenant: str,
        query: str,
        start_ms: int,
        end_ms: int,
        step_ms: int,
        *,
        lookback_ms: int | None = None,
        timeout_s: float | None = None,
        samples_until_ms: int | None = None,
    ) -> Result:
        """`samples_until_ms`: read no sample after this time (the seed's buckets end at the query's
        end_time, `query/seed_promql.py`); None reads as far as the selectors reach, as Prometheus."""
        node = a.parse(query, step_ms=step_ms, range_ms=end_ms - start_ms)
        if node.type not in ("scalar", "vector"):
            raise QueryParseError(
                f'invalid parameter "query": invalid expression type "{_type_name(node.type)}" for range query, '
                "must be Scalar or instant Vector"
            )
        return await self._run(
            tenant, node, start_ms, end_ms, step_ms, lookback_ms, timeout_s, is_range=True, until_ms=samples_until_ms
        )

    async def _run(
        self,
        tenant: str,
        node: a.Node,
        start_ms: int,
        end_ms: int,
        step_ms: int,
        lookback_ms: int | None,
        timeout_s: float | None,
        *,
        is_range: bool,
        until_ms: int | None = None,
    ) -> Result:
        opts = self.options
        timeout = min(timeout_s, opts.timeout_s) if timeout_s else opts.timeout_s
        q = _Query(
            start_ms,
            end_ms,
            lookback_ms or opts.lookback_ms,
            time.monotonic() + timeout,
            opts.subquery_step_ms,
            step_ms,
            until_ms,
        )
        steps = np.arange(start_ms, end_ms + 1, max(step_ms, 1), dtype=np.int64)
        selectors: list[a.VectorSel] = []
        _plan(node, start_ms, end_ms, q, selectors)
        hints: list[rollup_hint.Hint] = []
        rollup_hint.find(node, start_ms, step_ms, len(steps), hints)
        q.hints = {id(h.call): h for h in hints}
        try:
            async with asyncio.timeout(timeout):
                t0 = time.perf_counter()
                loaded = await self._load(tenant, selectors, q, steps)
                t1 = time.perf_counter()
                value = await asyncio.to_thread(_evaluate, node, steps, q)
                t2 = time.perf_counter()
        except TimeoutError:
            raise QueryTimeout("query timed out in expression evaluation") from None
        rtype = node.type
        rollup_rows = sum(sum(len(r) for _, r in h.read.series) for h in hints if h.read is not None)
        return Result(rtype, value, steps, loaded, t1 - t0, t2 - t1, q.warnings, rollup_rows)

    async def _load(self, tenant: str, selectors: list[a.VectorSel], q: _Query, steps: I64) -> int:
        opts = self.options
        loaded = 0
        series = 0
        hinted = {id(h.sel): h for h in q.hints.values()}
        # each read counts against the limits as if made again, as Prometheus counts per selector
        reads: dict[tuple[object, ...], tuple[list[Series], list[HistogramSeries]]] = {}
        for sel in selectors:
            remaining = opts.max_samples - loaded
            hint = hinted.get(id(sel))
            rollup_series = 0
            if hint is not None:
                rows = await self._load_rollups(tenant, hint, q, steps, remaining)
                if hint.read is not None:
                    loaded += rows
                    remaining -= rows
                    rollup_series = len(hint.read.series)
                    if hint.steps == len(steps):  # every window from rollups: no samples needed
                        series += rollup_series
                        _check_series(series, opts.max_series, sel)
                        q.data[id(sel)] = Flat.of([])
                        continue
            hi = sel.fetch_hi if q.samples_until_ms is None else min(sel.fetch_hi, q.samples_until_ms)
            key = (tuple(sel.matchers), sel.fetch_lo, hi)
            if key in reads:  # the same selector over the same range again (`sum(x) / count(x)`)
                found, hfound = reads[key]
            else:
                querier = self.storage.querier(tenant, sel.fetch_lo, hi)
                try:
                    found = await querier.select(sel.matchers, max_samples=remaining)
                except TooManySamples:
                    raise _too_many_samples(opts.max_samples) from None
                try:
                    hfound = await self.storage.histograms.select(
                        tenant, sel.fetch_lo, hi, sel.matchers, max_samples=remaining
                    )
                except TooManySamples:
                    raise _too_many_samples(opts.max_samples) from None
                reads[key] = (found, hfound)
            # with a hint, mostly the same series come from rollups and from samples: the larger count
            series += max(rollup_series, len(found) + len(hfound))
            _check_series(series, opts.max_series, sel)
            flat = histo.merge_flat(found, hfound)
            loaded += len(flat.ts)
            if loaded > opts.max_samples:
                raise _too_many_samples(opts.max_samples)
            q.data[id(sel)] = flat
        return loaded

    async def _load_rollups(self, tenant: str, hint: rollup_hint.Hint, q: _Query, steps: I64, remaining: int) -> int:
        """Ask the querier for the rollups of the hinted call's windows; on an answer, set
        `hint.read` and `hint.steps` (the first steps whose windows it covers) and narrow the
        selector's sample read to the other steps' windows. Returns the rollup rows read."""
        sel = hint.sel
        ends = steps - sel.offset_ms
        lo = int(ends[0]) + 1 - hint.range_ms
        hi = int(ends[-1]) if q.samples_until_ms is None else min(int(ends[-1]), q.samples_until_ms)
        if hi < lo:
            return 0
        read = await self.storage.querier(tenant, lo, hi).rollups(sel.matchers, hint.resolution_ms)
        if read is None:
            return 0
        covered = int(np.searchsorted(ends + 1, read.complete_until, "right"))  # windows ending before it
        if covered == 0:
            return 0
        last = int(ends[covered - 1])
        try:
            if await self.storage.histograms.select(tenant, lo, last, sel.matchers, max_samples=remaining):
                return 0  # rollups hold float samples only
        except TooManySamples:
            raise _too_many_samples(self.options.max_samples) from None
        rows = sum(len(r) for _, r in read.series)
        if rows > remaining:
            raise _too_many_samples(self.options.max_samples)
        hint.read, hint.steps = read, covered
        if covered < len(steps):
            sel.fetch_lo = int(ends[covered]) - hint.range_ms
        return rows


def _check_series(series: int, limit: int, sel: a.VectorSel) -> None:
    if series > limit:
        raise QueryError(
            f"query selects more than {limit} series (max_query_series) at {sel.text}; narrow the selector"
        )


def _too_many_samples(limit: int) -> TooManySamples:
    return TooManySamples(
        f"query processing would load too many samples into memory in query execution (limit {limit}, "
        "max_query_samples); narrow the time range or the selector"
    )


def _type_name(t: str) -> str:
    return {"matrix": "range vector", "vector": "instant vector"}.get(t, t)


# ---- planning: which time range does every selector need? --------------------------------------


def _plan(node: a.Node, lo: int, hi: int, q: _Query, out: list[a.VectorSel]) -> None:
    """`lo`/`hi`: the earliest and latest evaluation time of `node`."""
    if isinstance(node, a.VectorSel):
        e_lo, e_hi = _eff_span(node.at, node.offset_ms, lo, hi, q)
        _need(node, e_lo - q.lookback_ms, e_hi, out)
    elif isinstance(node, a.MatrixSel):
        e_lo, e_hi = _eff_span(node.sel.at, node.sel.offset_ms, lo, hi, q)
        _need(node.sel, e_lo - node.range_ms, e_hi, out)
    elif isinstance(node, a.Subquery):
        e_lo, e_hi = _eff_span(node.at, node.offset_ms, lo, hi, q)
        step = node.step_ms or q.subquery_step_ms
        inner_lo = _align_up(e_lo - node.range_ms, step)
        _plan(node.expr, inner_lo, max(inner_lo, e_hi), q, out)
    elif isinstance(node, a.Call):
        for arg in node.args:
            _plan(arg, lo, hi, q, out)
    elif isinstance(node, a.Aggregate):
        _plan(node.expr, lo, hi, q, out)
        if node.param is not None:
            _plan(node.param, lo, hi, q, out)
    elif isinstance(node, a.Binary):
        _plan(node.lhs, lo, hi, q, out)
        _plan(node.rhs, lo, hi, q, out)
    elif isinstance(node, a.Negate):
        _plan(node.expr, lo, hi, q, out)
    elif isinstance(node, a.Info):
        _plan(node.expr, lo, hi, q, out)
        _need(node.sel, lo - q.lookback_ms, hi, out)


def _eff_span(at: a.At | None, offset_ms: int, lo: int, hi: int, q: _Query) -> tuple[int, int]:
    if at is not None:
        t = q.at_ms(at)
        return t - offset_ms, t - offset_ms
    return lo - offset_ms, hi - offset_ms


def _align_up(t: int, step: int) -> int:
    """The first multiple of `step` strictly after `t` (Prometheus' subquery start alignment)."""
    return (t // step) * step + step


def _need(sel: a.VectorSel, lo: int, hi: int, out: list[a.VectorSel]) -> None:
    if not sel.fetched:
        sel.fetch_lo, sel.fetch_hi, sel.fetched = lo, hi, True
        out.append(sel)
    else:
        sel.fetch_lo, sel.fetch_hi = min(sel.fetch_lo, lo), max(sel.fetch_hi, hi)


# ---- evaluation --------------------------------------------------------------------------------


def _evaluate(node: a.Node, steps: I64, q: _Query) -> Value:
    with np.errstate(all="ignore"):
        return _eval(node, steps, q)


def _eff(at: a.At | None, offset_ms: int, steps: I64, q: _Query) -> I64:
    if at is not None:
        return np.full(len(steps), q.at_ms(at) - offset_ms, dtype=np.int64)
    return steps - offset_ms


def _eval(node: a.Node, steps: I64, q: _Query) -> Value:
    q.check()
    t = len(steps)
    if isinstance(node, a.NumberLit):
        return Scalar(np.full(t, node.value))
    if isinstance(node, a.StringLit):
        return String(node.value)
    if isinstance(node, a.VectorSel):
        return instant(q.data[id(node)], _eff(node.at, node.offset_ms, steps, q), q.lookback_ms)
    if isinstance(node, a.MatrixSel):
        sel = node.sel
        flat = q.stale_free.get(id(sel))
        if flat is None:
            flat = q.stale_free[id(sel)] = q.data[id(sel)].without_stale()
        return windows(flat, _eff(sel.at, sel.offset_ms, steps, q), node.range_ms, steps)
    if isinstance(node, a.Subquery):
        return _subquery(node, steps, q)
    if isinstance(node, a.Info):
        base = _eval(node.expr, steps, q)
        assert isinstance(base, Vector)
        infos = instant(q.data[id(node.sel)], steps, q.lookback_ms)
        return enrich(base, infos, node.names, node.data)
    if isinstance(node, a.Negate):
        v = _eval(node.expr, steps, q)
        if isinstance(v, Vector) and v.hist is not None:
            return histo.negate(v)
        if isinstance(v, Scalar):
            return Scalar(-v.values)
        assert isinstance(v, Vector)
        # dropping the name can make two series one: merged when they never meet, an error when they do
        return dedupe(Vector([drop_name(lb) for lb in v.labels], -v.values, v.present))
    if isinstance(node, a.Binary):
        return _binary(node, steps, q)
    if isinstance(node, a.Aggregate):
        return _aggregate(node, steps, q)
    if isinstance(node, a.Call):
        hint = q.hints.get(id(node))
        if hint is not None and hint.read is not None:
            return dedupe(_from_rollups(node, hint, steps, q))
        out = call(node, steps, q, _eval)
        return dedupe(out) if isinstance(out, Vector) else out
    raise QueryError(f"cannot evaluate {type(node).__name__}")


def _from_rollups(node: a.Call, hint: rollup_hint.Hint, steps: I64, q: _Query) -> Vector:
    """A hinted call: its first `hint.steps` steps from rollups, the others from samples."""
    covered = hint.steps
    head = rollup_hint.evaluate(hint, steps[:covered] - hint.sel.offset_ms)
    if covered == len(steps):
        return head
    tail = call(node, steps[covered:], q, _eval)
    assert isinstance(tail, Vector)
    t = len(steps)
    values = np.full((len(head) + len(tail), t), np.nan)
    present = np.zeros((len(head) + len(tail), t), dtype=bool)
    values[: len(head), :covered], present[: len(head), :covered] = head.values, head.present
    values[len(head) :, covered:], present[len(head) :, covered:] = tail.values, tail.present
    return Vector([*head.labels, *tail.labels], values, present)


def _subquery(node: a.Subquery, steps: I64, q: _Query) -> RangeVec:
    eff = _eff(node.at, node.offset_ms, steps, q)
    step = node.step_ms or q.subquery_step_ms
    inner_lo = _align_up(int(eff.min()) - node.range_ms, step)
    inner_steps = np.arange(inner_lo, int(eff.max()) + 1, step, dtype=np.int64)
    inner = _eval(node.expr, inner_steps, q) if len(inner_steps) else Vector.empty(0)
    if isinstance(inner, Scalar):
        inner = Vector([()], inner.values[None, :], np.ones((1, len(inner_steps)), dtype=bool))
    assert isinstance(inner, Vector)
    inner = dedupe(inner)
    if inner.hist is not None:
        return windows(histo.flat_of_vector(inner, inner_steps), eff, node.range_ms, steps)
    series_ts = [inner_steps[inner.present[i]] for i in range(len(inner))]
    series_v = [inner.values[i][inner.present[i]] for i in range(len(inner))]
    keep = [i for i in range(len(inner)) if len(series_ts[i])]
    offsets = np.zeros(len(keep) + 1, np.int64)
    if keep:
        np.cumsum([len(series_ts[i]) for i in keep], out=offsets[1:])
        flat = Flat(
            [inner.labels[i] for i in keep],
            np.concatenate([series_ts[i] for i in keep]),
            np.concatenate([series_v[i] for i in keep]),
            offsets,
        )
    else:
        flat = Flat([], np.empty(0, np.int64), np.empty(0), offsets)
    return windows(flat, eff, node.range_ms, steps)


def _as_scalar(v: Value, t: int) -> F64:
    if isinstance(v, Scalar):
        return v.values
    raise QueryError("expected a scalar")


def _binary(node: a.Binary, steps: I64, q: _Query) -> Value:
    lhs = _eval(node.lhs, steps, q)
    rhs = _eval(node.rhs, steps, q)
    op = node.op
    if op in a.SET_OPS and isinstance(lhs, Vector) and isinstance(rhs, Vector):
        out = binops.set_op(op, lhs, rhs, node.on, node.match_labels)
        out.hist = histo.set_op_hist(op, lhs, rhs)
        return dedupe(out)
    raw_lhs, raw_rhs = lhs, rhs
    lhs, rhs = histo.floats_only(lhs), histo.floats_only(rhs)
    if isinstance(lhs, Scalar) and isinstance(rhs, Scalar):
        return binops.scalar_scalar(op, lhs, rhs, node.return_bool)
    # floats_only keeps the kind of its argument: raw_lhs is a Vector exactly when lhs is one
    if isinstance(lhs, Vector) and isinstance(raw_lhs, Vector) and isinstance(rhs, Scalar):
        out = binops.vector_scalar(op, lhs, rhs, False, node.return_bool)
        return dedupe(histo.scalar_binop(out, op, raw_lhs, rhs, False, q))
    if isinstance(lhs, Scalar) and isinstance(rhs, Vector) and isinstance(raw_rhs, Vector):
        out = binops.vector_scalar(op, rhs, lhs, True, node.return_bool)
        return dedupe(histo.scalar_binop(out, op, raw_rhs, lhs, True, q))
    assert isinstance(lhs, Vector) and isinstance(rhs, Vector)
    assert isinstance(raw_lhs, Vector) and isinstance(raw_rhs, Vector)
    if op in a.SET_OPS:
        return dedupe(binops.set_op(op, lhs, rhs, node.on, node.match_labels))
    done = histo.vector_binop(node, raw_lhs, raw_rhs, q)
    if done is not None:
        return dedupe(done)
    return dedupe(
        binops.vector_vector(
            op,
            lhs,
            rhs,
            card=node.card,
            on=node.on,
            names=node.match_labels,
            include=node.include,
            return_bool=node.return_bool,
            fill_left=node.fill_left,
            fill_right=node.fill_right,
        )
    )


def _aggregate(node: a.Aggregate, steps: I64, q: _Query) -> Vector:
    vec = _eval(node.expr, steps, q)
    assert isinstance(vec, Vector)
    if vec.hist is not None:
        done = histo.aggregate(node, vec, q)
        if done is not None:
            return dedupe(done)
        vec = histo.floats_only(vec)
    param: F64 | str | None = None
    if node.param is not None:
        p = _eval(node.param, steps, q)
        if isinstance(p, String):
            param = p.value
            if node.op == "count_values" and not _valid_label(param):
                raise QueryError(f"invalid label name {param!r}")
        else:
            param = _as_scalar(p, len(steps))
    return dedupe(aggregations.aggregate(node.op, vec, node.grouping, node.without, param, len(steps)))


def _valid_label(name: str) -> bool:
    return is_valid_label_name(name)


def dedupe(vec: Vector) -> Vector:
    """Merge rows with identical labels (they must not overlap in time); drop rows never present."""
    if not len(vec):
        return vec
    index: dict[tuple[tuple[str, str], ...], list[int]] = {}
    for i, lb in enumerate(vec.labels):
        index.setdefault(lb, []).append(i)
    if len(index) == len(vec.labels):
        return vec
    labels, vals, pres, hists = [], [], [], []
    for lb, rows in index.items():
        if len(rows) == 1:
            r = rows[0]
            labels.append(lb)
            vals.append(vec.values[r])
            pres.append(vec.present[r])
            if vec.hist is not None:
                hists.append(vec.hist[r])
            continue
        p = vec.present[rows]
        if (p.sum(axis=0) > 1).any():
            live = [r for r in rows if vec.present[r].any()]
            if len(live) > 1 and (vec.present[live].sum(axis=0) > 1).any():
                raise QueryError("vector cannot contain metrics with the same labelset")
        merged_v = np.full(vec.values.shape[1], np.nan)
        merged_p = np.zeros(vec.values.shape[1], dtype=bool)
        merged_h = np.full(vec.values.shape[1], None, dtype=object) if vec.hist is not None else None
        for r in rows:
            m = vec.present[r]
            merged_v[m] = vec.values[r][m]
            merged_p |= m
            if merged_h is not None and vec.hist is not None:
                merged_h[m] = vec.hist[r][m]
        labels.append(lb)
        vals.append(merged_v)
        pres.append(merged_p)
        if merged_h is not None:
            hists.append(merged_h)
    hist = np.vstack(hists) if vec.hist is not None else None
    return Vector(labels, np.vstack(vals), np.vstack(pres), order=None, hist=hist)
