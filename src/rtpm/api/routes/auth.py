"""`/api/v1/auth`: login and refresh (public), the caller's identity, API keys and users (admin).

Everything an admin manages here belongs to the admin's own tenant.
"""

from __future__ import annotations

from typing import Annotated, Any, TypeVar

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, Field, ValidationError

from rtpm.api.auth import client_ip, public, require
from rtpm.api.deps import ServicesDep, read_json
from rtpm.api.params import time_param
from rtpm.api.responses import OrjsonResponse
from rtpm.app.services import Services
from rtpm.errors import NotFoundError, Problem, ValidationFailed
from rtpm.model.time import to_rfc3339
from rtpm.security.principal import Principal
from rtpm.security.scopes import ADMIN, ROLE_SCOPES
from rtpm.security.service import AuthService, TokenPair
from rtpm.storage.auth_base import ApiKeyRecord, UserRecord

router = APIRouter(prefix="/api/v1/auth", tags=["auth"])

M = TypeVar("M", bound=BaseModel)

AdminDep = Annotated[Principal, Depends(require(ADMIN))]
AnyCallerDep = Annotated[Principal, Depends(require())]


class LoginIn(BaseModel):
    username: str = Field(max_length=128)
    password: str = Field(max_length=1024)


class RefreshIn(BaseModel):
    refresh_token: str = Field(max_length=4096)


class KeyCreate(BaseModel):
    name: str = Field(min_length=1, max_length=200, examples=["prometheus-remote-write"])
    scopes: list[str] = Field(min_length=1, examples=[["metrics:write"]])
    expires_at: str | float | None = Field(None, description="RFC3339 or unix seconds; never when missing")


class UserCreate(BaseModel):
    username: str = Field(min_length=1, max_length=128)
    password: str = Field(min_length=8, max_length=1024)
    role: str = Field("viewer", description="admin, editor or viewer")


class UserUpdate(BaseModel):
    password: str | None = Field(None, min_length=8, max_length=1024)
    role: str | None = None
    disabled: bool | None = None


def _body_doc(model: type[BaseModel]) -> dict[str, Any]:
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": model.model_json_schema()}}}}


async def _parse(request: Request, model: type[M]) -> M:
    body = await read_json(request)
    if not isinstance(body, dict):
        raise ValidationFailed([Problem("body", "must be a JSON object")])
    try:
        return model.model_validate(body)
    except ValidationError as exc:
        raise ValidationFailed(
            [Problem(".".join(str(p) for p in err["loc"]) or "body", err["msg"]) for err in exc.errors()]
        ) from None


def _auth(services: Services) -> AuthService:
    assert services.auth is not None
    return services.auth


def _tokens(pair: TokenPair) -> dict[str, Any]:
    return {
        "access_token": pair.access_token,
        "refresh_token": pair.refresh_token,
        "token_type": pair.token_type,
        "expires_in": pair.expires_in,
    }


def _key(k: ApiKeyRecord, now_ms: int) -> dict[str, Any]:
    return {
        "id": k.id,
        "name": k.name,
        "prefix": k.prefix,
        "scopes": sorted(k.scopes),
        "created_by": k.created_by,
        "created_at": to_rfc3339(k.created_ms),
        "expires_at": to_rfc3339(k.expires_ms) if k.expires_ms is not None else None,
        "revoked_at": to_rfc3339(k.revoked_ms) if k.revoked_ms is not None else None,
        "active": k.active(now_ms),
    }


def _user(u: UserRecord) -> dict[str, Any]:
    return {
        "username": u.username,
        "role": u.role,
        "disabled": u.disabled,
        "created_at": to_rfc3339(u.created_ms),
    }


@router.post("/login", dependencies=[Depends(public(budget="admin"))], openapi_extra=_body_doc(LoginIn))
async def login(request: Request, services: ServicesDep) -> dict[str, Any]:
    """Tokens for a user name and password: a short-lived access token and a refresh token.
    Failed attempts are throttled per (user name, client IP) and per client IP (429 with Retry-After)."""
    body = await _parse(request, LoginIn)
    pair = await _auth(services).login(body.username, body.password, client_ip=client_ip(request))
    return _tokens(pair)


