"""AlertStore conformance: the same behaviour on every backend (the `storage` fixture is parametrized)."""

from __future__ import annotations

import asyncio
import math

import pytest

from rtpm.app.storage import make_storage
from rtpm.errors import AlreadyExists, NotFoundError
from rtpm.model.alerts import Alert, AlertRule, AlertState, Severity, ThresholdSpec, label_fingerprint
from rtpm.settings import Settings
from rtpm.storage.alert_store import HistoryQuery
from rtpm.storage.base import Storage

T0 = 1_795_000_000_000


@pytest.fixture
def engine() -> str:
    """Nothing here depends on the storage engine (alert state; back-fill only): the rows engine."""
    return "rows"


def new_rule(name: str = "HighCPU", tenant: str = "t1", **kw: object) -> AlertRule:
    return AlertRule(tenant=tenant, name=name, expr="cpu > 75", created_ms=T0, updated_ms=T0, **kw)  # type: ignore[arg-type]


def new_alert(rule: AlertRule, host: str, state: AlertState = AlertState.PENDING, at: int = T0) -> Alert:
    labels = {"alertname": rule.name, "host": host}
    assert rule.id is not None
    return Alert(
        tenant=rule.tenant,
        rule_id=rule.id,
        rule_name=rule.name,
        fingerprint=label_fingerprint(labels),
        labels=labels,
        annotations={"summary": f"{host} busy"},
        state=state,
        value=80.5,
        active_at_ms=at,
        severity=rule.severity,
        updated_ms=at,
    )


async def test_rules_round_trip_with_every_field(storage: Storage) -> None:
    store = storage.alerts
    rule = new_rule(
        severity=Severity.CRITICAL,
        for_seconds=30,
        keep_firing_for_seconds=10,
        labels={"team": "ops"},
        annotations={"summary": "{{ $labels.host }}"},
        receivers=["ops"],
        threshold=ThresholdSpec("cpu", ">", 75.0, {"host": "a"}, "avg", 300.0),
        group="node",
    )
    saved = await store.create_rule(rule)
    assert saved.id is not None
    got = await store.get_rule("t1", saved.id)
    assert got == saved
    assert await store.get_rule("t2", saved.id) is None  # tenants see only their own
    other = await store.create_rule(new_rule("Other", tenant="t2"))
    assert [r.name for r in await store.list_rules("t1")] == ["HighCPU"]
    assert [r.id for r in await store.list_rules()] == [saved.id, other.id]


async def test_rule_names_are_unique_per_tenant(storage: Storage) -> None:
    store = storage.alerts
    first = await store.create_rule(new_rule())
    with pytest.raises(AlreadyExists):
        await store.create_rule(new_rule())
    await store.create_rule(new_rule(tenant="t2"))  # another tenant may use the name
    second = await store.create_rule(new_rule("Second"))
    with pytest.raises(AlreadyExists):
        await store.update_rule(second.with_(name="HighCPU"))
    updated = await store.update_rule(first.with_(expr="cpu > 90", updated_ms=T0 + 1))
    assert (await store.get_rule("t1", first.id or 0)) == updated
    with pytest.raises(NotFoundError):
        await store.update_rule(first.with_(id=999_999))


async def test_evaluation_saves_alerts_and_a_manual_resolve_wins(storage: Storage) -> None:
    store = storage.alerts
    rule = await store.create_rule(new_rule())
    assert rule.id is not None
    saved = await store.save_evaluation(
        rule.id, alerts=[new_alert(rule, "a"), new_alert(rule, "b")], dropped=[], now_ms=T0, duration_seconds=0.01
    )
    assert all(a.id is not None for a in saved) and len(saved) == 2
    a, b = saved
    assert (await store.get_rule("t1", rule.id)).last_eval_ms == T0  # type: ignore[union-attr]
    active = await store.active_alerts(tenant="t1", rule_id=rule.id)
    assert active == saved
    # The same label set cannot be active twice.
    assert (
        await store.save_evaluation(rule.id, alerts=[new_alert(rule, "a")], dropped=[], now_ms=T0, duration_seconds=0)
        == []
    )

    # Someone resolves `a` by hand; the evaluator, which read it before, then writes it as firing.
    closed = a.with_(state=AlertState.RESOLVED, resolved_at_ms=T0 + 5, resolved_by="alice", updated_ms=T0 + 5)
    assert await store.close_alert(closed)
    assert not await store.close_alert(closed)  # only once
    firing = a.with_(state=AlertState.FIRING, fired_at_ms=T0 + 10, updated_ms=T0 + 10)
    result = await store.save_evaluation(rule.id, alerts=[firing, b], dropped=[], now_ms=T0 + 10, duration_seconds=0)
    assert [x.id for x in result] == [b.id]
    got = await store.get_alert("t1", a.id or 0)
    assert got is not None and got.state is AlertState.RESOLVED and got.resolved_by == "alice"
    assert await store.get_alert("t2", a.id or 0) is None

    # A pending alert whose condition went away is dropped.
    await store.save_evaluation(rule.id, alerts=[], dropped=[b.id or 0], now_ms=T0 + 20, duration_seconds=0)
    assert await store.active_alerts(tenant="t1") == []


async def test_alert_values_survive_storage(storage: Storage) -> None:
    store = storage.alerts
    rule = await store.create_rule(new_rule())
    assert rule.id is not None
    nan = new_alert(rule, "nan").with_(value=math.nan, keep_firing_since_ms=T0, last_sent_ms=T0 + 1)
    [saved] = await store.save_evaluation(rule.id, alerts=[nan], dropped=[], now_ms=T0, duration_seconds=0)
    [got] = await store.active_alerts(rule_id=rule.id)
    assert math.isnan(got.value)
    assert got.with_(value=0.0) == saved.with_(value=0.0)


