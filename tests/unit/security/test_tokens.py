"""Acceptance 5: expired, tampered and wrongly signed tokens (alg none, HS/RS confusion, another
algorithm), revoked and expired API keys, refresh-token reuse; login throttling; secrets."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from fastapi.testclient import TestClient

from rtpm.api.app import create_app
from rtpm.errors import ConfigError
from rtpm.security.tokens import AUDIENCE, TokenService, load_signing_keys
from rtpm.settings import AuthSettings, Settings
from rtpm.storage.auth_base import ApiKeyRecord
from tests._auth import bearer

PASSWORD = "admin-password-for-tests-0123"


def _login(client: TestClient, password: str = PASSWORD) -> dict[str, Any]:
    r = client.post("/api/v1/auth/login", json={"username": "admin", "password": password})
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    assert set(body) == {"access_token", "refresh_token", "token_type", "expires_in"}
    assert body["token_type"] == "bearer" and body["expires_in"] == 1800
    return body


def _names(client: TestClient, token: str) -> int:
    return client.get("/api/v1/metrics/names", headers=bearer(token)).status_code


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _claims(client: TestClient, token: str) -> dict[str, Any]:
    return dict(jwt.decode(token, options={"verify_signature": False}))


def test_login_gives_tokens_that_work(app_client: TestClient) -> None:
    tokens = _login(app_client)
    assert _names(app_client, tokens["access_token"]) == 200
    me = app_client.get("/api/v1/auth/me", headers=bearer(tokens["access_token"])).json()
    assert me["kind"] == "user" and me["tenant"] == "default" and "admin" in me["scopes"]


def test_wrong_password_and_unknown_user_get_the_same_answer(app_client: TestClient) -> None:
    a = app_client.post("/api/v1/auth/login", json={"username": "admin", "password": "nope-nope-nope"})
    b = app_client.post("/api/v1/auth/login", json={"username": "nobody", "password": "nope-nope-nope"})
    assert a.status_code == b.status_code == 401
    assert a.json() == b.json()


def test_expired_access_token_is_refused(app_client: TestClient) -> None:
    services: Any = app_client.app.state.services  # type: ignore[attr-defined]
    real = _claims(app_client, _login(app_client)["access_token"])
    past = TokenService(
        services.auth.tokens.keys,
        issuer="rtpm",
        access_ttl_seconds=60,
        refresh_ttl_seconds=60,
        clock=lambda: time.time() - 3600,
    )
    token = past.issue_access(subject=real["sub"], tenant="default", scopes=frozenset({"metrics:read"}), name="admin")
    r = app_client.get("/api/v1/metrics/names", headers=bearer(token))
    assert r.status_code == 401 and "expired" in r.json()["error"]["message"]


def test_tampered_token_is_refused(app_client: TestClient) -> None:
    token = _login(app_client)["access_token"]
    header, payload, signature = token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=="))
    claims["tnt"] = "another-tenant"
    forged = ".".join([header, _b64(json.dumps(claims).encode()), signature])
    assert _names(app_client, forged) == 401
    flipped = token[:-2] + ("A" if token[-2] != "A" else "B") + token[-1]
    assert _names(app_client, flipped) == 401


def test_alg_none_is_refused(app_client: TestClient) -> None:
    claims = _claims(app_client, _login(app_client)["access_token"])
    unsigned = ".".join([_b64(b'{"alg":"none","typ":"JWT"}'), _b64(json.dumps(claims).encode()), ""])
    assert _names(app_client, unsigned) == 401


def test_another_algorithm_with_the_right_secret_is_refused(app_client: TestClient) -> None:
    services: Any = app_client.app.state.services  # type: ignore[attr-defined]
    claims = _claims(app_client, _login(app_client)["access_token"])
    secret = services.auth.tokens.keys.signing_key
    assert _names(app_client, jwt.encode(claims, secret, algorithm="HS256")) == 200  # the control
    assert _names(app_client, jwt.encode(claims, secret, algorithm="HS512")) == 401


def test_refresh_token_is_not_an_access_token_and_back(app_client: TestClient) -> None:
    tokens = _login(app_client)
    assert _names(app_client, tokens["refresh_token"]) == 401
    r = app_client.post("/api/v1/auth/refresh", json={"refresh_token": tokens["access_token"]})
    assert r.status_code == 401


def test_refresh_works_once_and_reuse_revokes_the_login(app_client: TestClient) -> None:
    first = _login(app_client)
    r = app_client.post("/api/v1/auth/refresh", json={"refresh_token": first["refresh_token"]})
    assert r.status_code == 200, r.text
    second = r.json()
    assert _names(app_client, second["access_token"]) == 200
    # The spent refresh token again: refused, and the whole login is revoked ...
    r = app_client.post("/api/v1/auth/refresh", json={"refresh_token": first["refresh_token"]})
    assert r.status_code == 401 and "already used" in r.json()["error"]["message"]
    # ... so the refresh token issued from it stops working too.
    r = app_client.post("/api/v1/auth/refresh", json={"refresh_token": second["refresh_token"]})
    assert r.status_code == 401
    # Another login is unaffected.
    other = _login(app_client)
    assert app_client.post("/api/v1/auth/refresh", json={"refresh_token": other["refresh_token"]}).status_code == 200


def test_revoked_api_key_stops_working_at_once(app_client: TestClient, key_factory: Callable[..., str]) -> None:
    admin = key_factory("admin")
    key = key_factory("metrics:read")
    assert _names(app_client, key) == 200
    listed = app_client.get("/api/v1/auth/keys", headers=bearer(admin)).json()["keys"]
    key_id = next(k["id"] for k in listed if key.startswith(k["prefix"] + "_"))
    assert all("key" not in k and "secret_hash" not in k for k in listed)
    r = app_client.delete(f"/api/v1/auth/keys/{key_id}", headers=bearer(admin))
    assert r.status_code == 200, r.text
    r = app_client.get("/api/v1/metrics/names", headers=bearer(key))
    assert r.status_code == 401 and "revoked" in r.json()["error"]["message"]
    assert app_client.delete(f"/api/v1/auth/keys/{key_id}", headers=bearer(admin)).status_code == 404


def test_expired_api_key_is_refused(app_client: TestClient, key_factory: Callable[..., str]) -> None:
    from rtpm.security.apikeys import generate_key

    services: Any = app_client.app.state.services  # type: ignore[attr-defined]
    new = generate_key()
    now_ms = int(time.time() * 1000)
    record = ApiKeyRecord(
        new.key_id, "default", "old", new.prefix, new.secret_hash, frozenset({"metrics:read"}), "tests", now_ms - 10_000
    )
    expired = ApiKeyRecord(**{**{f: getattr(record, f) for f in record.__slots__}, "expires_ms": now_ms - 1})
    assert app_client.portal is not None
    app_client.portal.call(services.auth.store.create_api_key, expired)
    r = app_client.get("/api/v1/metrics/names", headers=bearer(new.key))
    assert r.status_code == 401 and "expired" in r.json()["error"]["message"]


def test_api_key_is_stored_only_as_a_hash(app_client: TestClient) -> None:
    admin = _login(app_client)["access_token"]
    r = app_client.post("/api/v1/auth/keys", json={"name": "agent", "scopes": ["metrics:write"]}, headers=bearer(admin))
    assert r.status_code == 201
    key = r.json()["key"]
    services: Any = app_client.app.state.services  # type: ignore[attr-defined]
    assert app_client.portal is not None
    stored = app_client.portal.call(services.auth.store.list_api_keys, "default")
    assert [k.secret_hash for k in stored] == [hashlib.sha256(key.encode()).hexdigest()]
    raw = services.settings.sqlite_path.read_bytes()
    assert key.encode() not in raw


def test_unknown_scope_is_refused_when_creating_a_key(app_client: TestClient) -> None:
    admin = _login(app_client)["access_token"]
    r = app_client.post("/api/v1/auth/keys", json={"name": "x", "scopes": ["root"]}, headers=bearer(admin))
    assert r.status_code == 400 and "unknown scope" in r.json()["error"]["message"]


def test_viewer_cannot_write_or_administer(app_client: TestClient) -> None:
    admin = _login(app_client)["access_token"]
    r = app_client.post(
        "/api/v1/auth/users",
        json={"username": "vera", "password": "viewer-password-1", "role": "viewer"},
        headers=bearer(admin),
    )
    assert r.status_code == 201, r.text
    r = app_client.post("/api/v1/auth/login", json={"username": "vera", "password": "viewer-password-1"})
    viewer = r.json()["access_token"]
    assert _names(app_client, viewer) == 200
    h = bearer(viewer)
    assert app_client.post("/api/v1/metrics/ingest", json={"name": "x", "value": 1}, headers=h).status_code == 403
    assert app_client.get("/api/v1/auth/keys", headers=h).status_code == 403
    # Disabling the user ends its access (within the cache time; here the same process: at once).
    assert (
        app_client.patch("/api/v1/auth/users/vera", json={"disabled": True}, headers=bearer(admin)).status_code == 200
    )
    app_client.app.state.services.auth._users.clear()  # type: ignore[attr-defined]
    assert _names(app_client, viewer) == 401


def test_failed_logins_are_throttled(app_client: TestClient) -> None:
    for _ in range(5):
        r = app_client.post("/api/v1/auth/login", json={"username": "admin", "password": "guess-guess-guess"})
        assert r.status_code == 401
    r = app_client.post("/api/v1/auth/login", json={"username": "admin", "password": PASSWORD})
    assert r.status_code == 429
    assert int(r.headers["retry-after"]) >= 1


def _rsa_pair(tmp_path: Path) -> tuple[Path, Path, bytes]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    public = key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    (tmp_path / "jwt.key").write_bytes(private)
    (tmp_path / "jwt.pub").write_bytes(public)
    return tmp_path / "jwt.key", tmp_path / "jwt.pub", public


def test_rs256_and_hs_rs_confusion(tmp_path: Path, settings_factory: Callable[..., Settings]) -> None:
    private_path, public_path, public = _rsa_pair(tmp_path)
    auth = AuthSettings(jwt_algorithm="RS256", jwt_private_key_path=private_path, jwt_public_key_path=public_path)
    with TestClient(create_app(settings_factory(auth=auth, admin_password=PASSWORD))) as client:
        token = _login(client)["access_token"]
        assert jwt.get_unverified_header(token)["alg"] == "RS256"
        assert _names(client, token) == 200
        # An attacker who knows the public key signs HS256 with it as the HMAC secret.
        claims = _claims(client, token)
        head = _b64(b'{"alg":"HS256","typ":"JWT"}')
        body = _b64(json.dumps(claims).encode())
        sig = _b64(hmac.new(public, f"{head}.{body}".encode(), hashlib.sha256).digest())
        assert _names(client, f"{head}.{body}.{sig}") == 401
        assert claims["aud"] == AUDIENCE


def test_weak_or_missing_secret_is_refused_outside_development(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not set"):
        load_signing_keys(AuthSettings(), environment="production", data_dir=tmp_path)
    for weak in ("secret", "changeme-changeme-changeme-changeme", "a" * 64):
        with pytest.raises(ConfigError, match="weak"):
            load_signing_keys(AuthSettings(jwt_secret=weak), environment="production", data_dir=tmp_path)
    strong = "x7Qp2LmZ9vT4kR8sN1wB6yH3cF5gJ0dA-ePqUo"
    assert load_signing_keys(AuthSettings(jwt_secret=strong), environment="production", data_dir=tmp_path)


def test_development_generates_a_secret_once_and_keeps_it(tmp_path: Path) -> None:
    a = load_signing_keys(AuthSettings(), environment="development", data_dir=tmp_path)
    b = load_signing_keys(AuthSettings(), environment="development", data_dir=tmp_path)
    assert a.signing_key == b.signing_key and len(str(a.signing_key)) >= 40
    assert (tmp_path / "jwt-secret").stat().st_mode & 0o077 == 0


@pytest.mark.slow  # starts `rtpm serve` once per case: seconds each
def test_serve_refuses_to_start_with_a_weak_secret_in_production(tmp_path: Path) -> None:
    env = {
        "PATH": "/usr/bin:/bin",
        "RTPM_ENVIRONMENT": "production",
        "RTPM_AUTH__JWT_SECRET": "changeme",
        "RTPM_DATA_DIR": str(tmp_path),
    }
    proc = subprocess.run(
        [sys.executable, "-m", "rtpm", "serve", "--port", "0"], env=env, capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 2
    assert "RTPM_AUTH__JWT_SECRET is weak" in proc.stderr
