"""API keys: `rtpm_<8 hex id>_<43 chars of secret>`; only a SHA-256 of the whole key is stored.

The `rtpm_<id>` prefix is stored in clear so a key can be recognised in lists and logs; the secret
part carries 256 random bits, so a plain SHA-256 (no salt, no stretching) is enough at rest.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass

KEY_MARK = "rtpm_"


@dataclass(frozen=True, slots=True)
class NewKey:
    key: str  # shown once
    key_id: str
    prefix: str
    secret_hash: str


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()


def generate_key() -> NewKey:
    key_id = secrets.token_hex(4)
    prefix = f"{KEY_MARK}{key_id}"
    key = f"{prefix}_{secrets.token_urlsafe(32)}"
    return NewKey(key=key, key_id=key_id, prefix=prefix, secret_hash=hash_key(key))


def looks_like_key(credential: str) -> bool:
    return credential.startswith(KEY_MARK) and credential.count("_") >= 2 and len(credential) < 200
