"""The AuthStore on every storage backend: users, API keys, refresh-token state."""

from __future__ import annotations

import pytest

from rtpm.errors import AlreadyExists
from rtpm.storage.auth_base import ApiKeyRecord, RefreshTokenRecord, RefreshUse, UserRecord
from rtpm.storage.base import Storage


async def test_users_keys_and_refresh_tokens(storage: Storage) -> None:
    store = storage.auth
    assert await store.count_users() == 0
    user = UserRecord("u1", "acme", "alice", "$argon2id$fake", "editor", False, 1000)
    await store.create_user(user)
    with pytest.raises(AlreadyExists):
        await store.create_user(UserRecord("u2", "bravo", "alice", "x", "viewer", False, 1000))
    assert await store.count_users() == 1
    assert await store.get_user_by_name("alice") == user
    assert await store.get_user("u1") == user
    assert await store.list_users("bravo") == []
    assert await store.update_user("u1", role="viewer", disabled=True)
    changed = await store.get_user("u1")
    assert changed is not None and changed.role == "viewer" and changed.disabled

    key = ApiKeyRecord("k1", "acme", "agent", "rtpm_k1", "hash1", frozenset({"metrics:write"}), "alice", 5, None)
    await store.create_api_key(key)
    assert await store.get_api_key_by_hash("hash1") == key
    assert await store.get_api_key_by_hash("nope") is None
    assert [k.id for k in await store.list_api_keys("acme")] == ["k1"]
    assert await store.list_api_keys("bravo") == []
    assert not await store.revoke_api_key("k1", tenant="bravo", now_ms=10)  # another tenant cannot
    assert await store.revoke_api_key("k1", tenant="acme", now_ms=10)
    assert not await store.revoke_api_key("k1", tenant="acme", now_ms=11)  # only once
    revoked = await store.get_api_key_by_hash("hash1")
    assert revoked is not None and revoked.revoked_ms == 10 and not revoked.active(20)

    await store.add_refresh_token(RefreshTokenRecord("j1", "u1", "fam", 1, 10**13))
    await store.add_refresh_token(RefreshTokenRecord("j2", "u1", "fam", 2, 10**13))
    assert await store.use_refresh_token("j1", now_ms=3) is RefreshUse.OK
    assert await store.use_refresh_token("j1", now_ms=4) is RefreshUse.REUSED
    assert await store.use_refresh_token("zz", now_ms=4) is RefreshUse.UNKNOWN
    assert await store.revoke_refresh_family("fam", now_ms=5) == 2
    assert await store.use_refresh_token("j2", now_ms=6) is RefreshUse.REUSED
    await store.add_refresh_token(RefreshTokenRecord("j3", "u1", "other", 7, 10**13))
    assert await store.revoke_user_refresh_tokens("u1", now_ms=8) == 1
    assert await store.delete_user("u1")
    assert await store.get_user("u1") is None
