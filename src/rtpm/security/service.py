"""AuthService: users, login, refresh, API keys, and turning a credential into a Principal.

It holds an AuthStore (storage), a TokenService and the RateLimiter (login throttling). It knows
nothing about HTTP: `api/auth.py` extracts the credential from a request and calls `authenticate`.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

import structlog

from rtpm.errors import BadDataError, NotFoundError, RateLimited, Unauthenticated
from rtpm.security import apikeys, passwords
from rtpm.security.principal import Principal
from rtpm.security.ratelimit import RateDecision, RateLimiter
from rtpm.security.scopes import check_scopes, scopes_of_role
from rtpm.security.tokens import TokenService
from rtpm.storage.auth_base import ApiKeyRecord, AuthStore, RefreshTokenRecord, RefreshUse, UserRecord

log = structlog.get_logger("rtpm.security")

_CACHE_MAX = 10_000
_MAX_EXPIRY_MS = 253_402_300_799_999  # 9999-12-31T23:59:59.999Z


@dataclass(frozen=True, slots=True)
class TokenPair:
    access_token: str
    refresh_token: str
    expires_in: int
    token_type: str = "bearer"


@dataclass(frozen=True, slots=True)
class CreatedKey:
    key: str  # the secret, shown once
    record: ApiKeyRecord


K = TypeVar("K")
V = TypeVar("V")


class _TtlCache(Generic[K, V]):
    def __init__(self, ttl_seconds: float) -> None:
        self.ttl = ttl_seconds
        self._items: dict[K, tuple[float, V]] = {}

    def get(self, key: K) -> V | None:
        hit = self._items.get(key)
        if hit is None or hit[0] < time.monotonic():
            return None
        return hit[1]

    def put(self, key: K, value: V) -> None:
        if self.ttl <= 0:
            return
        if len(self._items) >= _CACHE_MAX:
            self._items.clear()
        self._items[key] = (time.monotonic() + self.ttl, value)

    def clear(self) -> None:
        self._items.clear()


class AuthService:
    def __init__(
        self,
        store: AuthStore,
        tokens: TokenService,
        *,
        limiter: RateLimiter,
        cache_seconds: float = 5.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.tokens = tokens
        self.limiter = limiter
        self.clock = clock
        self._keys: _TtlCache[str, ApiKeyRecord] = _TtlCache(cache_seconds)
        self._users: _TtlCache[str, UserRecord] = _TtlCache(cache_seconds)

    def _now_ms(self) -> int:
        return int(self.clock() * 1000)

    # -- users ---------------------------------------------------------------------------------

    async def ensure_admin(self, *, tenant: str, username: str, password: str | None) -> str | None:
        """On first start (no user at all) create an admin. Returns the password when it was generated."""
        if await self.store.count_users() > 0:
            return None
        generated = password is None
        secret = passwords.random_password() if password is None else password
        await self.create_user(tenant=tenant, username=username, password=secret, role="admin")
        log.info("admin_created", username=username, tenant=tenant, password_generated=generated)
        return secret if generated else None

    async def create_user(self, *, tenant: str, username: str, password: str, role: str) -> UserRecord:
        if not username or len(username) > 128 or not username.isprintable() or username != username.strip():
            raise BadDataError("username: 1 to 128 printable characters, no surrounding spaces")
        if not tenant or len(tenant) > 128 or not tenant.isprintable():
            raise BadDataError("tenant: 1 to 128 printable characters")
        scopes_of_role(role)
        passwords.check_password_policy(password)
        password_hash = await asyncio.to_thread(passwords.hash_password, password)
        user = UserRecord(uuid.uuid4().hex, tenant, username, password_hash, role, False, self._now_ms())
        await self.store.create_user(user)
        return user

    async def get_user_by_name_or_raise(self, username: str) -> UserRecord:
        user = await self.store.get_user_by_name(username)
        if user is None:
            raise NotFoundError(f"no user {username!r}")
        return user

    async def set_password(self, username: str, password: str) -> None:
        user = await self.get_user_by_name_or_raise(username)
        passwords.check_password_policy(password)
        password_hash = await asyncio.to_thread(passwords.hash_password, password)
        await self.store.update_user(user.id, password_hash=password_hash)
        await self.store.revoke_user_refresh_tokens(user.id, now_ms=self._now_ms())
        self._users.clear()

    async def update_user(self, username: str, *, role: str | None = None, disabled: bool | None = None) -> None:
        user = await self.get_user_by_name_or_raise(username)
        if role is not None:
            scopes_of_role(role)
        await self.store.update_user(user.id, role=role, disabled=disabled)
        if disabled:
            await self.store.revoke_user_refresh_tokens(user.id, now_ms=self._now_ms())
        self._users.clear()

    async def delete_user(self, username: str) -> None:
        user = await self.get_user_by_name_or_raise(username)
        await self.store.delete_user(user.id)
        await self.store.revoke_user_refresh_tokens(user.id, now_ms=self._now_ms())
        self._users.clear()

    # -- login and refresh ---------------------------------------------------------------------

    async def _throttled(self, username: str, client_ip: str) -> None:
        checks: list[RateDecision] = [
            await self.limiter.peek("login_per_user", _user_at(username, client_ip)),
            await self.limiter.peek("login_per_ip", client_ip),
        ]
        for d in checks:
            if not d.allowed:
                raise RateLimited(
                    "too many failed logins; try again later",
                    retry_after_seconds=d.retry_after_seconds,
                    limit=d.limit,
                    remaining=0,
                    reset_epoch_seconds=d.reset_epoch_seconds,
                )

    async def login(self, username: str, password: str, *, client_ip: str) -> TokenPair:
        """Tokens for a user name and password. Failed attempts are counted per (user name, client
        IP) and per client IP; past either budget attempts from that address are refused (429) until
        the window moves on. Nothing is counted per user name alone, so wrong passwords sprayed from
        one address cannot lock the user out from another."""
        if self.limiter.enabled:
            await self._throttled(username, client_ip)
        user = await self.store.get_user_by_name(username) if len(username) <= 128 else None
        ok = await asyncio.to_thread(passwords.verify_password, user.password_hash if user else None, password)
        if user is None or not ok or user.disabled:
            if self.limiter.enabled:
                await self.limiter.hit("login_per_user", _user_at(username, client_ip))
                await self.limiter.hit("login_per_ip", client_ip)
            log.info("login_failed", username_known=user is not None)
            raise Unauthenticated("invalid user name or password")
        if passwords.needs_rehash(user.password_hash):
            new_hash = await asyncio.to_thread(passwords.hash_password, password)
            await self.store.update_user(user.id, password_hash=new_hash)
        if self.limiter.enabled:
            await self.limiter.clear("login_per_user", _user_at(username, client_ip))
        return await self._issue(user, family=uuid.uuid4().hex)

    async def _issue(self, user: UserRecord, *, family: str) -> TokenPair:
        access = self.tokens.issue_access(
            subject=user.id, tenant=user.tenant, scopes=scopes_of_role(user.role), name=user.username
        )
        refresh, claims = self.tokens.issue_refresh(subject=user.id, tenant=user.tenant, family=family)
        await self.store.add_refresh_token(
            RefreshTokenRecord(claims.token_id, user.id, family, self._now_ms(), int(claims.expires_at * 1000))
        )
        return TokenPair(access, refresh, int(self.tokens.access_ttl_seconds))

    async def refresh(self, refresh_token: str) -> TokenPair:
        """New tokens for a refresh token, which is then spent. Presenting a spent one again (a
        replay) revokes every token descended from the same login."""
        claims = self.tokens.decode(refresh_token, expected="refresh")
        if claims.family is None:
            raise Unauthenticated("invalid token: refresh token without a family")
        now_ms = self._now_ms()
        use = await self.store.use_refresh_token(claims.token_id, now_ms=now_ms)
        if use is RefreshUse.REUSED:
            revoked = await self.store.revoke_refresh_family(claims.family, now_ms=now_ms)
            log.warning("refresh_token_reused", user_id=claims.subject, revoked=revoked)
            raise Unauthenticated("refresh token was already used; this login is revoked, log in again")
        if use is RefreshUse.UNKNOWN:
            raise Unauthenticated("unknown refresh token")
        user = await self.store.get_user(claims.subject)
        if user is None or user.disabled or user.tenant != claims.tenant:
            raise Unauthenticated("the user of this token no longer exists or is disabled")
        return await self._issue(user, family=claims.family)

    # -- API keys ------------------------------------------------------------------------------

    async def create_api_key(
        self,
        *,
        tenant: str,
        name: str,
        scopes: list[str] | frozenset[str],
        created_by: str,
        expires_ms: int | None = None,
    ) -> CreatedKey:
        checked = check_scopes(scopes)
        if not name or len(name) > 200 or not name.isprintable():
            raise BadDataError("name: 1 to 200 printable characters")
        if expires_ms is not None and expires_ms <= self._now_ms():
            raise BadDataError("expires_at: must be in the future")
        if expires_ms is not None and expires_ms > _MAX_EXPIRY_MS:
            raise BadDataError("expires_at: must be before the year 10000")
        new = apikeys.generate_key()
        record = ApiKeyRecord(
            id=new.key_id,
            tenant=tenant,
            name=name,
            prefix=new.prefix,
            secret_hash=new.secret_hash,
            scopes=checked,
            created_by=created_by,
            created_ms=self._now_ms(),
            expires_ms=expires_ms,
        )
        await self.store.create_api_key(record)
        log.info("api_key_created", key_id=record.id, tenant=tenant, scopes=sorted(checked))
        return CreatedKey(new.key, record)

    async def revoke_api_key(self, key_id: str, *, tenant: str | None) -> None:
        if not await self.store.revoke_api_key(key_id, tenant=tenant, now_ms=self._now_ms()):
            raise NotFoundError(f"no active API key {key_id!r}")
        self._keys.clear()
        log.info("api_key_revoked", key_id=key_id)

    # -- credentials ---------------------------------------------------------------------------

    async def authenticate(self, credential: str) -> Principal:
        """The Principal a bearer credential (API key or access token) stands for; Unauthenticated otherwise."""
        if apikeys.looks_like_key(credential):
            return await self._authenticate_key(credential)
        if credential.count(".") == 2:
            return await self._authenticate_token(credential)
        raise Unauthenticated("invalid credential: neither an API key nor an access token")

    async def _authenticate_key(self, key: str) -> Principal:
        digest = apikeys.hash_key(key)
        record = self._keys.get(digest)
        if record is None:
            record = await self.store.get_api_key_by_hash(digest)
            if record is None:
                raise Unauthenticated("invalid API key")
            self._keys.put(digest, record)
        now_ms = self._now_ms()
        if record.revoked_ms is not None:
            raise Unauthenticated("API key has been revoked")
        if record.expires_ms is not None and now_ms >= record.expires_ms:
            raise Unauthenticated("API key has expired")
        return Principal(record.tenant, record.id, "api_key", record.scopes, record.name)

    async def _authenticate_token(self, token: str) -> Principal:
        claims = self.tokens.decode(token, expected="access")
        user = self._users.get(claims.subject)
        if user is None:
            user = await self.store.get_user(claims.subject)
            if user is None:
                raise Unauthenticated("the user of this token no longer exists")
            self._users.put(claims.subject, user)
        if user.disabled or user.tenant != claims.tenant:
            raise Unauthenticated("the user of this token is disabled")
        # Scopes are the token's, narrowed to what the user's role grants now.
        scopes = claims.scopes & scopes_of_role(user.role)
        return Principal(user.tenant, user.id, "user", scopes, user.username)


def _user_at(username: str, client_ip: str) -> str:
    """The identity of the per-(user name, address) login budget."""
    return f"{client_ip}|{username}"