@router.post("/refresh", dependencies=[Depends(public(budget="admin"))], openapi_extra=_body_doc(RefreshIn))
async def refresh(request: Request, services: ServicesDep) -> dict[str, Any]:
    """New tokens for a refresh token. Each refresh token works once: presenting a used one again
    revokes the whole login (every token refreshed from it)."""
    body = await _parse(request, RefreshIn)
    return _tokens(await _auth(services).refresh(body.refresh_token))


@router.get("/me")
async def me(principal: AnyCallerDep) -> dict[str, Any]:
    """Who the credential stands for: tenant, kind (user or api_key), name and scopes."""
    return {
        "tenant": principal.tenant,
        "subject": principal.subject,
        "kind": principal.kind,
        "name": principal.name,
        "scopes": sorted(principal.scopes),
    }


@router.get("/keys")
async def list_keys(principal: AdminDep, services: ServicesDep) -> dict[str, Any]:
    """The tenant's API keys (never their secrets)."""
    keys = await _auth(services).store.list_api_keys(principal.tenant)
    now_ms = int(services.clock() * 1000)
    return {"keys": [_key(k, now_ms) for k in keys]}


@router.post("/keys", status_code=201, openapi_extra=_body_doc(KeyCreate))
async def create_key(request: Request, principal: AdminDep, services: ServicesDep) -> OrjsonResponse:
    """Create an API key with the given scopes (and an optional expiry). The key is in this
    answer only: it is stored as a hash and cannot be shown again."""
    body = await _parse(request, KeyCreate)
    expires_ms = time_param(body.expires_at, "expires_at", rfc3339=True) if body.expires_at is not None else None
    created = await _auth(services).create_api_key(
        tenant=principal.tenant,
        name=body.name,
        scopes=body.scopes,
        created_by=principal.name or principal.subject,
        expires_ms=expires_ms,
    )
    out = _key(created.record, int(services.clock() * 1000))
    out["key"] = created.key
    return OrjsonResponse(out, status_code=201)


@router.delete("/keys/{key_id}")
async def revoke_key(key_id: str, principal: AdminDep, services: ServicesDep) -> dict[str, Any]:
    """Revoke an API key of the tenant; it stops working at once on this process and within
    `auth.api_key_cache_seconds` on the others."""
    await _auth(services).revoke_api_key(key_id, tenant=principal.tenant)
    return {"status": "revoked", "id": key_id}


@router.get("/users")
async def list_users(principal: AdminDep, services: ServicesDep) -> dict[str, Any]:
    users = await _auth(services).store.list_users(principal.tenant)
    return {"users": [_user(u) for u in users], "roles": {r: sorted(s) for r, s in ROLE_SCOPES.items()}}


@router.post("/users", status_code=201, openapi_extra=_body_doc(UserCreate))
async def create_user(request: Request, principal: AdminDep, services: ServicesDep) -> OrjsonResponse:
    body = await _parse(request, UserCreate)
    user = await _auth(services).create_user(
        tenant=principal.tenant, username=body.username, password=body.password, role=body.role
    )
    return OrjsonResponse(_user(user), status_code=201)


async def _tenant_user(services: Services, principal: Principal, username: str) -> UserRecord:
    user = await _auth(services).store.get_user_by_name(username)
    if user is None or user.tenant != principal.tenant:
        raise NotFoundError(f"no user {username!r}")
    return user


@router.patch("/users/{username}", openapi_extra=_body_doc(UserUpdate))
async def update_user(username: str, request: Request, principal: AdminDep, services: ServicesDep) -> dict[str, Any]:
    body = await _parse(request, UserUpdate)
    await _tenant_user(services, principal, username)
    auth = _auth(services)
    if body.password is not None:
        await auth.set_password(username, body.password)
    await auth.update_user(username, role=body.role, disabled=body.disabled)
    return _user(await _tenant_user(services, principal, username))


@router.delete("/users/{username}")
async def delete_user(username: str, principal: AdminDep, services: ServicesDep) -> dict[str, Any]:
    await _tenant_user(services, principal, username)
    await _auth(services).delete_user(username)
    return {"status": "deleted", "username": username}
