"""`rtpm users ...` and `rtpm keys ...`: manage users and API keys straight in storage (no server
needed, the same rules as the HTTP API)."""

from __future__ import annotations

import argparse
import asyncio
import getpass
import secrets
import sys
import time
from collections.abc import Awaitable, Callable

from rtpm.errors import RtpmError
from rtpm.model.time import to_rfc3339
from rtpm.security.ratelimit import RateLimiter
from rtpm.security.scopes import ALL_SCOPES, ROLE_SCOPES
from rtpm.security.service import AuthService
from rtpm.security.tokens import SigningKeys, TokenService
from rtpm.settings import RateLimitSettings, Settings


def _fmt_ms(ms: int | None) -> str:
    return "-" if ms is None else to_rfc3339(ms)


def _run(settings: Settings, work: Callable[[AuthService], Awaitable[int]]) -> int:
    from rtpm.app.storage import storage_session

    async def go() -> int:
        async with storage_session(settings) as storage:
            await storage.migrate()
            # These commands never sign tokens: a throwaway key keeps them independent of the JWT settings.
            throwaway = secrets.token_urlsafe(48)
            tokens = TokenService(
                SigningKeys("HS256", throwaway, throwaway, "cli"),
                issuer="rtpm-cli",
                access_ttl_seconds=1,
                refresh_ttl_seconds=1,
            )
            limiter = RateLimiter(RateLimitSettings(enabled=False))
            return await work(AuthService(storage.auth, tokens, limiter=limiter, cache_seconds=0))

    try:
        return asyncio.run(go())
    except RtpmError as exc:
        print(f"rtpm: {exc}", file=sys.stderr)
        return 1


def _password(args: argparse.Namespace, *, generate: bool) -> tuple[str, bool]:
    """(password, generated): from stdin with --password-stdin, else a prompt on a terminal, else generated."""
    if args.password_stdin:
        return sys.stdin.readline().rstrip("\n"), False
    if sys.stdin.isatty() and not generate:
        first = getpass.getpass("password: ")
        if first != getpass.getpass("again: "):
            raise SystemExit("rtpm: the passwords differ")
        return first, False
    return secrets.token_urlsafe(18), True


def _users(settings: Settings, args: argparse.Namespace) -> int:
    async def create(auth: AuthService) -> int:
        password, generated = _password(args, generate=args.generate)
        tenant = args.tenant or settings.default_tenant
        await auth.create_user(tenant=tenant, username=args.username, password=password, role=args.role)
        print(f"created user {args.username!r} (role {args.role}, tenant {tenant!r})")
        if generated:
            print(f"password (shown once): {password}")
        return 0

    async def list_(auth: AuthService) -> int:
        for u in await auth.store.list_users(args.tenant):
            state = "disabled" if u.disabled else "active"
            print(f"{u.username}\t{u.role}\ttenant={u.tenant}\t{state}\tcreated={_fmt_ms(u.created_ms)}")
        return 0

    async def passwd(auth: AuthService) -> int:
        password, generated = _password(args, generate=args.generate)
        await auth.set_password(args.username, password)
        print(f"password of {args.username!r} changed; its refresh tokens are revoked")
        if generated:
            print(f"password (shown once): {password}")
        return 0

    async def set_(auth: AuthService) -> int:
        disabled = True if args.disable else False if args.enable else None
        await auth.update_user(args.username, role=args.role, disabled=disabled)
        print(f"user {args.username!r} updated")
        return 0

    async def delete(auth: AuthService) -> int:
        await auth.delete_user(args.username)
        print(f"user {args.username!r} deleted")
        return 0

    actions = {"create": create, "list": list_, "passwd": passwd, "set": set_, "delete": delete}
    return _run(settings, actions[args.action])


