"""Scopes and the roles that grant them."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Final, Literal

from rtpm.errors import BadDataError

METRICS_WRITE: Final = "metrics:write"
METRICS_READ: Final = "metrics:read"
ALERTS_READ: Final = "alerts:read"
ALERTS_WRITE: Final = "alerts:write"
ADMIN: Final = "admin"

ALL_SCOPES: Final[frozenset[str]] = frozenset({METRICS_WRITE, METRICS_READ, ALERTS_READ, ALERTS_WRITE, ADMIN})

Role = Literal["admin", "editor", "viewer"]

ROLE_SCOPES: Final[dict[str, frozenset[str]]] = {
    "admin": ALL_SCOPES,
    "editor": frozenset({METRICS_WRITE, METRICS_READ, ALERTS_READ, ALERTS_WRITE}),
    "viewer": frozenset({METRICS_READ, ALERTS_READ}),
}


def scopes_of_role(role: str) -> frozenset[str]:
    try:
        return ROLE_SCOPES[role]
    except KeyError:
        raise BadDataError(f"role: unknown role {role!r}; one of {', '.join(sorted(ROLE_SCOPES))}") from None


def check_scopes(scopes: Iterable[str]) -> frozenset[str]:
    """The scopes as a set; BadDataError naming any unknown one."""
    out = frozenset(scopes)
    unknown = sorted(out - ALL_SCOPES)
    if unknown:
        raise BadDataError(f"scopes: unknown scope(s) {', '.join(unknown)}; known: {', '.join(sorted(ALL_SCOPES))}")
    if not out:
        raise BadDataError("scopes: give at least one scope")
    return out
