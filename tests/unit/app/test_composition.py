"""The composition root (src/rtpm/app/): the only place that constructs a storage backend, the
Services it builds are frozen, and the Celery worker's alerting is built by the same function,
with the same write path, as the server's."""

from __future__ import annotations

import ast
import dataclasses
import functools
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import rtpm
from rtpm.app import services as services_module
from rtpm.app.alerting import Alerting
from rtpm.app.services import Services, build_services
from rtpm.ingest.buffer import WriteBuffer
from rtpm.jobs.alert_task import evaluate_rules_once
from rtpm.model.alerts import AlertRule
from rtpm.model.labels import Matcher
from rtpm.settings import Settings

SRC = Path(rtpm.__file__).resolve().parent
BACKENDS = {"PostgresStorage", "SqliteStorage"}
BACKEND_MODULES = {"rtpm.storage.postgres", "rtpm.storage.sqlite"}


@functools.cache
def _modules() -> list[tuple[str, ast.Module]]:
    """(path under src/rtpm, its syntax tree) of every module, parsed once."""
    return [
        (p.relative_to(SRC).as_posix(), ast.parse(p.read_text(encoding="utf-8"))) for p in sorted(SRC.rglob("*.py"))
    ]


def _called_name(call: ast.Call) -> str | None:
    f = call.func
    if isinstance(f, ast.Name):
        return f.id
    if isinstance(f, ast.Attribute):
        return f.attr
    return None


def test_only_the_composition_root_constructs_a_storage_backend() -> None:
    constructed: dict[str, list[str]] = {}
    for rel, tree in _modules():
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and _called_name(node) in BACKENDS:
                constructed.setdefault(rel, []).append(f"{_called_name(node)} (line {node.lineno})")
    assert constructed.keys() == {"app/storage.py"}, constructed
    assert sorted(c.split()[0] for c in constructed["app/storage.py"]) == sorted(BACKENDS)


def test_nothing_above_storage_imports_a_backend_but_the_composition_root() -> None:
    """So nothing above storage/ can branch on the backend it has (isinstance needs the class)."""
    importers = set()
    for rel, tree in _modules():
        if rel.startswith("storage/"):
            continue
        for node in ast.walk(tree):
            names = (
                [node.module or ""]
                if isinstance(node, ast.ImportFrom)
                else [a.name for a in node.names]
                if isinstance(node, ast.Import)
                else []
            )
            if any(n in BACKEND_MODULES or n.startswith(tuple(m + "." for m in BACKEND_MODULES)) for n in names):
                importers.add(rel)
    assert importers == {"app/storage.py"}


def test_services_are_frozen() -> None:
    assert dataclasses.is_dataclass(Services) and Services.__dataclass_params__.frozen  # type: ignore[attr-defined]


async def test_built_services_cannot_be_changed_and_carry_the_engine(settings_factory: Callable[..., Settings]) -> None:
    async with build_services(settings_factory(jobs="off")) as services:
        with pytest.raises(dataclasses.FrozenInstanceError):
            services.alerting = None  # type: ignore[misc]
        with pytest.raises(dataclasses.FrozenInstanceError):
            services.storage = services.storage  # type: ignore[misc]
        assert services.engine.storage is services.storage
        assert services.auth is not None and services.limiter is not None
        assert isinstance(services.alerting, Alerting)
        with pytest.raises(dataclasses.FrozenInstanceError):
            services.alerting.runner = None  # type: ignore[misc]


async def test_the_worker_builds_its_alerting_with_the_servers_function_and_write_path(
    settings_factory: Callable[..., Settings], monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[dict[str, Any]] = []
    real = services_module.start_alerting

    async def spy(settings: Settings, **kwargs: Any) -> Alerting:
        calls.append(kwargs)
        return await real(settings, **kwargs)

    monkeypatch.setattr(services_module, "start_alerting", spy)

    server_settings = settings_factory()  # RTPM_JOBS=embedded: the server evaluates in process
    async with build_services(server_settings) as server:
        assert server.alerting.runner is not None
        assert server.scheduler is not None
    [server_call] = calls
    assert server_call["embedded_runner"] is True
    assert isinstance(server_call["buffer"], WriteBuffer)

    worker_settings = settings_factory(jobs="celery")
    async with build_services(worker_settings) as s:  # a rule that fires at once, made by the API side
        await s.alerting.store.create_rule(
            AlertRule(tenant="default", name="Always", expr="vector(1)", evaluation_interval_seconds=1)
        )
    calls.clear()
    now_ms = int(time.time() * 1000)
    result = await evaluate_rules_once(worker_settings, now_ms)
    assert result == {"job": "evaluate_rules", "rules": 1, "errors": 0}
    [worker_call] = calls  # the Celery task's run went through build_services -> start_alerting
    assert worker_call["embedded_runner"] is False
    assert isinstance(worker_call["buffer"], WriteBuffer)

    # What the worker wrote went through its write buffer and was committed before it closed.
    async with build_services(worker_settings, role="worker") as s:
        assert s.auth is None and s.limiter is None and s.scheduler is None and s.alerting.runner is None
        [firing] = await s.alerting.store.active_alerts(tenant="default")
        assert firing.state.value == "firing"
        [alerts] = await s.storage.querier("default", now_ms - 1, now_ms + 1).select(
            [Matcher.equal("__name__", "ALERTS")]
        )
        assert dict(alerts.labels)["alertname"] == "Always" and dict(alerts.labels)["alertstate"] == "firing"
