"""AuthStore on SQLite, through SqliteStorage's writer thread and reader pool."""

from __future__ import annotations

import sqlite3
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
from rtpm.storage.sqlite import SqliteStorage


class SqliteAuthStore:
    def __init__(self, storage: SqliteStorage) -> None:
        self._s = storage

    async def count_users(self) -> int:
        return int(await self._s._read(lambda c: c.execute("SELECT count(*) FROM users").fetchone()[0]))

    async def create_user(self, user: UserRecord) -> None:
        def run(conn: sqlite3.Connection) -> None:
            try:
                conn.execute(
                    f"INSERT INTO users ({USER_COLS}) VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (
                        user.id,
                        user.tenant,
                        user.username,
                        user.password_hash,
                        user.role,
                        int(user.disabled),
                        user.created_ms,
                    ),
                )
            except sqlite3.IntegrityError:
                raise AlreadyExists(f"user {user.username!r} exists already") from None

        await self._s._write(run)

    async def get_user(self, user_id: str) -> UserRecord | None:
        row = await self._s._read(
            lambda c: c.execute(f"SELECT {USER_COLS} FROM users WHERE id = ?", (user_id,)).fetchone()
        )
        return user_from_row(row) if row else None

    async def get_user_by_name(self, username: str) -> UserRecord | None:
        row = await self._s._read(
            lambda c: c.execute(f"SELECT {USER_COLS} FROM users WHERE username = ?", (username,)).fetchone()
        )
        return user_from_row(row) if row else None

    async def list_users(self, tenant: str | None = None) -> list[UserRecord]:
        def run(conn: sqlite3.Connection) -> list[Any]:
            if tenant is None:
                return conn.execute(f"SELECT {USER_COLS} FROM users ORDER BY tenant, username").fetchall()
            return conn.execute(
                f"SELECT {USER_COLS} FROM users WHERE tenant = ? ORDER BY username", (tenant,)
            ).fetchall()

        return [user_from_row(r) for r in await self._s._read(run)]

    async def update_user(
        self, user_id: str, *, password_hash: str | None = None, role: str | None = None, disabled: bool | None = None
    ) -> bool:
        sets: list[str] = []
        args: list[Any] = []
        for col, value in (("password_hash", password_hash), ("role", role)):
            if value is not None:
                sets.append(f"{col} = ?")
                args.append(value)
        if disabled is not None:
            sets.append("disabled = ?")
            args.append(int(disabled))
        if not sets:
            return await self.get_user(user_id) is not None
        sql = f"UPDATE users SET {', '.join(sets)} WHERE id = ?"
        return bool(await self._s._write(lambda c: c.execute(sql, (*args, user_id)).rowcount))

    async def delete_user(self, user_id: str) -> bool:
        return bool(await self._s._write(lambda c: c.execute("DELETE FROM users WHERE id = ?", (user_id,)).rowcount))

    async def create_api_key(self, key: ApiKeyRecord) -> None:
        await self._s._write(
            lambda c: c.execute(
                f"INSERT INTO api_keys ({KEY_COLS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
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
                ),
            )
        )

    async def get_api_key_by_hash(self, secret_hash: str) -> ApiKeyRecord | None:
        row = await self._s._read(
            lambda c: c.execute(f"SELECT {KEY_COLS} FROM api_keys WHERE secret_hash = ?", (secret_hash,)).fetchone()
        )
        return key_from_row(row) if row else None

    async def list_api_keys(self, tenant: str | None = None) -> list[ApiKeyRecord]:
        def run(conn: sqlite3.Connection) -> list[Any]:
            if tenant is None:
                return conn.execute(f"SELECT {KEY_COLS} FROM api_keys ORDER BY created_ms").fetchall()
            return conn.execute(
                f"SELECT {KEY_COLS} FROM api_keys WHERE tenant = ? ORDER BY created_ms", (tenant,)
            ).fetchall()

        return [key_from_row(r) for r in await self._s._read(run)]

    async def revoke_api_key(self, key_id: str, *, tenant: str | None, now_ms: int) -> bool:
        sql = "UPDATE api_keys SET revoked_ms = ? WHERE id = ? AND revoked_ms IS NULL"
        args: tuple[Any, ...] = (now_ms, key_id)
        if tenant is not None:
            sql += " AND tenant = ?"
            args += (tenant,)
        return bool(await self._s._write(lambda c: c.execute(sql, args).rowcount))

    async def add_refresh_token(self, token: RefreshTokenRecord) -> None:
        await self._s._write(
            lambda c: c.execute(
                "INSERT INTO refresh_tokens (jti, user_id, family, issued_ms, expires_ms) VALUES (?, ?, ?, ?, ?)",
                (token.jti, token.user_id, token.family, token.issued_ms, token.expires_ms),
            )
        )

    async def use_refresh_token(self, jti: str, *, now_ms: int) -> RefreshUse:
        def run(conn: sqlite3.Connection) -> RefreshUse:
            cur = conn.execute(
                "UPDATE refresh_tokens SET used_ms = ? WHERE jti = ? AND used_ms IS NULL AND revoked_ms IS NULL",
                (now_ms, jti),
            )
            if cur.rowcount == 1:
                return RefreshUse.OK
            row = conn.execute("SELECT 1 FROM refresh_tokens WHERE jti = ?", (jti,)).fetchone()
            return RefreshUse.REUSED if row else RefreshUse.UNKNOWN

        return await self._s._write(run)

    async def revoke_refresh_family(self, family: str, *, now_ms: int) -> int:
        return int(
            await self._s._write(
                lambda c: (
                    c.execute(
                        "UPDATE refresh_tokens SET revoked_ms = ? WHERE family = ? AND revoked_ms IS NULL",
                        (now_ms, family),
                    ).rowcount
                )
            )
        )

    async def revoke_user_refresh_tokens(self, user_id: str, *, now_ms: int) -> int:
        return int(
            await self._s._write(
                lambda c: (
                    c.execute(
                        "UPDATE refresh_tokens SET revoked_ms = ? WHERE user_id = ? AND revoked_ms IS NULL",
                        (now_ms, user_id),
                    ).rowcount
                )
            )
        )


if TYPE_CHECKING:
    _: type[AuthStore] = SqliteAuthStore
