"""Parse PromQL with `promql-parser` and convert its AST into the evaluator's own small node tree.

The conversion happens once per query, so the evaluator can hang per-node state (the time range to
load, the loaded series) on nodes, and so nothing else depends on the parser's classes.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import promql_parser as pp

from rtpm.errors import QueryParseError
from rtpm.model.labels import METRIC_NAME, Matcher, MatchType
from rtpm.query.promql import durations
from rtpm.query.promql.info import info_selection

# Functions Prometheus 2 had that the parser (which follows Prometheus 3) no longer knows.
try:
    pp.register_extra_functions(
        [
            pp.Function(
                "holt_winters",
                [pp.ValueType.Matrix, pp.ValueType.Scalar, pp.ValueType.Scalar],
                pp.ValueType.Vector,
            )
        ]
    )
except ValueError:  # already registered in this process
    pass

_MATCH_OPS = [
    (pp.MatchOp.Equal, MatchType.EQUAL),
    (pp.MatchOp.NotEqual, MatchType.NOT_EQUAL),
    (pp.MatchOp.Re, MatchType.REGEX),
    (pp.MatchOp.NotRe, MatchType.NOT_REGEX),
]


def _lookup(table: list[tuple[Any, Any]], key: Any) -> Any:
    for k, v in table:
        if k == key:
            return v
    raise KeyError(key)


def _ms(d: timedelta | None) -> int:
    if d is None:
        return 0
    return (d.days * 86400 + d.seconds) * 1000 + d.microseconds // 1000


@dataclass(slots=True)
class At:
    """`@ <time>`, `@ start()` or `@ end()`."""

    kind: str  # "at" | "start" | "end"
    ms: int = 0


@dataclass(eq=False)
class Node:
    type: str = field(default="vector", init=False)  # "scalar" | "vector" | "matrix" | "string"


@dataclass(eq=False)
class NumberLit(Node):
    value: float = 0.0

    def __post_init__(self) -> None:
        self.type = "scalar"


@dataclass(eq=False)
class StringLit(Node):
    value: str = ""

    def __post_init__(self) -> None:
        self.type = "string"


@dataclass(eq=False)
class VectorSel(Node):
    matchers: list[Matcher] = field(default_factory=list)
    offset_ms: int = 0
    at: At | None = None
    text: str = ""
    # filled in by the engine before evaluation
    fetch_lo: int = 0
    fetch_hi: int = 0
    fetched: bool = False


@dataclass(eq=False)
class MatrixSel(Node):
    sel: VectorSel = field(default_factory=VectorSel)
    range_ms: int = 0

    def __post_init__(self) -> None:
        self.type = "matrix"


@dataclass(eq=False)
class Subquery(Node):
    expr: Node = field(default_factory=Node)
    range_ms: int = 0
    step_ms: int = 0  # 0: the engine's default evaluation interval
    offset_ms: int = 0
    at: At | None = None

    def __post_init__(self) -> None:
        self.type = "matrix"


@dataclass(eq=False)
class Call(Node):
    name: str = ""
    args: list[Node] = field(default_factory=list)


@dataclass(eq=False)
class Aggregate(Node):
    op: str = ""
    expr: Node = field(default_factory=Node)
    param: Node | None = None
    grouping: list[str] = field(default_factory=list)
    without: bool = False
    has_grouping: bool = False


@dataclass(eq=False)
class Binary(Node):
    op: str = ""
    lhs: Node = field(default_factory=Node)
    rhs: Node = field(default_factory=Node)
    card: str = "one-to-one"  # one-to-one | many-to-one | one-to-many | many-to-many
    on: bool = False
    match_labels: list[str] = field(default_factory=list)
    has_matching: bool = False
    include: list[str] = field(default_factory=list)
    return_bool: bool = False
    fill_left: float | None = None  # fill(v) / fill_left(v): the value of a missing left-hand side
    fill_right: float | None = None


@dataclass(eq=False)
class Negate(Node):
    expr: Node = field(default_factory=Node)


@dataclass(eq=False)
class Info(Node):
    """`info(expr, {selector})`: `sel` selects the info series; see query.promql.info."""

    expr: Node = field(default_factory=Node)
    sel: VectorSel = field(default_factory=VectorSel)
    names: list[Matcher] = field(default_factory=list)
    data: list[Matcher] = field(default_factory=list)


_VALUE_TYPES = [
    (pp.ValueType.Vector, "vector"),
    (pp.ValueType.Scalar, "scalar"),
    (pp.ValueType.Matrix, "matrix"),
    (pp.ValueType.String, "string"),
]
_CARD = [
    (pp.VectorMatchCardinality.OneToOne, "one-to-one"),
    (pp.VectorMatchCardinality.ManyToOne, "many-to-one"),
    (pp.VectorMatchCardinality.OneToMany, "one-to-many"),
    (pp.VectorMatchCardinality.ManyToMany, "many-to-many"),
]
SET_OPS = frozenset({"and", "or", "unless"})


def parse(query: str, *, step_ms: int = 0, range_ms: int = 0) -> Node:
    """Parse `query`; a syntax or type error raises QueryParseError saying what and where.
    `step_ms`/`range_ms` are the query's, for `step()` and `range()` in duration expressions."""
    if not query.strip():
        raise QueryParseError('invalid parameter "query": 1:1: parse error: no expression found in input')
    query = durations.fold(query, step_ms, range_ms)
    try:
        expr = pp.parse(query)
    except ValueError as exc:
        raise QueryParseError(f'invalid parameter "query": {_where(query, str(exc))}parse error: {exc}') from None
    return convert(expr)


