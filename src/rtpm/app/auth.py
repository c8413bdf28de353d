"""The security layer: the AuthService over the storage's AuthStore, the token signing keys, the
rate limiter, and the admin made on first start."""

from __future__ import annotations

import structlog

from rtpm.app.storage import storage_session
from rtpm.errors import AlreadyExists
from rtpm.security.ratelimit import RateLimiter
from rtpm.security.service import AuthService
from rtpm.security.tokens import TokenService, load_signing_keys
from rtpm.settings import Settings
from rtpm.storage.base import Storage

log = structlog.get_logger("rtpm.security")


def make_auth_service(settings: Settings, storage: Storage, limiter: RateLimiter) -> AuthService:
    """Raises ConfigError (outside development) for a missing or weak JWT secret."""
    auth = settings.auth
    keys = load_signing_keys(auth, environment=settings.environment, data_dir=settings.data_dir)
    tokens = TokenService(
        keys,
        issuer=auth.jwt_issuer,
        access_ttl_seconds=auth.access_token_ttl_seconds,
        refresh_ttl_seconds=auth.refresh_token_ttl_seconds,
    )
    return AuthService(storage.auth, tokens, limiter=limiter, cache_seconds=auth.api_key_cache_seconds)


def _given_password(settings: Settings) -> str | None:
    return (settings.admin_password.get_secret_value() if settings.admin_password else None) or None


def make_limiter(settings: Settings) -> RateLimiter:
    """Shared through Redis when there is one, else per process. The caller closes it."""
    return RateLimiter(settings.auth.rate_limit, redis_url=settings.redis_url)


async def build_auth(settings: Settings, storage: Storage, limiter: RateLimiter) -> AuthService:
    """The AuthService; on first start also the admin user, whose generated password is printed
    once (or taken from RTPM_ADMIN_PASSWORD, and then not printed)."""
    service = make_auth_service(settings, storage, limiter)
    try:
        generated = await service.ensure_admin(
            tenant=settings.default_tenant, username=settings.auth.admin_username, password=_given_password(settings)
        )
    except AlreadyExists:  # another process of this deployment made it at the same moment
        generated = None
    if generated is not None:
        print(first_start_text(settings, generated), flush=True)
    if not settings.auth.enabled:
        log.warning("auth_disabled", effect="every caller is an admin of the default tenant")
    elif settings.auth.anonymous_role is not None:
        log.warning(
            "anonymous_access_enabled",
            role=settings.auth.anonymous_role,
            tenant=settings.auth.anonymous_tenant or settings.default_tenant,
            effect="requests without a credential are served with this role (RTPM_AUTH__ANONYMOUS_ROLE)",
        )
    return service


def first_start_text(settings: Settings, password: str) -> str:
    username = settings.auth.admin_username
    return (
        f"  first start: created user {username!r} (role admin, tenant {settings.default_tenant!r}) "
        f"with password: {password}\n"
        f"  it is shown only this once; change it with `rtpm users passwd {username}`"
    )


async def ensure_first_admin(settings: Settings) -> str | None:
    """Before `rtpm serve` prints its banner: apply migrations and create the first-start admin,
    so a generated password is printed inside the banner rather than among the start-up logs.
    Returns the generated password (None when a user exists or RTPM_ADMIN_PASSWORD gave it)."""
    async with storage_session(settings) as storage:
        await storage.migrate()
        service = make_auth_service(settings, storage, RateLimiter(settings.auth.rate_limit))
        try:
            return await service.ensure_admin(
                tenant=settings.default_tenant,
                username=settings.auth.admin_username,
                password=_given_password(settings),
            )
        except AlreadyExists:
            return None