async def test_history_filters_and_pages(storage: Storage) -> None:
    store = storage.alerts
    rule = await store.create_rule(new_rule())
    other = await store.create_rule(new_rule("Disk", severity=Severity.INFO))
    assert rule.id is not None and other.id is not None
    for i in range(5):
        [a] = await store.save_evaluation(
            rule.id, alerts=[new_alert(rule, f"h{i}", at=T0 + i * 1000)], dropped=[], now_ms=T0, duration_seconds=0
        )
        if i < 3:
            await store.close_alert(
                a.with_(state=AlertState.RESOLVED, resolved_at_ms=T0 + i * 1000 + 500, updated_ms=T0)
            )
    await store.save_evaluation(
        other.id,
        alerts=[new_alert(other, "x", AlertState.FIRING, at=T0 + 10_000)],
        dropped=[],
        now_ms=T0,
        duration_seconds=0,
    )
    page, total = await store.history(HistoryQuery("t1", limit=2))
    assert total == 6 and [a.labels["host"] for a in page] == ["x", "h4"]
    page, _ = await store.history(HistoryQuery("t1", limit=2, offset=2))
    assert [a.labels["host"] for a in page] == ["h3", "h2"]
    resolved, n = await store.history(HistoryQuery("t1", state=AlertState.RESOLVED))
    assert n == 3 and {a.labels["host"] for a in resolved} == {"h0", "h1", "h2"}
    assert (await store.history(HistoryQuery("t1", rule_id=other.id)))[1] == 1
    assert (await store.history(HistoryQuery("t1", severity=Severity.INFO)))[1] == 1
    # Active at some time in [T0 + 1600, T0 + 3000]: h2 (until +2500), h3 (+3000, open); not h0, h1, h4, x.
    window, _ = await store.history(HistoryQuery("t1", start_ms=T0 + 1600, end_ms=T0 + 3000))
    assert sorted(a.labels["host"] for a in window) == ["h2", "h3"]
    assert (await store.history(HistoryQuery("t2")))[1] == 0


async def test_deleting_a_rule_drops_its_active_alerts_and_keeps_history(storage: Storage) -> None:
    store = storage.alerts
    rule = await store.create_rule(new_rule())
    assert rule.id is not None
    a, b = await store.save_evaluation(
        rule.id, alerts=[new_alert(rule, "a"), new_alert(rule, "b")], dropped=[], now_ms=T0, duration_seconds=0
    )
    await store.close_alert(a.with_(state=AlertState.RESOLVED, resolved_at_ms=T0 + 1, updated_ms=T0 + 1))
    assert await store.delete_rule("t2", rule.id) is False
    assert await store.delete_rule("t1", rule.id) is True
    assert await store.get_rule("t1", rule.id) is None
    assert await store.active_alerts() == []
    assert (await store.history(HistoryQuery("t1")))[1] == 1


async def test_rule_evaluation_errors_are_recorded(storage: Storage) -> None:
    store = storage.alerts
    rule = await store.create_rule(new_rule())
    assert rule.id is not None
    await store.record_rule_evaluation(rule.id, now_ms=T0, duration_seconds=0.5, error="bad_data: boom")
    got = await store.get_rule("t1", rule.id)
    assert got is not None and (got.last_eval_ms, got.last_eval_seconds, got.last_error) == (T0, 0.5, "bad_data: boom")
    await store.save_evaluation(rule.id, alerts=[], dropped=[], now_ms=T0 + 1, duration_seconds=0.1)
    got = await store.get_rule("t1", rule.id)
    assert got is not None and got.last_error is None and got.last_eval_ms == T0 + 1


async def test_one_leader_at_a_time(storage: Storage, backend_settings: Settings) -> None:
    store = storage.alerts
    assert await store.try_lead("a", 30)
    assert await store.try_lead("a", 30)  # renewing
    # A second process on the same database: its own storage object.
    other = make_storage(backend_settings)
    await other.open()
    try:
        assert not await other.alerts.try_lead("b", 30)
        await store.release_lead("a")
        assert await other.alerts.try_lead("b", 30)
        assert not await store.try_lead("a", 30)
    finally:
        await store.release_lead("a")
        await other.alerts.release_lead("b")
        await other.close()


async def test_an_expired_lease_is_taken_over(storage: Storage, backend_settings: Settings) -> None:
    """A holder that stops renewing (hung or dead) loses the lease once it expires, on both
    backends; until then nobody else gets it."""
    store = storage.alerts
    assert await store.try_lead("dead", 0.3)
    other = make_storage(backend_settings)
    await other.open()
    try:
        assert not await other.alerts.try_lead("alive", 30)
        await asyncio.sleep(0.4)
        assert await other.alerts.try_lead("alive", 30)
        assert not await store.try_lead("dead", 0.3)
    finally:
        await store.release_lead("dead")
        await other.alerts.release_lead("alive")
        await other.close()


async def test_heartbeats_are_one_row_per_runner(storage: Storage) -> None:
    from rtpm.storage.alert_store import Heartbeat

    store = storage.alerts
    assert await store.heartbeats() == []
    first = Heartbeat("celery", "w1:10", T0, 3, 1, 0.25, 40.0)
    await store.record_heartbeat(first)
    await store.record_heartbeat(Heartbeat("embedded", "api:11", T0 - 5, 0, 0, 0.0, 16.5))
    later = Heartbeat("celery", "w2:12", T0 + 1000, 4, 0, 0.5, 40.0)
    await store.record_heartbeat(later)
    assert await store.heartbeats() == [later, Heartbeat("embedded", "api:11", T0 - 5, 0, 0, 0.0, 16.5)]
    assert later.stalled(later.round_ms / 1000 + 40.5) and not later.stalled(later.round_ms / 1000 + 39.5)