def _where(query: str, message: str) -> str:
    """A best-effort `line:col: ` for a parser message that names a token of the query."""
    m = re.search(r"(?:name|token|function) '([^']+)'", message) or re.search(r"'([^']+)'", message)
    if m:
        idx = query.find(m.group(1))
        if idx >= 0:
            line = query.count("\n", 0, idx) + 1
            col = idx - (query.rfind("\n", 0, idx) + 1) + 1
            return f"{line}:{col}: "
    return ""


def _at(a: Any) -> At | None:
    if a is None:
        return None
    if a.type == pp.AtModifierType.Start:
        return At("start")
    if a.type == pp.AtModifierType.End:
        return At("end")
    dt = a.at
    ms = round(dt.timestamp() * 1000)
    return At("at", ms)


def _matchers(vs: Any) -> list[Matcher]:
    """A parsed selector's name and label matchers as RTPM's Matchers."""
    if vs.matchers.or_matchers:
        raise QueryParseError("invalid parameter \"query\": 'or' inside label matchers is not PromQL")
    matchers: list[Matcher] = []
    if vs.name:
        matchers.append(Matcher(METRIC_NAME, MatchType.EQUAL, vs.name))
    for m in vs.matchers.matchers:
        try:
            matchers.append(Matcher(m.name, _lookup(_MATCH_OPS, m.op), m.value))
        except ValueError as exc:
            raise QueryParseError(f'invalid parameter "query": {exc}') from None
    return matchers


def _selector(vs: Any) -> VectorSel:
    matchers = _matchers(vs)
    if all(m.matches_empty() for m in matchers):
        raise QueryParseError(
            f'invalid parameter "query": parse error: vector selector must contain at least one non-empty matcher: {vs}'
        )
    return VectorSel(matchers=matchers, offset_ms=_ms(vs.offset), at=_at(vs.at), text=str(vs))


