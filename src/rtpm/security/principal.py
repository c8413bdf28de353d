"""Who is calling: the tenant, the subject (user or API key id), how they proved it, their scopes."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

PrincipalKind = Literal["user", "api_key", "anonymous_dev", "anonymous"]


@dataclass(frozen=True, slots=True)
class Principal:
    tenant: str
    subject: str
    kind: PrincipalKind
    scopes: frozenset[str]
    name: str = ""

    def has(self, scope: str) -> bool:
        return scope in self.scopes

    @property
    def rate_key(self) -> str:
        """The identity rate limits count against."""
        return f"{self.kind}:{self.subject}"
