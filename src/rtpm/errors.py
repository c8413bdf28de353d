"""The RTPM error hierarchy. Only `rtpm.api.errors` maps these to HTTP.

RtpmError
├── BadDataError            input that can never be accepted (validation, bad matcher, bad query)
│   ├── ValidationFailed    a request with one or more invalid items; carries every problem
│   ├── LimitExceeded       input over a configured limit (points per series, items per batch, ...)
│   │   └── PartialWrite    a write stored but for the samples past a limit; carries how many
│   └── QueryParseError     PromQL that does not parse
├── NotFoundError           a named thing that does not exist
├── AlreadyExists           a named thing that exists already (a user name)
├── AuthError               the caller may not do this
│   ├── Unauthenticated     no credential, or one that is invalid, expired or revoked
│   └── PermissionDenied    a valid credential without the scope the route needs
├── RateLimited             over a rate limit; carries retry_after_seconds and the limit's state
├── ConfigError             settings that RTPM refuses to start with (a weak JWT secret)
├── OverloadedError         bounded work refused (write buffer full); carries retry_after_seconds
├── StorageError            the storage backend failed
│   └── StorageUnavailable  the backend cannot be reached; retry later
└── QueryError              a query that parsed but could not be evaluated
    ├── QueryTimeout
    ├── QueryCanceled
    └── TooManySamples
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


class RtpmError(Exception):
    """Root of every error RTPM raises on purpose."""

    code = "internal"

    def __init__(self, message: str, *, details: Any = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details

    def __str__(self) -> str:
        return self.message


class BadDataError(RtpmError):
    code = "bad_data"


@dataclass(frozen=True, slots=True)
class Problem:
    """One thing wrong with one input item: where (`index`, `field`) and why."""

    field: str
    reason: str
    index: int | None = None

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"field": self.field, "reason": self.reason}
        if self.index is not None:
            out["index"] = self.index
        return out


class ValidationFailed(BadDataError):
    """A request with invalid items; `problems` lists every one (index, field, reason)."""

    code = "validation_failed"

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        first = problems[0] if problems else None
        where = ""
        if first is not None:
            where = f"item {first.index}: " if first.index is not None else ""
            where += f"{first.field}: {first.reason}"
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        super().__init__(f"invalid input: {where}{more}", details=[p.as_dict() for p in problems])


class LimitExceeded(BadDataError):
    code = "limit_exceeded"


class PartialWrite(LimitExceeded):
    """A write that was stored but for some samples, refused past a limit (the head engine's
    active series): the push protocols' partial write, a 4xx a sender does not retry as is."""

    code = "partial_write"

    def __init__(self, message: str, *, refused_samples: int) -> None:
        super().__init__(message)
        self.refused_samples = refused_samples


class PayloadTooLarge(LimitExceeded):
    code = "payload_too_large"


class UnsupportedMediaType(BadDataError):
    code = "unsupported_media_type"


class QueryParseError(BadDataError):
    code = "bad_data"


class NotFoundError(RtpmError):
    code = "not_found"


class AlreadyExists(RtpmError):
    code = "already_exists"


class AuthError(RtpmError):
    code = "forbidden"


class Unauthenticated(AuthError):
    code = "unauthorized"


class PermissionDenied(AuthError):
    code = "forbidden"


class RateLimited(RtpmError):
    """Over a rate limit. `limit`/`remaining`/`reset_epoch_seconds` describe the budget hit."""

    code = "rate_limited"

    def __init__(
        self, message: str, *, retry_after_seconds: float, limit: int, remaining: int, reset_epoch_seconds: float
    ) -> None:
        super().__init__(message)
        self.retry_after_seconds = retry_after_seconds
        self.limit = limit
        self.remaining = remaining
        self.reset_epoch_seconds = reset_epoch_seconds


class ConfigError(RtpmError):
    code = "config_error"


class OverloadedError(RtpmError):
    code = "overloaded"

    def __init__(self, message: str, *, retry_after_seconds: float = 1.0) -> None:
        super().__init__(message)
        self.retry_after_seconds = retry_after_seconds


class StorageError(RtpmError):
    code = "storage_error"


class StorageUnavailable(StorageError):
    code = "storage_unavailable"


class QueryError(RtpmError):
    code = "execution"


class QueryTimeout(QueryError):
    code = "timeout"


class QueryCanceled(QueryError):
    code = "canceled"


class TooManySamples(QueryError):
    code = "execution"
