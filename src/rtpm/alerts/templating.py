"""The part of Prometheus' alert templating that rules use in practice.

Understood inside `{{ ... }}`: `$labels.name`, `.Labels.name`, `index $labels "name"`, `$value`,
`.Value`, `$externalLabels.name`, the functions `humanize`, `humanizePercentage`, `printf "fmt"`,
`toUpper`, `toLower`, and pipes (`$value | humanize`). Anything else is left as written, so a
template RTPM does not understand shows up verbatim rather than breaking the alert.
"""

from __future__ import annotations

import math
import re
import shlex
from collections.abc import Mapping
from decimal import Decimal

_ACTION_RE = re.compile(r"\{\{-?\s*(.*?)\s*-?\}\}", re.DOTALL)
_LABEL_REF_RE = re.compile(r"^(\$labels|\.Labels|\$externalLabels|\.ExternalLabels)\.([a-zA-Z_][a-zA-Z0-9_]*)$")


class _Unsupported(Exception):
    pass


def format_value(v: float) -> str:
    """Go's `%v` of a float64 (what `{{ $value }}` prints): shortest digits, exponent form only
    below 1e-4 or from 1e21 on."""
    if v != v:
        return "NaN"
    if math.isinf(v):
        return "+Inf" if v > 0 else "-Inf"
    if v == 0:
        return "0"
    exp = math.floor(math.log10(abs(v)))
    r = repr(float(v))
    if exp < -4 or exp >= 21:
        return r
    if "e" in r:
        r = format(Decimal(r), "f")
    return r[:-2] if r.endswith(".0") else r


def humanize(v: float) -> str:
    if v == 0 or not math.isfinite(v):
        return format_value(v)
    if abs(v) >= 1:
        prefixes = ["", "k", "M", "G", "T", "P", "E", "Z", "Y"]
        i = 0
        while abs(v) >= 1000 and i < len(prefixes) - 1:
            v /= 1000
            i += 1
        return f"{v:.4g}{prefixes[i]}"
    prefixes = ["", "m", "u", "n", "p", "f", "a", "z", "y"]
    i = 0
    while abs(v) < 1 and i < len(prefixes) - 1:
        v *= 1000
        i += 1
    return f"{v:.4g}{prefixes[i]}"


def _go_printf(fmt: str, args: list[object]) -> str:
    py = fmt.replace("%v", "%s")
    try:
        return py % tuple(args)
    except (TypeError, ValueError) as exc:
        raise _Unsupported(str(exc)) from None


def _operand(
    token: str, labels: Mapping[str, str], value: float, external: Mapping[str, str]
) -> object:  # a string or the float value
    if token in ("$value", ".Value"):
        return value
    m = _LABEL_REF_RE.match(token)
    if m:
        source = labels if m.group(1) in ("$labels", ".Labels") else external
        return source.get(m.group(2), "")
    if token in ("$labels", ".Labels"):
        return labels
    if len(token) >= 2 and token[0] == token[-1] and token[0] in '"`':
        return token[1:-1]
    try:
        return float(token)
    except ValueError:
        raise _Unsupported(token) from None


def _call(
    words: list[str], piped: object | None, labels: Mapping[str, str], value: float, external: Mapping[str, str]
) -> object:
    fn, raw_args = words[0], words[1:]
    if not fn.isidentifier():
        if raw_args or piped is not None:
            raise _Unsupported(fn)
        return _operand(fn, labels, value, external)
    args = [_operand(a, labels, value, external) if not a.startswith('"') else a[1:-1] for a in raw_args]
    if piped is not None:
        args.append(piped)
    if fn == "index" and len(args) == 2 and isinstance(args[0], Mapping):
        return args[0].get(str(args[1]), "")
    if fn == "printf" and args:
        return _go_printf(str(args[0]), args[1:])
    if len(args) != 1:
        raise _Unsupported(fn)
    arg = args[0]
    if fn == "humanize" and isinstance(arg, float):
        return humanize(arg)
    if fn == "humanizePercentage" and isinstance(arg, float):
        return humanize(arg * 100) + "%"
    if fn == "toUpper":
        return _show(arg).upper()
    if fn == "toLower":
        return _show(arg).lower()
    raise _Unsupported(fn)


def _show(v: object) -> str:
    if isinstance(v, float):
        return format_value(v)
    return str(v)


def expand(
    template: str, labels: Mapping[str, str], value: float, external_labels: Mapping[str, str] | None = None
) -> str:
    """Expand `template` for one alert: `labels` are the query result's labels, `value` its value."""
    if "{{" not in template:
        return template
    external = external_labels or {}

    def action(m: re.Match[str]) -> str:
        body = m.group(1)
        try:
            result: object | None = None
            for stage in body.split("|"):
                words = shlex.split(stage.strip(), posix=False)
                if not words:
                    raise _Unsupported(body)
                result = _call(words, result, labels, value, external)
            return _show(result)
        except (_Unsupported, ValueError):
            return m.group(0)

    return _ACTION_RE.sub(action, template)
