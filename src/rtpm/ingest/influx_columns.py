"""InfluxDB line protocol, column by column: the fast path for the common bodies.

Most bodies are plain: no escapes, strings, comments, blank lines or extra blanks, every line
`head fields [timestamp]`. These are cut into columns with str.split over the whole body (heads,
field keys, raw values, timestamps), each column converted in one pass and each distinct series
resolved once, so no line is parsed on its own. Anything else, and any problem at all, answers
None: the decoder (`rtpm.ingest.influx`) then runs the line parser (`rtpm.ingest.influx_parse`),
which reports errors exactly. Either way the batch is the same.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from itertools import repeat
from typing import cast

from rtpm.ingest.batching import BatchBuilder
from rtpm.ingest.influx_parse import TS_RE, LineError, field_value, plain_tags
from rtpm.model.labels import Labels
from rtpm.model.samples import WriteBatch

__all__ = ["LabelsOf", "column_timestamps", "column_values", "decode_plain", "decode_single", "plain_lines"]

# (builder, measurement, tags, field, db, line number) -> the series' Labels (validated), None if invalid
LabelsOf = Callable[[BatchBuilder, str, list[tuple[str, str]], str, str | None, int | None], Labels | None]

# Characters that send a body to the general parser: escapes, strings, comments, CR and tabs.
_UNUSUAL = ("\\", '"', "#", "\r", "\t")


def plain_lines(text: str) -> list[str] | None:
    """The lines of a body the column-wise decoders can take (none of `_UNUSUAL`, no empty body),
    or None."""
    for c in _UNUSUAL:
        if c in text:
            return None
    lines = text.split("\n")
    if lines[-1] == "":
        lines.pop()
    return lines or None


# A column of plain floats (one a line) has nothing but these; float() of such text takes exactly the float syntax of influx_parse.
_NOT_FLOAT_CHAR = re.compile(r"[^0-9.eE+\-\n]")
_INF, _NINF = float("inf"), float("-inf")


def column_values(raws: list[str]) -> list[float] | None:
    """Sample values of a column of raw field values without strings; None if any is invalid."""
    joined = "\n".join(raws)
    if _NOT_FLOAT_CHAR.search(joined) is None:
        values = list(map(float, raws))
        if _INF in values or _NINF in values:
            return None
        return values
    if "," in joined or "=" in joined:
        return None
    try:
        out = [field_value(raw, 0) for raw in raws]
    except LineError:
        return None
    return None if None in out else cast(list[float], out)  # None: a string field (not in plain bodies)


def column_timestamps(
    stamps: list[str] | None, n: int, now_ms: int, mul: int, div: int, lo: int, hi: int
) -> list[int] | None:
    """Epoch ms of a column of raw timestamps (None: the server's time); None if any is invalid or
    outside the accepted window. Each distinct timestamp is converted once."""
    if stamps is None:
        return [now_ms] * n if lo <= now_ms <= hi else None
    ms_of: dict[str, int] = {}
    for stamp in dict.fromkeys(stamps):
        if not TS_RE.fullmatch(stamp):
            return None
        ms = int(stamp) * mul // div
        if not lo <= ms <= hi:
            return None
        ms_of[stamp] = ms
    return list(map(ms_of.__getitem__, stamps))


def decode_single(
    text: str,
    new_builder: Callable[[], BatchBuilder],
    known: Mapping[str, Labels],
    labels_of: LabelsOf,
    *,
    now_ms: int,
    mul: int,
    div: int,
    db: str | None,
) -> tuple[WriteBatch, dict[str, Labels]] | None:
    """The most common body, fastest: like `_decode_plain`, but every line has ONE field, so
    a line is `key=value timestamp` where key (measurement, tags and field name) names the
    series; known keys map straight to Labels. None: let `_decode_plain` or the parser decide."""
    lines = plain_lines(text)
    if lines is None:
        return None
    n = len(lines)
    keys, eqs, rests = zip(*map(str.rpartition, lines, repeat("=")), strict=True)
    if "" in eqs:
        return None
    spaces = list(map(str.count, rests, repeat(" ")))
    if spaces.count(1) == n:
        cells = " ".join(rests).split(" ")
        raws, stamps = cells[0::2], cells[1::2]
    elif spaces.count(0) == n:
        cells, raws, stamps = list(rests), list(rests), None
    else:
        return None
    if "" in cells:
        return None
    b = new_builder()
    values = column_values(raws)
    if values is None:
        return None
    ts_col = column_timestamps(stamps, n, now_ms, mul, div, b.lo_ms, b.hi_ms)
    if ts_col is None:
        return None
    found_col = list(map(known.get, keys))
    fresh: dict[str, Labels] = {}
    if None in found_col:
        for key in dict.fromkeys(k for k, found in zip(keys, found_col, strict=True) if found is None):
            head, space, field = key.partition(" ")
            if not space or not field or " " in field or "," in field or "=" in field:
                return None  # several fields on a line, or not a line at all
            tags = plain_tags(head)
            if tags is None:
                return None
            made = labels_of(b, tags[0], tags[1], field, db, None)
            if made is None:
                return None
            fresh[key] = made
        labels_col = [found or fresh[k] for k, found in zip(keys, found_col, strict=True)]
    else:
        labels_col = cast(list[Labels], found_col)  # no None in it
    b.batch.append_columns(labels_col, ts_col, values)
    return b.finish(), fresh


def decode_plain(
    text: str,
    new_builder: Callable[[], BatchBuilder],
    known: Mapping[tuple[str, str, str], Labels],
    labels_of: LabelsOf,
    *,
    now_ms: int,
    mul: int,
    div: int,
    db: str | None,
) -> tuple[WriteBatch, dict[tuple[str, str, str], Labels]] | None:
    """The common body, decoded column by column: every line `head fields timestamp` (or every
    line without a timestamp), no escapes, strings, comments, blank lines or extra blanks.
    Returns None for anything else and for any problem at all: the decoder's line-by-line parser
    then decides, and reports errors exactly. The batch is the one that parser would build, with
    the (db, head, field) keys met for the first time."""
    lines = plain_lines(text)
    if lines is None:
        return None
    n = len(lines)
    spaces = list(map(str.count, lines, repeat(" ")))
    if spaces.count(2) == n:
        flat = " ".join(lines).split(" ")
        heads, fields, stamps = flat[0::3], flat[1::3], flat[2::3]
    elif spaces.count(1) == n:
        flat = " ".join(lines).split(" ")
        heads, fields, stamps = flat[0::2], flat[1::2], None
    else:
        return None
    if "" in flat:
        return None
    joined = "\n".join(fields)
    if "," not in joined and list(map(str.count, fields, repeat("="))).count(1) == n:
        kv = joined.replace("\n", "=").split("=")
        keys, raws = kv[0::2], kv[1::2]
        if "" in kv:
            return None
    else:  # several fields on a line: one row per field
        row_heads: list[str] = []
        row_stamps: list[str] = []
        keys, raws = [], []
        for i, text_fields in enumerate(fields):
            for item in text_fields.split(","):
                k, _, v = item.partition("=")
                if not k or not v or "=" in v:
                    return None
                keys.append(k)
                raws.append(v)
                row_heads.append(heads[i])
                if stamps is not None:
                    row_stamps.append(stamps[i])
        heads = row_heads
        if stamps is not None:
            stamps = row_stamps
    b = new_builder()
    values = column_values(raws)
    if values is None:
        return None
    ts_col = column_timestamps(stamps, len(raws), now_ms, mul, div, b.lo_ms, b.hi_ms)
    if ts_col is None:
        return None
    # Series: each distinct (db, head, field) resolved once, from the cache when seen before.
    fresh: dict[tuple[str, str, str], Labels] = {}
    batch = b.batch
    ref_of: dict[tuple[str, str, str], int] = {}
    row_keys = list(zip(repeat(db or ""), heads, keys, strict=False))
    for key in dict.fromkeys(row_keys):
        labels = known.get(key)
        if labels is None:
            tags = plain_tags(key[1])
            if tags is None:
                return None
            made = labels_of(b, tags[0], tags[1], key[2], db, None)
            if made is None:
                return None
            labels = fresh[key] = made
        ref_of[key] = batch.ref(labels)
    batch.append_refs(list(map(ref_of.__getitem__, row_keys)), ts_col, values)
    return b.finish(), fresh