def _info(e: Any) -> Info:
    if not 1 <= len(e.args) <= 2:
        raise QueryParseError('invalid parameter "query": parse error: info() takes one or two arguments')
    given: list[Matcher] = []
    if len(e.args) == 2:
        sel = e.args[1]
        if not isinstance(sel, pp.VectorSelector) or sel.offset is not None or sel.at is not None:
            raise QueryParseError(
                'invalid parameter "query": parse error: the second argument of info() must be label matchers {...}'
            )
        given = _matchers(sel)  # all may match "" here: they filter, the info metric is chosen by name
    select, names, data = info_selection(given)
    expr = convert(e.args[0])
    if expr.type != "vector":
        raise QueryParseError('invalid parameter "query": parse error: info() needs an instant vector')
    return Info(expr=expr, sel=VectorSel(matchers=select, text="info series"), names=names, data=data)


def convert(e: Any) -> Node:
    if isinstance(e, pp.ParenExpr):
        return convert(e.expr)
    if isinstance(e, pp.NumberLiteral):
        return NumberLit(value=float(e.val))
    if isinstance(e, pp.StringLiteral):
        return StringLit(value=e.val)
    if isinstance(e, pp.VectorSelector):
        return _selector(e)
    if isinstance(e, pp.MatrixSelector):
        return MatrixSel(sel=_selector(e.vector_selector), range_ms=_ms(e.range))
    if isinstance(e, pp.SubqueryExpr):
        return Subquery(
            expr=convert(e.expr), range_ms=_ms(e.range), step_ms=_ms(e.step), offset_ms=_ms(e.offset), at=_at(e.at)
        )
    if isinstance(e, pp.UnaryExpr):
        inner = convert(e.expr)
        n = Negate(expr=inner)
        n.type = inner.type
        return n
    if isinstance(e, pp.Call) and e.func.name == "info":
        return _info(e)
    if isinstance(e, pp.Call):
        c = Call(name=e.func.name, args=[convert(a) for a in e.args])
        c.type = _lookup(_VALUE_TYPES, e.func.return_type)
        return c
    if isinstance(e, pp.AggregateExpr):
        mod = e.modifier
        return Aggregate(
            op=str(e.op),
            expr=convert(e.expr),
            param=convert(e.param) if e.param is not None else None,
            grouping=list(mod.labels) if mod is not None else [],
            without=mod is not None and mod.type == pp.AggModifierType.Without,
            has_grouping=mod is not None,
        )
    if isinstance(e, pp.BinaryExpr):
        lhs, rhs = convert(e.lhs), convert(e.rhs)
        b = Binary(op=str(e.op).lower(), lhs=lhs, rhs=rhs)
        bmod = e.modifier
        if bmod is not None:
            b.card = _lookup(_CARD, bmod.card)
            b.return_bool = bool(bmod.return_bool)
            if bmod.matching is not None:
                b.has_matching = True
                b.on = bmod.matching.type == pp.LabelModifierType.Include
                b.match_labels = list(bmod.matching.labels)
            b.include = list(bmod.group_labels or [])
            fill = bmod.fill_values
            if fill is not None:
                b.fill_left, b.fill_right = fill.lhs, fill.rhs
        if b.op in SET_OPS:
            if b.fill_left is not None or b.fill_right is not None:
                raise QueryParseError(
                    f'invalid parameter "query": parse error: fill modifiers are not allowed with set operator "{b.op}"'
                )
            b.card = "many-to-many"
        b.type = "vector" if "vector" in (lhs.type, rhs.type) else "scalar"
        return b
    raise QueryParseError(f'invalid parameter "query": unsupported expression {type(e).__name__}')


def pretty(query: str) -> str:
    """The query formatted by the parser. The parser prints a subquery without a step wrongly
    (`x[5m:]` as `x[5m]`), so such queries come back as given, only trimmed."""
    expr = pp.parse(query)
    stepless = False

    def visit(e: Any) -> bool:
        nonlocal stepless
        if isinstance(e, pp.SubqueryExpr) and e.step is None:
            stepless = True
        return True

    pp.walk(expr, visit)
    return query.strip() if stepless else expr.prettify()
