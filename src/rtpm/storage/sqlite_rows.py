"""How SQLite rows hold what both SqliteStorage and SqliteMaintenance read: a sample's value (a
NaN's exact bits kept beside it, since SQLite stores NaN as NULL) and the head engine's cut."""

from __future__ import annotations

import sqlite3
import struct

from rtpm.storage._engine import HEAD_CUT


def nan_bits(value: float) -> int:
    return int(struct.unpack("<q", struct.pack("<d", value))[0])


def from_bits(bits: int) -> float:
    return float(struct.unpack("<d", struct.pack("<q", bits))[0])


def sample_value(value: float | None, bits: int | None) -> float:
    """A sample's value from its row: the float, or (NULL for a NaN) the NaN of its bits."""
    return value if value is not None else from_bits(bits or 0)


def cut_until(conn: sqlite3.Connection) -> int | None:
    """The head engine's cut (maintenance_state), None before the first."""
    row = conn.execute("SELECT value FROM maintenance_state WHERE name = ?", (HEAD_CUT,)).fetchone()
    return None if row is None else int(row[0])
