"""AuthStore on PostgreSQL, through PostgresStorage's connection pool (`_conn`, which maps driver
errors to RTPM errors)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from rtpm.errors import AlreadyExists
from rtpm.storage.auth_base import (
    KEY_COLS,
    USER_COLS,
    ApiKeyRecord,
    AuthStore,
    RefreshTokenRecord,
    RefreshUse,
    UserRecord,
    key_from_row,
    user_from_row,
)
from rtpm.storage.postgres import PostgresStorage


def _count(status: str) -> int:
    """Rows touched, from asyncpg's status string ("UPDATE 3")."""
    try:
        return int(status.rsplit(" ", 1)[-1])
    except ValueError:
        return 0


class PostgresAuthStore:
    def __init__(self, storage: PostgresStorage) -> None:
        self._s = storage

    async def count_users(self) -> int:
        async with self._s._conn() as conn:
            return int(await conn.fetchval("SELECT count(*) FROM users"))

    async def create_user(self, user: UserRecord) -> None:
        async with self._s._conn() as conn:
            status = await conn.execute(
                f"INSERT INTO users ({USER_COLS}) VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT DO NOTHING",
                user.id,
                user.tenant,
                user.username,
                user.password_hash,
                user.role,
                user.disabled,
                user.created_ms,
            )
        if _count(status) == 0:
            raise AlreadyExists(f"user {user.username!r} exists already")

    async def get_user(self, user_id: str) -> UserRecord | None:
        async with self._s._conn() as conn:
            row = await conn.fetchrow(f"SELECT {USER_COLS} FROM users WHERE id = $1", user_id)
        return user_from_row(row) if row else None

    async def get_user_by_name(self, username: str) -> UserRecord | None:
        async with self._s._conn() as conn:
            row = await conn.fetchrow(f"SELECT {USER_COLS} FROM users WHERE username = $1", username)
        return user_from_row(row) if row else None

    async def list_users(self, tenant: str | None = None) -> list[UserRecord]:
        async with self._s._conn() as conn:
            if tenant is None:
                rows = await conn.fetch(f"SELECT {USER_COLS} FROM users ORDER BY tenant, username")
            else:
                rows = await conn.fetch(f"SELECT {USER_COLS} FROM users WHERE tenant = $1 ORDER BY username", tenant)
        return [user_from_row(r) for r in rows]

    async def update_user(
        self, user_id: str, *, password_hash: str | None = None, role: str | None = None, disabled: bool | None = None
    ) -> bool:
        sets: list[str] = []
        args: list[Any] = []
        for col, value in (("password_hash", password_hash), ("role", role), ("disabled", disabled)):
            if value is not None:
                args.append(value)
                sets.append(f"{col} = ${len(args)}")
        if not sets:
            return await self.get_user(user_id) is not None
        args.append(user_id)
        async with self._s._conn() as conn:
            status = await conn.execute(f"UPDATE users SET {', '.join(sets)} WHERE id = ${len(args)}", *args)
        return _count(status) > 0

    async def delete_user(self, user_id: str) -> bool:
        async with self._s._conn() as conn:
            return _count(await conn.execute("DELETE FROM users WHERE id = $1", user_id)) > 0

    async def create_api_key(self, key: ApiKeyRecord) -> None:
        async with self._s._conn() as conn:
            await conn.execute(
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
        async with self._s._conn() as conn:
            row = await conn.fetchrow(f"SELECT {KEY_COLS} FROM api_keys WHERE secret_hash = $1", secret_hash)
        return key_from_row(row) if row else None

    async def list_api_keys(self, tenant: str | None = None) -> list[ApiKeyRecord]:
        async with self._s._conn() as conn:
            if tenant is None:
                rows = await conn.fetch(f"SELECT {KEY_COLS} FROM api_keys ORDER BY created_ms")
            else:
                rows = await conn.fetch(
                    f"SELECT {KEY_COLS} FROM api_keys WHERE tenant = $1 ORDER BY created_ms", tenant
                )
        return [key_from_row(r) for r in rows]

    async def revoke_api_key(self, key_id: str, *, tenant: str | None, now_ms: int) -> bool:
        async with self._s._conn() as conn:
            status = await conn.execute(
                "UPDATE api_keys SET revoked_ms = $1 WHERE id = $2 AND revoked_ms IS NULL "
                "AND ($3::text IS NULL OR tenant = $3)",
                now_ms,
                key_id,
                tenant,
            )
        return _count(status) > 0

    async def add_refresh_token(self, token: RefreshTokenRecord) -> None:
        async with self._s._conn() as conn:
            await conn.execute(
                "INSERT INTO refresh_tokens (jti, user_id, family, issued_ms, expires_ms) VALUES ($1, $2, $3, $4, $5)",
                token.jti,
                token.user_id,
                token.family,
                token.issued_ms,
                token.expires_ms,
            )

    async def use_refresh_token(self, jti: str, *, now_ms: int) -> RefreshUse:
        async with self._s._conn() as conn:
            status = await conn.execute(
                "UPDATE refresh_tokens SET used_ms = $1 WHERE jti = $2 AND used_ms IS NULL AND revoked_ms IS NULL",
                now_ms,
                jti,
            )
            if _count(status) == 1:
                return RefreshUse.OK
            exists = await conn.fetchval("SELECT 1 FROM refresh_tokens WHERE jti = $1", jti)
        return RefreshUse.REUSED if exists else RefreshUse.UNKNOWN

    async def revoke_refresh_family(self, family: str, *, now_ms: int) -> int:
        async with self._s._conn() as conn:
            return _count(
                await conn.execute(
                    "UPDATE refresh_tokens SET revoked_ms = $1 WHERE family = $2 AND revoked_ms IS NULL", now_ms, family
                )
            )

    async def revoke_user_refresh_tokens(self, user_id: str, *, now_ms: int) -> int:
        async with self._s._conn() as conn:
            return _count(
                await conn.execute(
                    "UPDATE refresh_tokens SET revoked_ms = $1 WHERE user_id = $2 AND revoked_ms IS NULL",
                    now_ms,
                    user_id,
                )
            )


if TYPE_CHECKING:
    _: type[AuthStore] = PostgresAuthStore
