"""Versioned schema migrations, one folder of `NNNN_name.sql` files per backend."""

from __future__ import annotations

from importlib import resources


def load(backend: str) -> list[tuple[int, str, str]]:
    """(version, name, sql) of every migration of `backend`, in version order."""
    out = []
    for entry in resources.files(__package__).joinpath(backend).iterdir():
        if entry.name.endswith(".sql"):
            version = int(entry.name.split("_", 1)[0])
            out.append((version, entry.name, entry.read_text()))
    out.sort()
    return out


def statements(sql: str) -> list[str]:
    """Split a migration into statements: `--` comments dropped, then split on `;`."""
    lines = [line.split("--", 1)[0] for line in sql.splitlines()]
    return [s.strip() for s in "\n".join(lines).split(";") if s.strip()]
