"""JWT access and refresh tokens (PyJWT): HS256 by default, RS256 with a configured key pair.

Only the configured algorithm is accepted when decoding, so `alg: none` and HS/RS confusion (an
HMAC token signed with the public key) are refused. Every token names its issuer, audience, type
(`access` or `refresh`), subject, tenant and a unique id.
"""

from __future__ import annotations

import os
import secrets
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import jwt

from rtpm.errors import ConfigError, Unauthenticated
from rtpm.settings import AuthSettings

AUDIENCE = "rtpm"
MIN_SECRET_BYTES = 32
SECRET_FILE = "jwt-secret"
_KNOWN_WEAK = {"secret", "changeme", "changethis", "password", "rtpm", "development", "default", "jwt-secret"}

TokenType = Literal["access", "refresh"]


@dataclass(frozen=True, slots=True)
class SigningKeys:
    algorithm: str
    signing_key: str | bytes
    verifying_key: str | bytes
    origin: str  # where the key came from, for the start-up message


@dataclass(frozen=True, slots=True)
class Claims:
    subject: str
    tenant: str
    token_type: TokenType
    token_id: str
    scopes: frozenset[str]
    name: str
    family: str | None
    expires_at: float


def secret_weakness(secret: str) -> str | None:
    """Why a secret is too weak to sign tokens with, or None."""
    if len(secret.encode()) < MIN_SECRET_BYTES:
        return f"shorter than {MIN_SECRET_BYTES} bytes"
    if secret.lower() in _KNOWN_WEAK or any(secret.lower().startswith(w) for w in ("changeme", "changethis")):
        return "a well-known placeholder"
    if len(set(secret)) < 10:
        return "too few distinct characters"
    return None


def _read_or_create_secret(path: Path) -> str:
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    secret = secrets.token_urlsafe(48)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # another process made it first
        return path.read_text().strip()
    with os.fdopen(fd, "w") as f:
        f.write(secret + "\n")
    return secret


def load_signing_keys(auth: AuthSettings, *, environment: str, data_dir: Path) -> SigningKeys:
    """The keys to sign and verify with. Outside development (and tests) a missing or weak secret is a
    ConfigError; in development a random secret is generated once and kept in `data_dir`."""
    alg = auth.jwt_algorithm
    relaxed = environment in ("development", "test")
    if alg.startswith("RS"):
        if auth.jwt_private_key_path is None or auth.jwt_public_key_path is None:
            raise ConfigError(
                f"RTPM_AUTH__JWT_ALGORITHM={alg} needs RTPM_AUTH__JWT_PRIVATE_KEY_PATH and RTPM_AUTH__JWT_PUBLIC_KEY_PATH"
            )
        try:
            private = auth.jwt_private_key_path.read_bytes()
            public = auth.jwt_public_key_path.read_bytes()
        except OSError as exc:
            raise ConfigError(f"cannot read the JWT key pair: {exc}") from exc
        if b"PRIVATE KEY" not in private or b"PUBLIC KEY" not in public:
            raise ConfigError("the JWT key files must be PEM: a private key and a public key")
        return SigningKeys(alg, private, public, f"key pair {auth.jwt_private_key_path}")
    if auth.jwt_secret is not None and auth.jwt_secret.get_secret_value():
        secret = auth.jwt_secret.get_secret_value()
        weakness = secret_weakness(secret)
        if weakness and not relaxed:
            raise ConfigError(
                f"RTPM_AUTH__JWT_SECRET is weak ({weakness}); refusing to start in {environment}. "
                "Generate one: python -c 'import secrets; print(secrets.token_urlsafe(48))'"
            )
        return SigningKeys(alg, secret, secret, "RTPM_AUTH__JWT_SECRET")
    if not relaxed:
        raise ConfigError(
            f"RTPM_AUTH__JWT_SECRET is not set; refusing to start in {environment} without a signing secret. "
            "Generate one: python -c 'import secrets; print(secrets.token_urlsafe(48))'"
        )
    path = data_dir / SECRET_FILE
    secret = _read_or_create_secret(path)
    return SigningKeys(alg, secret, secret, f"generated, kept in {path}")


class TokenService:
    def __init__(
        self,
        keys: SigningKeys,
        *,
        issuer: str,
        access_ttl_seconds: float,
        refresh_ttl_seconds: float,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.keys = keys
        self.issuer = issuer
        self.access_ttl_seconds = access_ttl_seconds
        self.refresh_ttl_seconds = refresh_ttl_seconds
        self.clock = clock

    def _encode(self, claims: dict[str, Any]) -> str:
        return jwt.encode(claims, self.keys.signing_key, algorithm=self.keys.algorithm)

    def _base(self, *, subject: str, tenant: str, token_type: TokenType, ttl: float) -> dict[str, Any]:
        now = self.clock()
        return {
            "iss": self.issuer,
            "aud": AUDIENCE,
            "sub": subject,
            "tnt": tenant,
            "typ": token_type,
            "iat": int(now),
            "nbf": int(now) - 1,
            "exp": int(now + ttl),
            "jti": uuid.uuid4().hex,
        }

    def issue_access(self, *, subject: str, tenant: str, scopes: frozenset[str], name: str) -> str:
        claims = self._base(subject=subject, tenant=tenant, token_type="access", ttl=self.access_ttl_seconds)
        claims["scope"] = " ".join(sorted(scopes))
        claims["name"] = name
        return self._encode(claims)

    def issue_refresh(self, *, subject: str, tenant: str, family: str) -> tuple[str, Claims]:
        claims = self._base(subject=subject, tenant=tenant, token_type="refresh", ttl=self.refresh_ttl_seconds)
        claims["fam"] = family
        return self._encode(claims), self._claims(claims)

    def decode(self, token: str, *, expected: TokenType) -> Claims:
        """Verify signature, algorithm, issuer, audience, expiry and type; Unauthenticated otherwise."""
        try:
            raw = jwt.decode(
                token,
                self.keys.verifying_key,
                algorithms=[self.keys.algorithm],
                audience=AUDIENCE,
                issuer=self.issuer,
                options={"require": ["exp", "iat", "sub", "jti", "iss", "aud"]},
            )
        except jwt.ExpiredSignatureError:
            raise Unauthenticated("token has expired") from None
        except jwt.InvalidTokenError as exc:
            raise Unauthenticated(f"invalid token: {exc}") from None
        if raw.get("typ") != expected:
            raise Unauthenticated(f"invalid token: expected an {expected} token")
        try:
            return self._claims(raw)
        except (KeyError, TypeError, ValueError):
            raise Unauthenticated("invalid token: malformed claims") from None

    @staticmethod
    def _claims(raw: dict[str, Any]) -> Claims:
        scope = raw.get("scope", "")
        fam = raw.get("fam")
        name = raw.get("name", "")
        if not isinstance(scope, str) or not isinstance(raw["tnt"], str) or not isinstance(name, str):
            raise ValueError("claims")
        if fam is not None and not isinstance(fam, str):
            raise ValueError("fam")
        return Claims(
            subject=str(raw["sub"]),
            tenant=raw["tnt"],
            token_type=raw["typ"],
            token_id=str(raw["jti"]),
            scopes=frozenset(scope.split()),
            name=name,
            family=fam,
            expires_at=float(raw["exp"]),
        )
