"""Fault injection for the durability tests: `RTPM_TEST_FAULT=<point>` (read once, at import, and
only with `RTPM_ENVIRONMENT=test`) makes the process SIGKILL itself when it reaches that point, so
a test can kill it exactly between two steps of the head engine's cut, which a kill from outside
hits only by luck. Points:

- `cut:after_chunks`: the cut's chunks are written, the cut not raised, no WAL record deleted;
- `cut:mid_truncate`: the oldest half of the WAL records the cut removes are deleted, not the rest.

Nothing happens when the variable is unset (always, outside tests)."""

from __future__ import annotations

import os
import signal
import sys

_POINT = os.environ.get("RTPM_TEST_FAULT", "") if os.environ.get("RTPM_ENVIRONMENT") == "test" else ""


def armed(point: str) -> bool:
    return _POINT == point


def reached(point: str) -> None:
    """SIGKILL this process if `point` is the armed one (after saying so on stderr)."""
    if _POINT == point:
        print(f"rtpm test fault {point}: SIGKILL", file=sys.stderr, flush=True)
        os.kill(os.getpid(), signal.SIGKILL)
