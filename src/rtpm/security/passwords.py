"""Password hashing with argon2id (argon2-cffi).

Parameters follow OWASP's minimum for argon2id (19 MiB, 2 passes, 1 lane): a login costs a few
tens of milliseconds. Hashes carry their parameters, so stronger settings later still verify old
hashes, and `needs_rehash` tells when to upgrade one.
"""

from __future__ import annotations

import secrets

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from rtpm.errors import BadDataError

MIN_PASSWORD_LENGTH = 8

_hasher = PasswordHasher(time_cost=2, memory_cost=19 * 1024, parallelism=1)
# Verified against when the user does not exist, so both cases take the same time.
_DUMMY_HASH = _hasher.hash(secrets.token_urlsafe(16))


def check_password_policy(password: str) -> None:
    if len(password) < MIN_PASSWORD_LENGTH:
        raise BadDataError(f"password: must be at least {MIN_PASSWORD_LENGTH} characters")
    if len(password) > 1024:
        raise BadDataError("password: must be at most 1024 characters")


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify_password(password_hash: str | None, password: str) -> bool:
    """True when `password` matches. With no hash (unknown user) it still does the work, and says no."""
    try:
        return _hasher.verify(password_hash or _DUMMY_HASH, password) and password_hash is not None
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def needs_rehash(password_hash: str) -> bool:
    return _hasher.check_needs_rehash(password_hash)


def random_password() -> str:
    return secrets.token_urlsafe(18)
