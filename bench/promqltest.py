"""Run Prometheus's promqltest scripts against a real `rtpm serve`, over HTTP.

    python bench/promqltest.py DIR_OR_FILES... [--json OUT] [--verbose] [--keep-going]

The scripts are `promql/promqltest/testdata/*.test` of prometheus/prometheus (Apache-2.0; not
shipped with RTPM: bring a checkout and point this at its testdata directory). The script language
is described in that package's README: `load <interval>` blocks of series and expanding point
notation, `clear`, `eval instant at T expr` and `eval range from A to B step S expr`, each followed by
`expect ...` lines and the expected series.

How it runs them:
- one `rtpm serve` on SQLite in a temporary directory, background jobs off, rate limits off, the
  accepted sample window opened to the epoch (the scripts load samples from t=0);
- every file and every `clear` starts a new tenant (an API key per tenant, made with `rtpm keys
  create` before the server starts), so nothing leaks between blocks;
- `load` blocks go in through remote write 1.0 (snappy protobuf), as Prometheus would send them;
  stale markers as Prometheus's stale NaN;
- `eval` runs /api/v1/query or /api/v1/query_range and compares as promqltest does: values equal
  within a relative 1e-6 (NaN equals NaN), the same set of series (the same order for `expect
  ordered`), `expect fail` (and its `msg:`/`regex:`), `expect warn|info` against the answer's
  `warnings`/`infos`, `expect string`, `expect range vector`.

What it does not do: promqltest also re-runs every instant query with `@` appended to each
selector (a check of step invariance); that re-run is not done here. Native histogram points
(`{{...}}`, with their expanding forms) are loaded through remote write's `histograms` field and
compared with the answer's `histogram`/`histograms` (count, sum and populated buckets within
1e-6; the counter reset hint is not in Prometheus's JSON and not compared), see
promqltest_histograms.py. `load_with_nhcb` blocks also load each classic histogram as a native
histogram with custom buckets, as Prometheus converts them at scrape. Failures of evals over
histogram series are reported with the reason prefixed "native histograms".

It prints passed / failed / skipped per file and the failures grouped by reason; `--json` writes
every case with its outcome.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cramjam
import httpx

from rtpm.ingest.proto import WriteRequest
from rtpm.model.histograms import CUSTOM_BUCKETS_SCHEMA, Histogram

sys.path.insert(0, str(Path(__file__).resolve().parent))
import promqltest_histograms as nh  # noqa: E402 - beside this script

STALE_NAN = struct.unpack("<d", struct.pack("<Q", 0x7FF0000000000002))[0]
EPSILON = 1e-6

# --- durations and numbers -------------------------------------------------------------------

_DUR_UNITS = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000, "w": 604_800_000, "y": 31_536_000_000}
_DUR_RE = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w|y)")


def parse_duration_ms(text: str) -> int:
    """A Prometheus duration (1h30m, 10s, 0) or a plain number of seconds, in milliseconds."""
    text = text.strip()
    if re.fullmatch(r"-?\d+(?:\.\d+)?", text):
        return int(round(float(text) * 1000))
    neg = text.startswith("-")
    body = text[1:] if neg else text
    pos, total = 0, 0
    for m in _DUR_RE.finditer(body):
        if m.start() != pos:
            raise ValueError(f"bad duration {text!r}")
        total += int(round(float(m.group(1)) * _DUR_UNITS[m.group(2)]))
        pos = m.end()
    if pos != len(body) or not body:
        raise ValueError(f"bad duration {text!r}")
    return -total if neg else total


def parse_number(text: str) -> float:
    t = text.strip()
    low = t.lower()
    if low in ("inf", "+inf"):
        return math.inf
    if low == "-inf":
        return -math.inf
    if low in ("nan", "+nan", "-nan"):
        return math.nan
    if re.fullmatch(r"[-+]?0x[0-9a-fA-F]+", t):
        return float(int(t, 16))
    if not re.fullmatch(r"[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?", t):
        raise ValueError(f"not a number: {text!r}")
    return float(t)


# --- series descriptions and points ----------------------------------------------------------


class Hist:
    """A native histogram point: its text and the histogram (bench/promqltest_histograms.py)."""

    def __init__(self, text: str, value: Any = None) -> None:
        self.text = text
        self._value = value

    @property
    def histogram(self) -> Any:
        if self._value is None:
            self._value = nh.parse(self.text, parse_number)
        return self._value

    def __repr__(self) -> str:
        return "{{" + self.text + "}}"


Point = float | Hist | None  # None: no sample at this step ('_')


def _split_series_desc(line: str) -> tuple[str, str]:
    """Split `metric{a="b"} 1 2 3` into the series part and the points part."""
    line = line.strip()
    if line.startswith("{{"):
        return "", line
    i, n = 0, len(line)
    in_quote: str | None = None
    depth = 0
    while i < n:
        c = line[i]
        if in_quote:
            if c == "\\":
                i += 2
                continue
            if c == in_quote:
                in_quote = None
        elif c in "\"'`":
            in_quote = c
        elif c == "{":
            depth += 1
        elif c == "}":
            depth -= 1
            if depth == 0:
                return line[: i + 1], line[i + 1 :].strip()
        elif c.isspace() and depth == 0:
            return line[:i], line[i:].strip()
        i += 1
    return line, ""


_UNESCAPE = {"n": "\n", "t": "\t", "\\": "\\", '"': '"', "'": "'", "`": "`"}


def _read_string(s: str, i: int) -> tuple[str, int]:
    quote = s[i]
    i += 1
    out: list[str] = []
    while i < len(s):
        c = s[i]
        if c == "\\" and quote != "`":
            out.append(_UNESCAPE.get(s[i + 1], "\\" + s[i + 1]))
            i += 2
            continue
        if c == quote:
            return "".join(out), i + 1
        out.append(c)
        i += 1
    raise ValueError(f"unterminated string in {s!r}")


def parse_labels(desc: str) -> dict[str, str]:
    """`name{a="b",...}`, `{__name__="x"}` or `{"utf8.name", a="b"}` into a label dict."""
    desc = desc.strip()
    labels: dict[str, str] = {}
    brace = desc.find("{")
    name = desc if brace < 0 else desc[:brace]
    if name.strip():
        labels["__name__"] = name.strip()
    if brace < 0:
        return labels
    body = desc[brace + 1 : desc.rindex("}")]
    i = 0
    while i < len(body):
        while i < len(body) and body[i] in " ,\t":
            i += 1
        if i >= len(body):
            break
        if body[i] in "\"'`":
            key, i = _read_string(body, i)
        else:
            m = re.match(r"[A-Za-z_:][A-Za-z0-9_:.]*", body[i:])
            if not m:
                raise ValueError(f"bad label in {desc!r}")
            key, i = m.group(0), i + m.end()
        while i < len(body) and body[i] == " ":
            i += 1
        if i >= len(body) or body[i] != "=":  # a quoted metric name on its own
            labels["__name__"] = key
            continue
        i += 1
        while i < len(body) and body[i] == " ":
            i += 1
        value, i = _read_string(body, i)
        labels[key] = value
    return labels


def _tokens(points: str) -> Iterator[str]:
    """Whitespace-separated tokens, `{{...}}` histograms (which hold spaces) kept whole."""
    i, n = 0, len(points)
    while i < n:
        if points[i].isspace():
            i += 1
            continue
        j = i
        while j < n and not points[j].isspace():
            if points.startswith("{{", j):
                end = points.find("}}", j)
                if end < 0:
                    raise ValueError(f"unterminated histogram in {points!r}")
                j = end + 2
            else:
                j += 1
        yield points[i:j]
        i = j


def _split_op(body: str) -> tuple[str, str, str] | None:
    """`a+b` / `a-b` into (a, op, b); a sign at the start or after an exponent is not an operator."""
    if body.startswith("{{"):
        end = body.find("}}")
        rest = body[end + 2 :]
        if rest[:1] in ("+", "-"):
            return body[: end + 2], rest[0], rest[1:]
        return None
    for k in range(1, len(body)):
        if body[k] in "+-" and body[k - 1] not in "eE":
            return body[:k], body[k], body[k + 1 :]
    return None


def expand_points(points: str) -> list[Point]:
    out: list[Point] = []
    for tok in _tokens(points):
        if tok == "_":
            out.append(None)
            continue
        if tok == "stale":
            out.append(STALE_NAN)
            continue
        m = re.fullmatch(r"(.*?)x(\d+)", tok, re.S) if not tok.endswith("}}") else None
        if m and m.group(1) == "_":
            out.extend([None] * int(m.group(2)))
            continue
        if m and m.group(1) == "stale":
            out.extend([STALE_NAN] * int(m.group(2)))
            continue
        if m:
            body, times = m.group(1), int(m.group(2))
            split = _split_op(body)
            if split is None:
                start_s, op, step_s = body, "+", "0"
            else:
                start_s, op, step_s = split
            if start_s.startswith("{{"):
                first = Hist(start_s[2:-2]).histogram
                step_h = Hist(step_s[2:-2]).histogram if split is not None else None
                out.extend(Hist(start_s[2:-2], h) for h in nh.expand(first, op, step_h, times))
                continue
            start, step = parse_number(start_s), parse_number(step_s)
            if op == "-":
                step = -step
            out.extend(start + step * k for k in range(times + 1))
            continue
        if tok.startswith("{{"):
            out.append(Hist(tok[2:-2]))
            continue
        out.append(parse_number(tok))
    return out


# --- the script ------------------------------------------------------------------------------


@dataclass
class SeriesDef:
    labels: dict[str, str]
    points: list[Point]


@dataclass
class Load:
    line: int
    interval_ms: int
    series: list[SeriesDef]
    nhcb: bool = False
    start_timestamps: bool = False

    def histogram_names(self) -> set[str]:
        """Metric names with native histogram points (with the converted ones of load_with_nhcb)."""
        names = {s.labels.get("__name__", "") for s in self.series if any(isinstance(p, Hist) for p in s.points)}
        if self.nhcb:
            names |= {s.labels.get("__name__", "").removesuffix("_bucket") for s in self.series}
        return names - {""}


@dataclass
class Clear:
    line: int


@dataclass
class Eval:
    line: int
    expr: str
    instant: bool
    start_ms: int
    end_ms: int = 0
    step_ms: int = 0
    fail: bool = False
    fail_msg: str | None = None
    fail_regex: str | None = None
    ordered: bool = False
    warn: list[tuple[str, str | None]] = field(default_factory=list)  # (kind, msg-or-regex)
    info: list[tuple[str, str | None]] = field(default_factory=list)
    no_warn: bool = False
    no_info: bool = False
    string: str | None = None
    range_vector: tuple[int, int, int] | None = None
    expected: list[SeriesDef] = field(default_factory=list)
    scalar: float | None = None
    parse_error: str | None = None


Command = Load | Clear | Eval

_EVAL_RE = re.compile(
    r"^eval(?P<variant>_fail|_warn|_info|_ordered)?\s+"
    r"(?:instant\s+at\s+(?P<at>\S+)|range\s+from\s+(?P<start>\S+)\s+to\s+(?P<end>\S+)\s+step\s+(?P<step>\S+))"
    r"\s+(?P<expr>.+)$"
)


def _unquote(text: str) -> str:
    t = text.strip()
    if len(t) >= 2 and t[0] == t[-1] and t[0] in "\"'`":
        return _read_string(t, 0)[0]
    return t


def _apply_expect(ev: Eval, body: str) -> None:
    m = re.match(r"(fail|warn|info|no_warn|no_info|ordered|string|range vector)\b\s*(.*)$", body)
    if not m:
        raise ValueError(f"unknown expect line {body!r}")
    kind, rest = m.group(1), m.group(2).strip()
    if kind == "ordered":
        ev.ordered = True
    elif kind == "no_warn":
        ev.no_warn = True
    elif kind == "no_info":
        ev.no_info = True
    elif kind == "string":
        ev.string = _unquote(rest)
    elif kind == "range vector":
        rm = re.fullmatch(r"from\s+(\S+)\s+to\s+(\S+)\s+step\s+(\S+)", rest)
        if not rm:
            raise ValueError(f"bad range vector expectation {rest!r}")
        ev.range_vector = tuple(parse_duration_ms(g) for g in rm.groups())  # type: ignore[assignment]
    else:
        mm = re.match(r"(msg|regex)\s*:\s*(.*)$", rest)
        match_kind, text = (mm.group(1), mm.group(2).strip()) if mm else ("any", None)
        if kind == "fail":
            ev.fail = True
            if match_kind == "msg":
                ev.fail_msg = _unquote(text or "")
            elif match_kind == "regex":
                ev.fail_regex = _unquote(text or "")
        elif kind == "warn":
            ev.warn.append((match_kind, text))
        else:
            ev.info.append((match_kind, text))


def parse_script(text: str) -> list[Command]:
    lines = text.split("\n")
    cmds: list[Command] = []
    i = 0
    while i < len(lines):
        raw = lines[i]
        line = raw.strip()
        i += 1
        if not line or line.startswith("#"):
            continue
        if line == "clear":
            cmds.append(Clear(i))
            continue
        if line.startswith("load"):
            m = re.fullmatch(r"load(_with_nhcb)?\s+(\S+)", line)
            if not m:
                raise ValueError(f"line {i}: bad load {line!r}")
            load = Load(i, parse_duration_ms(m.group(2)), [], nhcb=bool(m.group(1)))
            while i < len(lines) and lines[i].strip() and not lines[i].strip().startswith("#"):
                desc, pts = _split_series_desc(lines[i])
                i += 1
                if pts.startswith("@st") or desc.endswith(
                    "@st"
                ):  # start timestamps of the series: not a thing RTPM stores
                    load.start_timestamps = True
                    continue
                load.series.append(SeriesDef(parse_labels(desc) if desc else {}, expand_points(pts)))
            cmds.append(load)
            continue
        if line.startswith("eval"):
            m = _EVAL_RE.match(line)
            if not m:
                raise ValueError(f"line {i}: bad eval {line!r}")
            expr = m.group("expr")
            if m.group("at") is not None:
                ev = Eval(i, expr, True, parse_duration_ms(m.group("at")))
            else:
                ev = Eval(
                    i,
                    expr,
                    False,
                    parse_duration_ms(m.group("start")),
                    parse_duration_ms(m.group("end")),
                    parse_duration_ms(m.group("step")),
                )
            variant = m.group("variant")
            if variant == "_fail":
                ev.fail = True
            elif variant == "_ordered":
                ev.ordered = True
            elif variant == "_warn":
                ev.warn.append(("any", None))
            elif variant == "_info":
                ev.info.append(("any", None))
            while i < len(lines) and lines[i].strip() and not lines[i].strip().startswith("#"):
                body = lines[i].strip()
                i += 1
                try:
                    if body.startswith("expect "):
                        _apply_expect(ev, body[len("expect ") :].strip())
                    elif body.startswith("expected_fail_message "):
                        ev.fail, ev.fail_msg = True, body.split(" ", 1)[1].strip()
                    elif body.startswith("expected_fail_regexp "):
                        ev.fail, ev.fail_regex = True, body.split(" ", 1)[1].strip()
                    elif ev.instant and _is_number(body):
                        ev.scalar = parse_number(body)
                    else:
                        desc, pts = _split_series_desc(body)
                        ev.expected.append(SeriesDef(parse_labels(desc) if desc else {}, expand_points(pts)))
                except ValueError as e:
                    ev.parse_error = str(e)
            cmds.append(ev)
            continue
        raise ValueError(f"line {i}: unknown command {line!r}")
    return cmds


def _is_number(text: str) -> bool:
    try:
        parse_number(text)
    except ValueError:
        return False
    return True


# --- the server ------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Server:
    """`rtpm serve` on SQLite in a temporary directory, with one API key per tenant."""

    def __init__(self, tenants: int) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="rtpm-promqltest-"))
        self.port = _free_port()
        self.env = {
            **os.environ,
            "RTPM_DATA_DIR": str(self.dir),
            "RTPM_PORT": str(self.port),
            "RTPM_JOBS": "off",
            "RTPM_AUTH__RATE_LIMIT__ENABLED": "false",
            "RTPM_LIMITS__MAX_PAST_SECONDS": str(60 * 365 * 86400),
            "RTPM_QUERY__CACHE_ENABLED": "false",
            "RTPM_ADMIN_PASSWORD": "promqltest-admin-password",
            "RTPM_LOG_LEVEL": "warning",
        }
        self.keys = self._make_keys(tenants)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "rtpm", "serve"],
            env=self.env,
            stdout=subprocess.DEVNULL,
            stderr=open(self.dir / "serve.log", "wb"),  # noqa: SIM115
        )
        self.url = f"http://127.0.0.1:{self.port}"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if httpx.get(self.url + "/health", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            if self.proc.poll() is not None:
                raise RuntimeError((self.dir / "serve.log").read_text()[-2000:])
            time.sleep(0.2)
        raise RuntimeError("rtpm serve did not start")

    def _make_keys(self, n: int) -> list[str]:
        script = (
            "import sys\n"
            "from rtpm.cli import main\n"
            f"for t in range({n}):\n"
            "    print('@@KEY', flush=True)\n"
            "    main(['keys', 'create', '--name', f'promqltest-{t}', '--tenant', f'promqltest-{t}',"
            " '--scope', 'metrics:read', '--scope', 'metrics:write'])\n"
            "    sys.stdout.flush()\n"
        )
        out = subprocess.run(
            [sys.executable, "-c", script], env=self.env, capture_output=True, text=True, check=True
        ).stdout
        keys = [part.strip().splitlines()[-1].strip() for part in out.split("@@KEY")[1:]]
        if len(keys) != n:
            raise RuntimeError(f"made {len(keys)} keys of {n}")
        return keys

    def close(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        shutil.rmtree(self.dir, ignore_errors=True)


# --- running ---------------------------------------------------------------------------------


@dataclass
class Outcome:
    file: str
    line: int
    expr: str
    status: str  # passed | failed | skipped
    reason: str = ""
    detail: str = ""


def nhcb_series(load: Load) -> list[SeriesDef]:
    """`load_with_nhcb`: each classic histogram (`x_bucket{le}`, `x_sum`) also as a native
    histogram with custom buckets named `x`, as Prometheus converts them at scrape."""
    groups: dict[tuple[str, tuple[tuple[str, str], ...]], dict[float, list[Point]]] = {}
    sums: dict[tuple[str, tuple[tuple[str, str], ...]], list[Point]] = {}
    for sd in load.series:
        name = sd.labels.get("__name__", "")
        rest = tuple(sorted((k, v) for k, v in sd.labels.items() if k not in ("__name__", "le")))
        if name.endswith("_bucket") and "le" in sd.labels:
            groups.setdefault((name.removesuffix("_bucket"), rest), {})[parse_number(sd.labels["le"])] = sd.points
        elif name.endswith("_sum"):
            sums[(name.removesuffix("_sum"), rest)] = sd.points
    stale = struct.pack("<d", STALE_NAN)
    out: list[SeriesDef] = []
    for (base, rest), by_le in groups.items():
        les = sorted(by_le)
        if les[-1] != math.inf:
            continue
        sum_pts = sums.get((base, rest), [])
        points: list[Point] = []
        for k in range(max(len(p) for p in by_le.values())):
            vals = [by_le[le][k] if k < len(by_le[le]) else None for le in les]
            cum = [v for v in vals if isinstance(v, float) and struct.pack("<d", v) != stale]
            if len(cum) != len(vals):
                points.append(None)
                continue
            sm = sum_pts[k] if k < len(sum_pts) and isinstance(sum_pts[k], float) else 0.0
            h = Histogram(
                schema=CUSTOM_BUCKETS_SCHEMA,
                count=cum[-1],
                sum=float(sm),
                positive_spans=((0, len(cum)),),
                positive=tuple(c - p for c, p in zip(cum, [0.0, *cum[:-1]], strict=True)),
                custom_values=tuple(les[:-1]),
            )
            points.append(Hist("nhcb", h))
        out.append(SeriesDef({"__name__": base, **dict(rest)}, points))
    return out


def _write(client: httpx.Client, load: Load) -> str | None:
    """Remote-write one load block; None when every sample was taken, else what went wrong."""
    parts = []
    for s in load.series + (nhcb_series(load) if load.nhcb else []):
        ts = WriteRequest().timeseries.add()
        for k, v in sorted(s.labels.items()):
            lab = ts.labels.add()
            lab.name, lab.value = k, v
        hists = []
        for k, p in enumerate(s.points):
            if p is None:
                continue
            if isinstance(p, Hist):
                hists.append((k * load.interval_ms, p.histogram))
                continue
            smp = ts.samples.add()
            smp.value = p
            smp.timestamp = k * load.interval_ms
        parts.append(nh.field(0x0A, ts.SerializeToString() + nh.histogram_fields(hists)))
    body = bytes(cramjam.snappy.compress_raw(b"".join(parts)))
    r = client.post(
        "/api/v1/write",
        content=body,
        headers={"Content-Encoding": "snappy", "Content-Type": "application/x-protobuf"},
    )
    if r.status_code >= 300:
        return f"load refused: {r.status_code} {r.text[:300]}"
    return None


def _close(a: float, b: float) -> bool:
    if math.isnan(a) or math.isnan(b):
        return math.isnan(a) and math.isnan(b)
    if a == b:
        return True
    if math.isinf(a) or math.isinf(b):
        return False
    return abs(a - b) <= EPSILON * max(abs(a), abs(b)) or abs(a - b) < 1e-300


def _key(labels: dict[str, str]) -> tuple[tuple[str, str], ...]:
    return tuple(sorted(labels.items()))


def _fmt(labels: dict[str, str]) -> str:
    name = labels.get("__name__", "")
    rest = ", ".join(f'{k}="{v}"' for k, v in sorted(labels.items()) if k != "__name__")
    return f"{name}{{{rest}}}"


def _value(v: Any) -> float:
    return parse_number(str(v))


def _annotations_ok(kind: str, want: list[tuple[str, str | None]], none: bool, got: list[str]) -> str | None:
    if none and got:
        return f"unexpected {kind}: {got[0]}"
    for match_kind, text in want:
        if match_kind == "any":
            if not got:
                return f"missing {kind} annotation"
        elif match_kind == "msg":
            if text not in got:
                return f"missing {kind} {text!r} (got {got[:2]})"
        elif not any(re.search(text or "", g) for g in got):
            return f"missing {kind} matching {text!r} (got {got[:2]})"
    if want and any(m != "any" for m, _ in want):
        for g in got:
            if not any(
                (m == "any") or (m == "msg" and t == g) or (m == "regex" and re.search(t or "", g)) for m, t in want
            ):
                return f"unexpected {kind}: {g}"
    return None


def _series_diff(want: dict[Any, Any], got: dict[Any, Any]) -> tuple[str, str] | None:
    """(reason, detail) when the expected and answered series differ, else None."""
    missing = [k for k in want if k not in got]
    extra = [k for k in got if k not in want]
    if not missing and not extra:
        return None
    det = ""
    if missing:
        det += "missing " + ", ".join(_fmt(dict(k)) for k in missing[:3])
    if extra:
        det += (" ; " if det else "") + "extra " + ", ".join(_fmt(dict(k)) for k in extra[:3])
    return ("missing series" if missing else "extra series"), det


def _compare(ev: Eval, data: dict[str, Any]) -> tuple[str, str] | None:
    """None when the answer matches, else (reason, detail)."""
    rtype, result = data["resultType"], data["result"]
    if ev.string is not None:
        if rtype != "string" or result[1] != ev.string:
            return "wrong string", f"{rtype} {result!r}"
        return None
    if ev.instant and ev.scalar is not None:
        if rtype != "scalar":
            return "wrong result type", f"expected scalar, got {rtype}"
        if not _close(_value(result[1]), ev.scalar):
            return "wrong value", f"scalar {result[1]} != {ev.scalar}"
        return None
    if ev.instant and ev.range_vector is None:
        if rtype == "matrix":
            return "wrong result type", "expected vector, got matrix"
        if rtype == "scalar":
            if not ev.expected and False:
                return None
            return "wrong result type", f"expected vector, got scalar {result[1]}"
        got = {_key(s["metric"]): s for s in result}
        if len(got) != len(result):
            return "duplicate series", ""
        want = {_key(s.labels): s for s in ev.expected}
        diff = _series_diff(want, got)
        if diff:
            return diff
        for k, s in want.items():
            g = got[k]
            exp = s.points[0] if s.points else None
            if isinstance(exp, Hist):
                if "histogram" not in g:
                    return "wrong value", f"{_fmt(dict(k))}: {g['value'][1]}, expected a histogram"
                bad = nh.mismatch(exp.histogram, g["histogram"][1], parse_number, EPSILON)
                if bad:
                    return "wrong histogram", f"{_fmt(dict(k))}: {bad}"
                continue
            if "histogram" in g:
                return "wrong value", f"{_fmt(dict(k))}: histogram, expected {exp}"
            if exp is None or not _close(_value(g["value"][1]), exp):
                return "wrong value", f"{_fmt(dict(k))}: {g['value'][1]} != {exp}"
        if ev.ordered:
            order = [_key(s["metric"]) for s in result]
            if order != [_key(s.labels) for s in ev.expected]:
                return "wrong order", ""
        return None
    # matrix answers: range queries, and instant queries of a range vector
    if rtype != "matrix":
        return "wrong result type", f"expected matrix, got {rtype}"
    if ev.range_vector is not None:
        start, end, step = ev.range_vector
    else:
        start, end, step = ev.start_ms, ev.end_ms, ev.step_ms
    stamps = list(range(start, end + 1, step)) if step > 0 else [start]
    got = {_key(s["metric"]): s for s in result}
    want = {_key(s.labels): s for s in ev.expected}
    diff = _series_diff(want, got)
    if diff:
        return diff
    for k, s in want.items():
        if any(isinstance(p, Hist) for p in s.points):
            exp_h = {stamps[i]: p for i, p in enumerate(s.points) if isinstance(p, Hist) and i < len(stamps)}
            exp_f = {stamps[i]: p for i, p in enumerate(s.points) if isinstance(p, float) and i < len(stamps)}
            got_h = {int(round(float(t) * 1000)): h for t, h in got[k].get("histograms", [])}
            got_f = {int(round(float(t) * 1000)): _value(v) for t, v in got[k].get("values", [])}
            if set(exp_h) != set(got_h) or set(exp_f) != set(got_f):
                return (
                    "wrong timestamps",
                    f"{_fmt(dict(k))}: histograms at {sorted(got_h)[:3]}, floats at {sorted(got_f)[:3]}",
                )
            for t, hp in exp_h.items():
                bad = nh.mismatch(hp.histogram, got_h[t], parse_number, EPSILON)
                if bad:
                    return "wrong histogram", f"{_fmt(dict(k))} @{t / 1000:g}: {bad}"
            for t, v in exp_f.items():
                if not _close(got_f[t], v):
                    return "wrong value", f"{_fmt(dict(k))} @{t / 1000:g}: {got_f[t]} != {v}"
            continue
        if "histograms" in got[k]:
            return "wrong value", f"{_fmt(dict(k))}: histograms, expected floats"
        exp_pts = {stamps[i]: p for i, p in enumerate(s.points) if p is not None and i < len(stamps)}
        got_pts = {int(round(float(t) * 1000)): _value(v) for t, v in got[k].get("values", [])}
        if set(exp_pts) != set(got_pts):
            miss = sorted(set(exp_pts) - set(got_pts))[:3]
            ext = sorted(set(got_pts) - set(exp_pts))[:3]
            return "wrong timestamps", f"{_fmt(dict(k))}: missing at {miss} extra at {ext}"
        for t, v in exp_pts.items():
            assert not isinstance(v, Hist)
            if not _close(got_pts[t], v):
                return "wrong value", f"{_fmt(dict(k))} @{t / 1000:g}: {got_pts[t]} != {v}"
    return None


def run_eval(client: httpx.Client, ev: Eval) -> tuple[str, str, str]:
    """(status, reason, detail) of one eval."""
    if ev.parse_error:
        return "skipped", "runner cannot parse the expectation", ev.parse_error
    if ev.instant:
        params = {"query": ev.expr, "time": f"{ev.start_ms / 1000:.3f}"}
        r = client.get("/api/v1/query", params=params)
    else:
        params = {
            "query": ev.expr,
            "start": f"{ev.start_ms / 1000:.3f}",
            "end": f"{ev.end_ms / 1000:.3f}",
            "step": f"{ev.step_ms / 1000:.3f}",
        }
        r = client.get("/api/v1/query_range", params=params)
    try:
        doc = r.json()
    except ValueError:
        return "failed", f"HTTP {r.status_code} not JSON", r.text[:200]
    if r.status_code >= 500:
        return "failed", f"HTTP {r.status_code}", str(doc.get("error", ""))[:300]
    if doc.get("status") != "success":
        err = str(doc.get("error", doc))
        if not ev.fail:
            return "failed", "query refused", err[:300]
        if ev.fail_msg is not None and err != ev.fail_msg and ev.fail_msg not in err:
            return "failed", "different error message", f"got {err[:200]!r} want {ev.fail_msg!r}"
        if ev.fail_regex is not None and not re.search(ev.fail_regex, err):
            return "failed", "different error message", f"got {err[:200]!r} want /{ev.fail_regex}/"
        return "passed", "", ""
    if ev.fail:
        return "failed", "expected an error, got success", json.dumps(doc.get("data"))[:200]
    for kind, want, none, got in (
        ("warn", ev.warn, ev.no_warn, doc.get("warnings") or []),
        ("info", ev.info, ev.no_info, doc.get("infos") or []),
    ):
        bad = _annotations_ok(kind, want, none, got)
        if bad:
            return "failed", f"annotation ({kind})", bad
    cmp = _compare(ev, doc["data"])
    if cmp:
        return "failed", cmp[0], cmp[1]
    return "passed", "", ""


def run_file(server: Server, path: Path, tenant: Iterator[str]) -> list[Outcome]:
    name = path.name
    try:
        cmds = parse_script(path.read_text())
    except ValueError as e:
        return [Outcome(name, 0, "", "skipped", "runner cannot parse the file", str(e))]
    out: list[Outcome] = []

    def client() -> httpx.Client:
        return httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {next(tenant)}"}, timeout=60)

    c = client()
    load_problems: list[str] = []
    hist_names: set[str] = set()
    for cmd in cmds:
        if isinstance(cmd, Clear):
            c.close()
            c = client()
            load_problems, hist_names = [], set()
        elif isinstance(cmd, Load):
            problem = _write(c, cmd)
            if problem:
                load_problems.append(problem)
            if cmd.start_timestamps:
                load_problems.append("start timestamps (@st series)")
            hist_names |= cmd.histogram_names()
        else:
            status, reason, detail = run_eval(c, cmd)
            words = set(re.findall(r"[A-Za-z_:][A-Za-z0-9_:]*", cmd.expr))
            if status == "failed" and load_problems:
                # A block whose data could not all be loaded: name that as the reason.
                reason, detail = load_problems[0], f"{reason}: {detail}"
            elif status == "failed" and (words & hist_names or "histogram" in reason):
                reason = "native histograms" + ("" if reason == "native histograms" else f" ({reason})")
            out.append(Outcome(name, cmd.line, cmd.expr, status, reason, detail))
    c.close()
    return out


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("paths", nargs="+", type=Path, help="testdata directory or .test files")
    ap.add_argument("--json", type=Path, help="write every case and its outcome here")
    ap.add_argument("--verbose", "-v", action="store_true", help="print every failure")
    args = ap.parse_args(argv)
    files: list[Path] = []
    for p in args.paths:
        files.extend(sorted(p.glob("*.test")) if p.is_dir() else [p])
    tenants_needed = sum(1 + p.read_text().count("\nclear") for p in files) + 1
    server = Server(tenants_needed)
    keys = iter(server.keys)
    outcomes: list[Outcome] = []
    try:
        for f in files:
            res = run_file(server, f, keys)
            outcomes.extend(res)
            cnt = Counter(o.status for o in res)
            print(
                f"{f.name:32} passed {cnt['passed']:4}  failed {cnt['failed']:4}  skipped {cnt['skipped']:3}",
                flush=True,
            )
    finally:
        server.close()
    total = Counter(o.status for o in outcomes)
    print(f"{'TOTAL':32} passed {total['passed']:4}  failed {total['failed']:4}  skipped {total['skipped']:3}")
    reasons: dict[str, Counter[str]] = defaultdict(Counter)
    for o in outcomes:
        if o.status != "passed":
            reasons[o.reason][o.file] += 1
    print("\nfailures and skips by reason:")
    for reason, per_file in sorted(reasons.items(), key=lambda kv: -sum(kv[1].values())):
        files_s = ", ".join(f"{f} {n}" for f, n in per_file.most_common())
        print(f"  {sum(per_file.values()):4}  {reason}  [{files_s}]")
    if args.verbose:
        print()
        for o in outcomes:
            if o.status != "passed":
                print(f"{o.file}:{o.line}: {o.status}: {o.reason}: {o.expr}\n      {o.detail}")
    if args.json:
        args.json.write_text(json.dumps([o.__dict__ for o in outcomes], indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