def _keys(settings: Settings, args: argparse.Namespace) -> int:
    async def create(auth: AuthService) -> int:
        tenant = args.tenant or settings.default_tenant
        expires_ms = int((time.time() + args.expires_in_days * 86400) * 1000) if args.expires_in_days else None
        created = await auth.create_api_key(
            tenant=tenant, name=args.name, scopes=args.scope, created_by="cli", expires_ms=expires_ms
        )
        r = created.record
        print(f"API key {r.id} ({r.name}) for tenant {tenant!r}, scopes {' '.join(sorted(r.scopes))}")
        print(f"expires: {_fmt_ms(r.expires_ms)}")
        print("the key (shown only this once):")
        print(created.key)
        return 0

    async def list_(auth: AuthService) -> int:
        now_ms = int(time.time() * 1000)
        for k in await auth.store.list_api_keys(args.tenant):
            state = "active" if k.active(now_ms) else ("revoked" if k.revoked_ms else "expired")
            print(
                f"{k.id}\t{k.prefix}…\t{k.name}\ttenant={k.tenant}\t{' '.join(sorted(k.scopes))}\t{state}"
                f"\tcreated={_fmt_ms(k.created_ms)}\texpires={_fmt_ms(k.expires_ms)}"
            )
        return 0

    async def revoke(auth: AuthService) -> int:
        await auth.revoke_api_key(args.key_id, tenant=args.tenant)
        print(f"API key {args.key_id} revoked")
        return 0

    actions = {"create": create, "list": list_, "revoke": revoke}
    return _run(settings, actions[args.action])


def add_auth_commands(sub: argparse._SubParsersAction) -> None:
    roles = sorted(ROLE_SCOPES)
    users = sub.add_parser("users", help="manage users (login with user name and password)")
    uact = users.add_subparsers(dest="action", required=True)
    c = uact.add_parser("create", help="create a user; password from a prompt, stdin, or generated")
    c.add_argument("username")
    c.add_argument("--role", choices=roles, default="viewer")
    c.add_argument("--tenant", default=None, help="default: RTPM_DEFAULT_TENANT")
    c.add_argument("--password-stdin", action="store_true", help="read the password from stdin")
    c.add_argument("--generate", action="store_true", help="generate a password and print it once")
    u = uact.add_parser("list", help="list users")
    u.add_argument("--tenant", default=None, help="only this tenant")
    p = uact.add_parser("passwd", help="set a user's password (revokes its refresh tokens)")
    p.add_argument("username")
    p.add_argument("--password-stdin", action="store_true")
    p.add_argument("--generate", action="store_true")
    s = uact.add_parser("set", help="change a user's role, or disable / enable it")
    s.add_argument("username")
    s.add_argument("--role", choices=roles, default=None)
    s.add_argument("--disable", action="store_true")
    s.add_argument("--enable", action="store_true")
    d = uact.add_parser("delete", help="delete a user")
    d.add_argument("username")
    users.set_defaults(func=_users)

    keys = sub.add_parser("keys", help="manage API keys (for agents: remote write, Telegraf, Grafana)")
    kact = keys.add_subparsers(dest="action", required=True)
    kc = kact.add_parser("create", help="create an API key; it is printed once")
    kc.add_argument("--name", required=True)
    kc.add_argument("--scope", action="append", choices=sorted(ALL_SCOPES), required=True, help="repeatable")
    kc.add_argument("--tenant", default=None, help="default: RTPM_DEFAULT_TENANT")
    kc.add_argument("--expires-in-days", type=float, default=None)
    kl = kact.add_parser("list", help="list API keys (never their secrets)")
    kl.add_argument("--tenant", default=None)
    kr = kact.add_parser("revoke", help="revoke an API key by id")
    kr.add_argument("key_id")
    kr.add_argument("--tenant", default=None, help="only if the key belongs to this tenant")
    keys.set_defaults(func=_keys)


def check_auth_settings(settings: Settings) -> str | None:
    """A reason `rtpm serve` must not start with these settings (a missing or weak JWT secret), or None."""
    from rtpm.errors import ConfigError
    from rtpm.security.tokens import load_signing_keys

    if not settings.auth.enabled:
        return None
    try:
        load_signing_keys(settings.auth, environment=settings.environment, data_dir=settings.data_dir)
    except ConfigError as exc:
        return str(exc)
    return None


def login_hint(settings: Settings) -> str:
    if not settings.auth.enabled:
        return "  login: DISABLED (RTPM_AUTH__ENABLED=false): every caller is an admin of the default tenant"
    hint = (
        f"  login: POST /api/v1/auth/login as {settings.auth.admin_username!r} (password printed on first start, "
        "or RTPM_ADMIN_PASSWORD); agents: `rtpm keys create --name NAME --scope metrics:write`"
    )
    role = settings.auth.anonymous_role
    if role is not None:
        tenant = settings.auth.anonymous_tenant or settings.default_tenant
        hint += (
            f"\n  WARNING: ANONYMOUS ACCESS IS ON (RTPM_AUTH__ANONYMOUS_ROLE={role}): requests without a credential "
            f"{'read' if role == 'viewer' else 'read and write metrics and alerts'} in tenant {tenant!r}"
        )
    return hint
