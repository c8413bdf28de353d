"""The contract for users, API keys and refresh-token state (`AuthStore`), one implementation per
backend (`sqlite_auth.py`, `postgres_auth.py`) over the storage object's own connections."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Any, Protocol


@dataclass(frozen=True, slots=True)
class UserRecord:
    id: str
    tenant: str
    username: str
    password_hash: str
    role: str
    disabled: bool
    created_ms: int


@dataclass(frozen=True, slots=True)
class ApiKeyRecord:
    id: str
    tenant: str
    name: str
    prefix: str
    secret_hash: str
    scopes: frozenset[str]
    created_by: str
    created_ms: int
    expires_ms: int | None = None
    revoked_ms: int | None = None

    def active(self, now_ms: int) -> bool:
        return self.revoked_ms is None and (self.expires_ms is None or now_ms < self.expires_ms)


@dataclass(frozen=True, slots=True)
class RefreshTokenRecord:
    jti: str
    user_id: str
    family: str
    issued_ms: int
    expires_ms: int


class RefreshUse(Enum):
    OK = "ok"
    REUSED = "reused"  # already used or revoked: a stolen token replayed, revoke the family
    UNKNOWN = "unknown"


class AuthStore(Protocol):
    async def count_users(self) -> int: ...

    async def create_user(self, user: UserRecord) -> None:
        """Raises AlreadyExists when the user name is taken."""
        ...

    async def get_user(self, user_id: str) -> UserRecord | None: ...

    async def get_user_by_name(self, username: str) -> UserRecord | None: ...

    async def list_users(self, tenant: str | None = None) -> list[UserRecord]: ...

    async def update_user(
        self, user_id: str, *, password_hash: str | None = None, role: str | None = None, disabled: bool | None = None
    ) -> bool: ...

    async def delete_user(self, user_id: str) -> bool: ...

    async def create_api_key(self, key: ApiKeyRecord) -> None: ...

    async def get_api_key_by_hash(self, secret_hash: str) -> ApiKeyRecord | None: ...

    async def list_api_keys(self, tenant: str | None = None) -> list[ApiKeyRecord]: ...

    async def revoke_api_key(self, key_id: str, *, tenant: str | None, now_ms: int) -> bool:
        """Revoke the key `key_id` (of `tenant`, unless None); False when there is no such active key."""
        ...

    async def add_refresh_token(self, token: RefreshTokenRecord) -> None: ...

    async def use_refresh_token(self, jti: str, *, now_ms: int) -> RefreshUse:
        """Mark the token used, atomically; REUSED if it was used or revoked before."""
        ...

    async def revoke_refresh_family(self, family: str, *, now_ms: int) -> int: ...

    async def revoke_user_refresh_tokens(self, user_id: str, *, now_ms: int) -> int: ...


# Row shapes shared by the SQLite and PostgreSQL stores (same columns, same order).
USER_COLS = "id, tenant, username, password_hash, role, disabled, created_ms"
KEY_COLS = "id, tenant, name, prefix, secret_hash, scopes, created_by, created_ms, expires_ms, revoked_ms"


def user_from_row(row: Any) -> UserRecord:
    return UserRecord(row[0], row[1], row[2], row[3], row[4], bool(row[5]), int(row[6]))


def key_from_row(row: Any) -> ApiKeyRecord:
    return ApiKeyRecord(
        id=row[0],
        tenant=row[1],
        name=row[2],
        prefix=row[3],
        secret_hash=row[4],
        scopes=frozenset(row[5].split()),
        created_by=row[6],
        created_ms=int(row[7]),
        expires_ms=row[8],
        revoked_ms=row[9],
    )
