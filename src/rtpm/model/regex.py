"""Prometheus's regular expressions: Go's regexp, RE2 syntax, in label matchers and
`label_replace`. Compiled with Google's RE2 (the `google-re2` binding) so that POSIX classes,
`\\p{L}`, `\\Q...\\E` and flags set inside a group mean what they mean to Prometheus. Where
the binding is not installed, patterns are translated to Python's `re` for what the two spell
differently (`re2_to_python`), which covers all but `\\p{...}` and `\\Q...\\E`.

`.` matches a newline too, as in Prometheus (which compiles matchers as `^(?s:...)$`).
"""

from __future__ import annotations

import importlib
import re
from typing import Any, Protocol


class RegexError(ValueError):
    """A pattern that does not compile; the message says why."""


class Match(Protocol):
    def group(self, key: int | str = 0, /) -> str | None: ...


class Pattern(Protocol):
    @property
    def groups(self) -> int: ...

    def fullmatch(self, string: str, /) -> Any: ...


try:
    _re2: Any = importlib.import_module("re2")
    _OPTIONS: Any = _re2.Options()
    _OPTIONS.log_errors = False  # a bad pattern is the caller's 400, not a line on stderr
    _OPTIONS.dot_nl = True
except ImportError:  # pragma: no cover - the binding ships wheels for the supported platforms
    _re2 = None


def compile_regex(pattern: str) -> Pattern:
    """`pattern` compiled with RE2's syntax and semantics; RegexError if it is not one."""
    if _re2 is not None:
        try:
            compiled: Pattern = _re2.compile(pattern, _OPTIONS)
        except _re2.error as exc:
            reason = exc.args[0] if exc.args else exc
            raise RegexError(reason.decode() if isinstance(reason, bytes) else str(reason)) from None
        return compiled
    try:
        return re.compile(re2_to_python(pattern), re.DOTALL)
    except re.error as exc:
        raise RegexError(str(exc)) from None


_POSIX_CLASSES = {
    "alnum": "0-9A-Za-z",
    "alpha": "A-Za-z",
    "ascii": "\\x00-\\x7F",
    "blank": "\\t ",
    "cntrl": "\\x00-\\x1F\\x7F",
    "digit": "0-9",
    "graph": "!-~",
    "lower": "a-z",
    "print": " -~",
    "punct": "!-/:-@[-`{-~",
    "space": "\\t\\n\\v\\f\\r ",
    "upper": "A-Z",
    "word": "0-9A-Za-z_",
    "xdigit": "0-9A-Fa-f",
}
_FLAGS_RE = re.compile(r"\(\?([imsU]+)\)")


def re2_to_python(pattern: str) -> str:
    """A Go (RE2) regular expression in Python's syntax, for what the two spell differently:
    flags set inside a group (`((?i)abc)`: Python wants flags at the start, or scoped as
    `(?i:...)`), POSIX classes (`[[:alpha:]]`) and `\\z`. Other syntax is the same in both."""
    if "(?" not in pattern and "[:" not in pattern and "\\z" not in pattern:
        return pattern
    out: list[str] = []
    # per open group (the whole pattern first): the scoped flag groups opened in it, still open
    scopes: list[list[str]] = [[]]
    i, n = 0, len(pattern)
    in_class = False
    while i < n:
        c = pattern[i]
        if c == "\\" and i + 1 < n:
            out.append("\\Z" if pattern[i + 1] == "z" and not in_class else pattern[i : i + 2])
            i += 2
            continue
        if in_class:
            if pattern.startswith("[:", i):
                end = pattern.find(":]", i + 2)
                body = _POSIX_CLASSES.get(pattern[i + 2 : end]) if end > 0 else None
                if body is not None:
                    out.append(body)
                    i = end + 2
                    continue
            if c == "]":
                in_class = False
            out.append(c)
            i += 1
            continue
        if c == "[":
            in_class = True
            out.append(c)
            i += 1
            if i < n and pattern[i] == "^":
                out.append("^")
                i += 1
            if i < n and pattern[i] == "]":  # a literal ] first in a class
                out.append("\\]")
                i += 1
            continue
        m = _FLAGS_RE.match(pattern, i)
        if m:
            flags = m.group(1).replace("U", "")
            if flags and not out:
                out.append(f"(?{flags})")  # at the very start: global, as Python wants them
            elif flags:
                out.append(f"(?{flags}:")  # RE2: until the end of the enclosing group
                scopes[-1].append(flags)
            i = m.end()
            continue
        if c == "(":
            scopes.append([])
        elif c == ")" and len(scopes) > 1:
            out.append(")" * len(scopes.pop()))
        elif c == "|" and scopes[-1]:  # the flags hold in every later alternative of the group
            out.append(")" * len(scopes[-1]) + "|" + "".join(f"(?{f}:" for f in scopes[-1]))
            i += 1
            continue
        out.append(c)
        i += 1
    out.append(")" * len(scopes[0]))
    return "".join(out)
