"""The evaluation round on a real SQLite store (both runners share it): a hung evaluation is
abandoned at its timeout and recorded, the others go on; the embedded runner writes its heartbeat;
what /health/detailed and /metrics make of heartbeats."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import pytest

from rtpm.alerts.evaluator import Notification, Sample
from rtpm.jobs import heartbeat
from rtpm.jobs.alert_eval import AlertEvaluationRunner, rule_timeout, run_due_rules
from rtpm.model.alerts import AlertRule
from rtpm.settings import AlertingSettings, Settings
from rtpm.storage.alert_store import Heartbeat
from rtpm.storage.sqlite import SqliteStorage


@pytest.fixture
async def storage(tmp_path: Path) -> AsyncIterator[SqliteStorage]:
    s = SqliteStorage(tmp_path / "rtpm.db")
    await s.open()
    try:
        yield s
    finally:
        await s.close()


async def _no_notify(_: Sequence[Notification]) -> None:
    return None


async def _no_write(_: str, __: list[tuple[dict[str, str], int, float]]) -> None:
    return None


async def test_a_hung_evaluation_is_abandoned_at_its_timeout_and_the_others_go_on(storage: SqliteStorage) -> None:
    store = storage.alerts
    hung = await store.create_rule(AlertRule(tenant="t", name="Hung", expr="hang", evaluation_interval_seconds=10))
    ok = await store.create_rule(AlertRule(tenant="t", name="Ok", expr="up", evaluation_interval_seconds=10))

    async def query(tenant: str, expr: str, time_ms: int) -> list[Sample]:
        if expr == "hang":
            await asyncio.sleep(3600)
        return [Sample({}, 1.0)]

    now_ms = int(time.time() * 1000)
    results = await run_due_rules(
        store=store,
        query=query,
        notify=_no_notify,
        write_series=_no_write,
        now_ms=now_ms,
        resend_delay_seconds=60,
        timeout_seconds=0.2,
    )
    by_id = {r.rule_id: r for r in results}
    assert by_id[hung.id].error is not None and by_id[hung.id].error.startswith("timeout")  # type: ignore[index, union-attr]
    assert by_id[ok.id].error is None and by_id[ok.id].alerts == 1  # type: ignore[index]
    saved = await store.get_rule("t", hung.id)  # type: ignore[arg-type]
    assert saved is not None and saved.last_eval_ms == now_ms and saved.last_error is not None
    assert "abandoned" in saved.last_error
    # At most half the rule's interval, whatever the cap.
    assert rule_timeout(AlertRule(tenant="t", name="x", expr="y", evaluation_interval_seconds=1), 10) == 0.5


async def test_the_test_hook_blocks_exactly_one_evaluation(storage: SqliteStorage, tmp_path: Path) -> None:
    store = storage.alerts
    await store.create_rule(AlertRule(tenant="t", name="R", expr="up", evaluation_interval_seconds=1))
    block = tmp_path / "block"
    block.write_text("async")

    async def query(tenant: str, expr: str, time_ms: int) -> list[Sample]:
        return []

    async def round_at(now_ms: int) -> str | None:
        [r] = await run_due_rules(
            store=store,
            query=query,
            notify=_no_notify,
            write_series=_no_write,
            now_ms=now_ms,
            resend_delay_seconds=60,
            timeout_seconds=0.2,
            test_block_file=block,
        )
        return r.error

    first = await round_at(int(time.time() * 1000))
    assert first is not None and first.startswith("timeout") and not block.exists()
    assert (tmp_path / "block.blocked").exists()
    assert await round_at(int(time.time() * 1000) + 5000) is None


async def test_the_embedded_runner_leads_evaluates_and_writes_its_heartbeat(storage: SqliteStorage) -> None:
    store = storage.alerts
    await store.create_rule(AlertRule(tenant="t", name="R", expr="up", evaluation_interval_seconds=1))

    async def query(tenant: str, expr: str, time_ms: int) -> list[Sample]:
        return []

    opts = AlertingSettings(poll_seconds=0.5, lease_seconds=3)
    runner = AlertEvaluationRunner(
        store=store, query=query, notify=_no_notify, write_series=_no_write, settings=opts, holder="me"
    )
    other = AlertEvaluationRunner(
        store=store, query=query, notify=_no_notify, write_series=_no_write, settings=opts, holder="other"
    )
    assert len(await runner.tick()) == 1
    assert await other.tick() == [] and not other.is_leader  # one leader
    [beat] = await store.heartbeats()
    assert (beat.runner, beat.holder, beat.rules, beat.errors) == ("embedded", "me", 1, 0)
    assert beat.stall_seconds == 3 * 0.5 + 3 and not beat.stalled(time.time())
    await runner.close()  # gives the lease up: the other takes it at once
    assert await other.tick() is not None and other.is_leader


def test_health_degrades_when_the_expected_runner_is_stalled_or_never_ran() -> None:
    settings = Settings(_env_file=None, jobs="celery")  # type: ignore[call-arg]
    now = 1_800_000_000.0
    fresh = Heartbeat("celery", "w:1", int((now - 2) * 1000), 1, 0, 0.01, 30.0)
    old = Heartbeat("celery", "w:1", int((now - 31) * 1000), 1, 0, 0.01, 30.0)
    former = Heartbeat("embedded", "api:1", int((now - 9999) * 1000), 1, 0, 0.01, 16.5)
    up = heartbeat.alerting_check(settings, [fresh, former], now=now, uptime_seconds=500)
    assert up["status"] == "up" and up["runners"]["celery"]["age_seconds"] == 2.0
    text = heartbeat.exposition(up).decode()
    assert 'rtpm_alerting_evaluation_stalled{runner="celery"} 0' in text
    assert 'rtpm_alerting_evaluation_stalled{runner="embedded"}' not in text  # a former runner's row
    assert f'rtpm_alerting_last_evaluation_timestamp_seconds{{runner="celery"}} {fresh.round_ms / 1000}' in text
    stalled = heartbeat.alerting_check(settings, [old], now=now, uptime_seconds=500)
    assert stalled["status"] == "stalled"
    assert 'rtpm_alerting_evaluation_stalled{runner="celery"} 1' in heartbeat.exposition(stalled).decode()
    assert heartbeat.alerting_check(settings, [], now=now, uptime_seconds=1)["status"] == "starting"
    assert heartbeat.alerting_check(settings, [], now=now, uptime_seconds=500)["status"] == "stalled"
    off = Settings(_env_file=None, jobs="off")  # type: ignore[call-arg]
    assert heartbeat.alerting_check(off, [], now=now, uptime_seconds=500)["status"] == "off"
