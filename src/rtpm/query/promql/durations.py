"""Duration expressions of Prometheus 3: arithmetic where PromQL takes a duration.

    rate(x[5m + 30s])     x[1h / 2 : step() * 2]     x offset (100 + 2)     x offset -step()

Range selectors, subquery ranges and steps, and `offset` accept an expression of numbers (seconds),
durations, `+ - * / % ^`, parentheses, `step()`, `range()` (the query's step and range, 0 for an
instant query), `min_of(a, b)` and `max_of(a, b)`. The parser RTPM uses (promql-parser) knows only
literal durations, so these expressions are folded to literal milliseconds in the query text before
it is parsed, once the query's step and range are known.

Without parentheses, `offset` takes one atom with its sign (a number, a duration or a function
call): `x offset 100 + 2` is `(x offset 100s) + 2`, as in Prometheus.
"""

from __future__ import annotations

import math
import re

from rtpm.errors import QueryParseError
from rtpm.model.time import DURATION_UNITS_MS

_DURATION = re.compile(r"(?:\d+(?:ms|s|m|h|d|w|y))+")
_DURATION_PART = re.compile(r"(\d+)(ms|s|m|h|d|w|y)")
_NUMBER = re.compile(r"(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?")
_PLAIN = re.compile(r"\s*(?:\d+(?:ms|s|m|h|d|w|y))+\s*")
_IDENT = re.compile(r"[A-Za-z_]\w*")
_OFFSET = re.compile(r"\boffset\b", re.IGNORECASE)
_FUNCS = ("step", "range", "min_of", "max_of")


class _Expr:
    """Recursive descent over one duration expression; values in seconds."""

    def __init__(self, text: str, step_s: float, range_s: float) -> None:
        self.s = text
        self.i = 0
        self.step_s = step_s
        self.range_s = range_s

    def fail(self, what: str) -> QueryParseError:
        return QueryParseError(f'invalid parameter "query": parse error: {what} in duration expression "{self.s}"')

    def ws(self) -> None:
        while self.i < len(self.s) and self.s[self.i].isspace():
            self.i += 1

    def peek(self) -> str:
        self.ws()
        return self.s[self.i] if self.i < len(self.s) else ""

    def expr(self) -> float:
        v = self.term()
        while self.peek() in ("+", "-") and self.peek():
            op = self.s[self.i]
            self.i += 1
            rhs = self.term()
            v = v + rhs if op == "+" else v - rhs
        return v

    def term(self) -> float:
        v = self.unary()
        while self.peek() in ("*", "/", "%") and self.peek():
            op = self.s[self.i]
            self.i += 1
            rhs = self.unary()
            if op == "*":
                v *= rhs
            elif rhs == 0:
                raise self.fail("division by zero")
            elif op == "/":
                v /= rhs
            else:
                v = math.fmod(v, rhs)
        return v

    def unary(self) -> float:
        c = self.peek()
        if c in ("-", "+") and c:
            self.i += 1
            v = self.unary()
            return -v if c == "-" else v
        return self.power()

    def power(self) -> float:
        base = self.atom()
        if self.peek() == "^":
            self.i += 1
            return float(base ** self.unary())
        return base

    def atom(self) -> float:
        c = self.peek()
        if c == "(":
            self.i += 1
            v = self.expr()
            if self.peek() != ")":
                raise self.fail("missing ')'")
            self.i += 1
            return v
        m = _DURATION.match(self.s, self.i)
        if m:
            self.i = m.end()
            return sum(int(n) * DURATION_UNITS_MS[u] for n, u in _DURATION_PART.findall(m.group(0))) / 1000.0
        m = _NUMBER.match(self.s, self.i)
        if m:
            self.i = m.end()
            return float(m.group(0))
        m = _IDENT.match(self.s, self.i)
        if m and m.group(0).lower() in _FUNCS:
            name = m.group(0).lower()
            self.i = m.end()
            if self.peek() != "(":
                raise self.fail(f"expected '(' after {name}")
            self.i += 1
            args: list[float] = []
            if self.peek() != ")":
                args.append(self.expr())
                while self.peek() == ",":
                    self.i += 1
                    args.append(self.expr())
            if self.peek() != ")":
                raise self.fail(f"missing ')' after the arguments of {name}")
            self.i += 1
            want = 0 if name in ("step", "range") else 2
            if len(args) != want:
                raise self.fail(f"{name}() takes {want} arguments")
            if name == "step":
                return self.step_s
            if name == "range":
                return self.range_s
            pick = min if name == "min_of" else max
            return math.nan if math.isnan(args[0]) or math.isnan(args[1]) else pick(args)
        raise self.fail(f"unexpected {c!r}" if c else "unexpected end")


