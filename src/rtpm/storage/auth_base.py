"""Users, API keys and refresh-token state: the records and their store (`AuthStore`), over
either backend's `Executor`. Always the primary on PostgreSQL: a revoked key must stop working at
once."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Any

from rtpm.errors import AlreadyExists
from rtpm.storage.sql import Executor


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


_USER_UPDATES = ("password_hash", "role", "disabled")


class AuthStore:
    def __init__(self, sql: Executor) -> None:
        self._sql = sql

    async def count_users(self) -> int:
        return int(await self._sql.fetchval("SELECT count(*) FROM users"))

    async def create_user(self, user: UserRecord) -> None:
        """Raises AlreadyExists when the user name is taken."""
        n = await self._sql.execute(
            f"INSERT INTO users ({USER_COLS}) VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT DO NOTHING",
            user.id,
            user.tenant,
            user.username,
            user.password_hash,
            user.role,
            user.disabled,
            user.created_ms,
        )
        if n == 0:
            raise AlreadyExists(f"user {user.username!r} exists already")

    async def get_user(self, user_id: str) -> UserRecord | None:
        row = await self._sql.fetchrow(f"SELECT {USER_COLS} FROM users WHERE id = $1", user_id)
        return user_from_row(row) if row else None

    async def get_user_by_name(self, username: str) -> UserRecord | None:
        row = await self._sql.fetchrow(f"SELECT {USER_COLS} FROM users WHERE username = $1", username)
        return user_from_row(row) if row else None

    async def list_users(self, tenant: str | None = None) -> list[UserRecord]:
        if tenant is None:
            rows = await self._sql.fetch(f"SELECT {USER_COLS} FROM users ORDER BY tenant, username")
        else:
            rows = await self._sql.fetch(f"SELECT {USER_COLS} FROM users WHERE tenant = $1 ORDER BY username", tenant)
        return [user_from_row(r) for r in rows]

    async def update_user(
        self, user_id: str, *, password_hash: str | None = None, role: str | None = None, disabled: bool | None = None
    ) -> bool:
        args: list[Any] = []
        sets: list[str] = []
        for col, value in zip(_USER_UPDATES, (password_hash, role, disabled), strict=True):
            if value is not None:
                args.append(value)
                sets.append(f"{col} = ${len(args)}")
        if not sets:
            return await self.get_user(user_id) is not None
        args.append(user_id)
        return await self._sql.execute(f"UPDATE users SET {', '.join(sets)} WHERE id = ${len(args)}", *args) > 0

    async def delete_user(self, user_id: str) -> bool:
        return await self._sql.execute("DELETE FROM users WHERE id = $1", user_id) > 0

    async def create_api_key(self, key: ApiKeyRecord) -> None:
        await self._sql.execute(
            f"INSERT INTO api_keys ({KEY_COLS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
            key.id,
            key.tenant,
            key.name,
            key.prefix,
            key.secret_hash,
            " ".join(sorted(key.scopes)),
            key.created_by,
            key.created_ms,
            key.expires_ms,
            key.revoked_ms,
        )

    async def get_api_key_by_hash(self, secret_hash: str) -> ApiKeyRecord | None:
        row = await self._sql.fetchrow(f"SELECT {KEY_COLS} FROM api_keys WHERE secret_hash = $1", secret_hash)
        return key_from_row(row) if row else None

    async def list_api_keys(self, tenant: str | None = None) -> list[ApiKeyRecord]:
        if tenant is None:
            rows = await self._sql.fetch(f"SELECT {KEY_COLS} FROM api_keys ORDER BY created_ms")
        else:
            rows = await self._sql.fetch(
                f"SELECT {KEY_COLS} FROM api_keys WHERE tenant = $1 ORDER BY created_ms", tenant
            )
        return [key_from_row(r) for r in rows]

    async def revoke_api_key(self, key_id: str, *, tenant: str | None, now_ms: int) -> bool:
        """Revoke the key `key_id` (of `tenant`, unless None); False when there is no such active key."""
        sql = "UPDATE api_keys SET revoked_ms = $1 WHERE id = $2 AND revoked_ms IS NULL"
        if tenant is None:
            return await self._sql.execute(sql, now_ms, key_id) > 0
        return await self._sql.execute(sql + " AND tenant = $3", now_ms, key_id, tenant) > 0

    async def add_refresh_token(self, token: RefreshTokenRecord) -> None:
        await self._sql.execute(
            "INSERT INTO refresh_tokens (jti, user_id, family, issued_ms, expires_ms) VALUES ($1, $2, $3, $4, $5)",
            token.jti,
            token.user_id,
            token.family,
            token.issued_ms,
            token.expires_ms,
        )

    async def use_refresh_token(self, jti: str, *, now_ms: int) -> RefreshUse:
        """Mark the token used, atomically; REUSED if it was used or revoked before."""
        n = await self._sql.execute(
            "UPDATE refresh_tokens SET used_ms = $1 WHERE jti = $2 AND used_ms IS NULL AND revoked_ms IS NULL",
            now_ms,
            jti,
        )
        if n == 1:
            return RefreshUse.OK
        exists = await self._sql.fetchval("SELECT 1 FROM refresh_tokens WHERE jti = $1", jti)
        return RefreshUse.REUSED if exists else RefreshUse.UNKNOWN

    async def revoke_refresh_family(self, family: str, *, now_ms: int) -> int:
        return await self._sql.execute(
            "UPDATE refresh_tokens SET revoked_ms = $1 WHERE family = $2 AND revoked_ms IS NULL", now_ms, family
        )

    async def revoke_user_refresh_tokens(self, user_id: str, *, now_ms: int) -> int:
        return await self._sql.execute(
            "UPDATE refresh_tokens SET revoked_ms = $1 WHERE user_id = $2 AND revoked_ms IS NULL", now_ms, user_id
        )
