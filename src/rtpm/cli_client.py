"""`rtpm push`, `rtpm query`, `rtpm alerts`: try every feature from a terminal, over HTTP.

They talk to a running server through `rtpm.client`: `--url` (or `RTPM_URL`, default
http://127.0.0.1:8000) and `--token` (or `RTPM_TOKEN`: an API key or an access token). Answers are
printed as JSON; errors go to stderr with exit status 1.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time
from typing import Any

from rtpm.cli_output import FORMATS, render
from rtpm.client import DEFAULT_URL, RtpmClient, RtpmClientError
from rtpm.model.time import parse_duration

_RELATIVE = re.compile(r"^(?:now)?-([0-9][0-9a-z]*)$")


def parse_when(raw: str, *, now: float | None = None) -> str | float:
    """`now`, `now-15m` / `now-1h30m` / `-7d` (now minus a Prometheus duration), unix seconds, or
    RFC3339 (passed through: the server parses it)."""
    now = time.time() if now is None else now
    text = raw.strip()
    if text == "now":
        return now
    m = _RELATIVE.match(text)
    if m:
        try:
            return now - parse_duration(m.group(1)) / 1000
        except ValueError:
            raise SystemExit(f"rtpm: {raw!r}: expected now-<duration> such as now-15m or now-1h30m") from None
    try:
        return float(text)
    except ValueError:
        return text


def _labels(pairs: list[str] | None) -> dict[str, str]:
    out: dict[str, str] = {}
    for pair in pairs or []:
        k, sep, v = pair.partition("=")
        if not sep or not k:
            raise SystemExit(f"rtpm: --label expects name=value, got {pair!r}")
        out[k] = v
    return out


def _client(args: argparse.Namespace) -> RtpmClient:
    return RtpmClient(args.url, token=args.token or None)


def _print(value: Any, fmt: str = "json") -> None:
    try:
        sys.stdout.write(render(value, fmt))
        sys.stdout.flush()
    except BrokenPipeError:  # `rtpm query ... | head`: the reader left; so do we, quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())


def _output_format(args: argparse.Namespace) -> str:
    """`--output`, else a table on a terminal and JSON into a pipe or file (for scripts and jq)."""
    chosen: str | None = getattr(args, "output", None)
    if chosen:
        return chosen
    if getattr(args, "func", None) is _query:
        return "table" if sys.stdout.isatty() else "json"
    return "json"


def _run(args: argparse.Namespace, action: Any) -> int:
    try:
        with _client(args) as client:
            _print(action(client), _output_format(args))
    except RtpmClientError as exc:
        print(f"rtpm: {exc}", file=sys.stderr)
        if exc.details:
            print(json.dumps(exc.details, indent=2), file=sys.stderr)
        return 1
    return 0


# ---- push -----------------------------------------------------------------------------------------


def _push(_: object, args: argparse.Namespace) -> int:
    if args.file:
        stream = sys.stdin if args.file == "-" else open(args.file, encoding="utf-8")  # noqa: SIM115
        with stream:
            data = json.load(stream)
        items = data["metrics"] if isinstance(data, dict) else data
        return _run(args, lambda c: c.push_batch(items))
    if args.name is None or args.value is None:
        raise SystemExit("rtpm push: give NAME VALUE, or --file with a JSON batch")
    timestamp = parse_when(args.timestamp) if args.timestamp else None
    return _run(
        args,
        lambda c: c.push(
            args.name,
            args.value,
            labels=_labels(args.label),
            timestamp=timestamp,
            type=args.type,
            unit=args.unit,
            help_text=args.help_text,
        ),
    )


# ---- query ----------------------------------------------------------------------------------------


def _query(_: object, args: argparse.Namespace) -> int:
    if args.metric:
        return _run(
            args,
            lambda c: c.query_metric(
                args.metric,
                start_time=parse_when(args.start or "now-1h"),
                end_time=parse_when(args.end or "now"),
                step=args.step,
                aggregation=args.aggregation,
                labels=_labels(args.label),
                group_by=[g for g in (args.group_by or "").split(",") if g],
            ),
        )
    if not args.expr:
        raise SystemExit("rtpm query: give a PromQL expression, or --metric NAME")
    if args.start or args.end:
        return _run(
            args,
            lambda c: c.query_range(
                args.expr,
                start=parse_when(args.start or "now-1h"),
                end=parse_when(args.end or "now"),
                step=args.step or "60s",
            ),
        )
    at = parse_when(args.time) if args.time else None
    return _run(args, lambda c: c.query(args.expr, time=at))


# ---- alerts ---------------------------------------------------------------------------------------


def _alerts(_: object, args: argparse.Namespace) -> int:
    what = args.alerts_command
    if what == "rules":
        return _run(args, lambda c: c.alert_rules())
    if what == "active":
        return _run(args, lambda c: c.active_alerts())
    if what == "history":
        filters = {k: v for k, v in (("rule", args.rule), ("state", args.state), ("limit", args.limit)) if v}
        return _run(args, lambda c: c.alert_history(**filters))
    if what == "resolve":
        return _run(args, lambda c: c.resolve_alert(args.alert_id))
    rule: dict[str, Any] = {"name": args.name, "severity": args.severity}
    if args.expr:
        rule["expr"] = args.expr
    elif args.metric and args.condition and args.threshold is not None:
        rule.update(metric_name=args.metric, condition=args.condition, threshold=args.threshold)
        if args.aggregation:
            rule["aggregation"] = args.aggregation
        if args.window:
            rule["window"] = args.window
    else:
        raise SystemExit("rtpm alerts create: give --expr, or --metric with --condition and --threshold")
    if args.for_:
        rule["for"] = args.for_
    if args.label:
        rule["labels"] = _labels(args.label)
    if args.summary:
        rule["annotations"] = {"summary": args.summary}
    return _run(args, lambda c: c.create_alert_rule(rule))


# ---- the parsers ----------------------------------------------------------------------------------


def _connection(p: argparse.ArgumentParser) -> None:
    p.add_argument("--url", default=os.environ.get("RTPM_URL", DEFAULT_URL), help="server (env RTPM_URL)")
    p.add_argument("--token", default=os.environ.get("RTPM_TOKEN"), help="API key or access token (env RTPM_TOKEN)")


def add_client_commands(sub: Any) -> None:
    """Add `push`, `query` and `alerts` to the `rtpm` subcommands."""
    push = sub.add_parser("push", help="push a sample (or a JSON batch) to a running server")
    push.add_argument("name", nargs="?", help="metric name, e.g. cpu_usage")
    push.add_argument("value", nargs="?", type=float, help="sample value")
    push.add_argument("-l", "--label", action="append", metavar="NAME=VALUE", help="a label (repeatable)")
    push.add_argument("--timestamp", help="RFC3339, unix seconds or now-5m (default: now)")
    push.add_argument("--type", choices=["counter", "gauge", "histogram", "summary"])
    push.add_argument("--unit")
    push.add_argument("--help-text")
    push.add_argument("--file", help="JSON batch: a list of samples or {'metrics': [...]}; - reads stdin")
    _connection(push)
    push.set_defaults(func=_push)

    query = sub.add_parser("query", help="PromQL instant or range query, or the seed's metric query")
    query.add_argument("expr", nargs="?", help="PromQL, e.g. 'avg by (host) (cpu_usage)'")
    query.add_argument("--time", help="instant query time (default now)")
    query.add_argument("--start", help="range start: RFC3339, unix seconds or now-1h (makes it a range query)")
    query.add_argument("--end", help="range end (default now)")
    query.add_argument("--step", help="range step, e.g. 60s or 5m")
    query.add_argument("--metric", help="the seed's query of one metric instead of PromQL")
    query.add_argument("--aggregation", help="with --metric: avg sum min max count p50 p90 p95 p99 rate")
    query.add_argument("-l", "--label", action="append", metavar="NAME=VALUE", help="with --metric: label filter")
    query.add_argument("--group-by", help="with --metric: labels to group by, comma separated")
    query.add_argument(
        "-o",
        "--output",
        choices=FORMATS,
        help="table (one row per series and sample), json or csv; default: table on a terminal, else json",
    )
    _connection(query)
    query.set_defaults(func=_query)

    alerts = sub.add_parser("alerts", help="alert rules and alerts")
    alerts_sub = alerts.add_subparsers(dest="alerts_command", required=True)
    for name, text in (("rules", "list alert rules"), ("active", "list pending and firing alerts")):
        p = alerts_sub.add_parser(name, help=text)
        _connection(p)
        p.set_defaults(func=_alerts)
    history = alerts_sub.add_parser("history", help="alerts in any state, newest first")
    history.add_argument("--rule", help="rule id or name")
    history.add_argument("--state", choices=["pending", "firing", "resolved"])
    history.add_argument("--limit", type=int)
    _connection(history)
    history.set_defaults(func=_alerts)
    resolve = alerts_sub.add_parser("resolve", help="resolve an alert by id")
    resolve.add_argument("alert_id", type=int)
    _connection(resolve)
    resolve.set_defaults(func=_alerts)
    create = alerts_sub.add_parser("create", help="create a rule: --expr PromQL, or a threshold on a metric")
    create.add_argument("--name", required=True)
    create.add_argument("--expr", help="PromQL condition, e.g. 'cpu_usage > 90'")
    create.add_argument("--metric", help="threshold form: metric name")
    create.add_argument("--condition", help="threshold form: > >= < <= == !=")
    create.add_argument("--threshold", type=float, help="threshold form: the value")
    create.add_argument("--aggregation", help="threshold form: avg, max, min, sum, ...")
    create.add_argument("--window", help="threshold form: aggregation window, e.g. 5m")
    create.add_argument("--for", dest="for_", help="how long the condition must hold, e.g. 1m")
    create.add_argument("--severity", default="warning", help="critical, warning or info")
    create.add_argument("-l", "--label", action="append", metavar="NAME=VALUE", help="a rule label (repeatable)")
    create.add_argument("--summary", help="annotation: summary")
    _connection(create)
    create.set_defaults(func=_alerts)