def _evaluate(text: str, step_ms: int, range_ms: int) -> float:
    e = _Expr(text, step_ms / 1000.0, range_ms / 1000.0)
    v = e.expr()
    if e.peek():
        raise e.fail(f"unexpected {e.peek()!r}")
    return v


def _ms(seconds: float) -> str:
    if not math.isfinite(seconds):
        raise QueryParseError(f'invalid parameter "query": parse error: duration expression gives {seconds}')
    return f"{round(seconds * 1000)}ms"


def _skip_string(q: str, i: int) -> int:
    quote = q[i]
    i += 1
    while i < len(q):
        if q[i] == "\\" and quote != "`":
            i += 2
            continue
        if q[i] == quote:
            return i + 1
        i += 1
    return i


def _balanced(q: str, i: int, open_: str, close: str) -> int:
    """Index just past the `close` that matches the `open_` at q[i]."""
    depth = 0
    while i < len(q):
        c = q[i]
        if c in "\"'`":
            i = _skip_string(q, i)
            continue
        if c == open_:
            depth += 1
        elif c == close:
            depth -= 1
            if depth == 0:
                return i + 1
        i += 1
    raise QueryParseError(f'invalid parameter "query": parse error: unclosed {open_!r}')


def _fold_brackets(body: str, step_ms: int, range_ms: int) -> str:
    parts = body.split(":")
    if len(parts) > 2:
        return body
    out = []
    for part in parts:
        if not part.strip() or _PLAIN.fullmatch(part):
            out.append(part)
        else:
            seconds = _evaluate(part, step_ms, range_ms)
            if len(parts) == 1 or part is parts[0]:
                if seconds <= 0:
                    raise QueryParseError(
                        f'invalid parameter "query": parse error: range duration must be positive, got "{part.strip()}"'
                    )
            out.append(_ms(seconds))
    return ":".join(out)


def _offset_atom_end(q: str, i: int) -> int:
    """End of the signed atom that follows `offset` at q[i]."""
    j = i
    while j < len(q) and q[j].isspace():
        j += 1
    if j < len(q) and q[j] in "+-":
        j += 1
        while j < len(q) and q[j].isspace():
            j += 1
    if j < len(q) and q[j] == "(":
        return _balanced(q, j, "(", ")")
    m = _IDENT.match(q, j)
    if m and m.group(0).lower() in _FUNCS:
        k = m.end()
        while k < len(q) and q[k].isspace():
            k += 1
        if k < len(q) and q[k] == "(":
            return _balanced(q, k, "(", ")")
    m = _DURATION.match(q, j) or _NUMBER.match(q, j)
    return m.end() if m else j


def fold(query: str, step_ms: int = 0, range_ms: int = 0) -> str:
    """`query` with every duration expression replaced by its value in milliseconds."""
    if "[" not in query and not _OFFSET.search(query):
        return query
    out: list[str] = []
    i = 0
    n = len(query)
    while i < n:
        c = query[i]
        if c in "\"'`":
            j = _skip_string(query, i)
            out.append(query[i:j])
            i = j
            continue
        if c == "[":
            j = _balanced(query, i, "[", "]")
            out.append("[" + _fold_brackets(query[i + 1 : j - 1], step_ms, range_ms) + "]")
            i = j
            continue
        m = _OFFSET.match(query, i)
        if m and (i == 0 or not (query[i - 1].isalnum() or query[i - 1] == "_")):
            j = _offset_atom_end(query, m.end())
            atom = query[m.end() : j]
            if (
                atom.strip()
                and not _PLAIN.fullmatch(atom)
                and not re.fullmatch(r"\s*-\s*(?:\d+(?:ms|s|m|h|d|w|y))+\s*", atom)
            ):
                value = _ms(_evaluate(atom, step_ms, range_ms))
                # `offset 0` is no offset; the parser refuses a zero duration
                out.append("" if value in ("0ms", "-0ms") else query[i : m.end()] + " " + value)
            else:
                out.append(query[i:j])
            i = j
            continue
        out.append(c)
        i += 1
    return "".join(out)
