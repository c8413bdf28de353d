"""Notification delivery: webhook v4 payload and signature, Alertmanager's API shape, retries with
backoff, a receiver that is down never blocks the others, bounded queues, counted outcomes.
Receivers talk to `httpx.MockTransport` handlers; backoff sleeps are injected (no real waiting)."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
from collections.abc import Callable

import httpx
from prometheus_client import CollectorRegistry

from rtpm.alerts.evaluator import Notification, NotificationKind
from rtpm.metrics import Metrics
from rtpm.model.alerts import Alert, AlertRule, AlertState, label_fingerprint
from rtpm.notify.dispatcher import Dispatcher, DispatchOptions
from rtpm.notify.receivers.alertmanager import AlertmanagerReceiver
from rtpm.notify.receivers.webhook import SIGNATURE_HEADER, WebhookReceiver

T0 = 1_700_000_000_000
RULE = AlertRule(tenant="t", name="HighCPU", expr="cpu > 75", id=3)


def note(kind: NotificationKind, host: str = "a", rule: AlertRule = RULE) -> Notification:
    labels = {"alertname": rule.name, "host": host, "severity": "warning"}
    state = AlertState.RESOLVED if kind is NotificationKind.RESOLVED else AlertState.FIRING
    alert = Alert(
        tenant="t",
        rule_id=rule.id or 0,
        rule_name=rule.name,
        fingerprint=label_fingerprint(labels),
        labels=labels,
        annotations={"summary": f"{host} hot"},
        state=state,
        value=90.0,
        active_at_ms=T0,
        fired_at_ms=T0 + 1000,
        resolved_at_ms=T0 + 9000 if state is AlertState.RESOLVED else None,
        id=11,
    )
    return Notification(kind, alert, rule, T0 + 240_000 if state is AlertState.FIRING else T0 + 9000)


Handler = Callable[[httpx.Request], httpx.Response]


def client(handler: Handler) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.MockTransport(handler))


async def no_sleep(_: float) -> None:
    await asyncio.sleep(0)


async def test_webhook_sends_v4_payload_signed_with_hmac() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200)

    async with client(handler) as c:
        r = WebhookReceiver("ops", "http://hook.test/x", c, secret="k", external_url="http://rtpm:8000")
        await r.send([note(NotificationKind.FIRING, "a"), note(NotificationKind.FIRING, "b")])
    [req] = seen
    body = json.loads(req.content)
    assert req.headers[SIGNATURE_HEADER] == "sha256=" + hmac.new(b"k", req.content, hashlib.sha256).hexdigest()
    assert req.headers["content-type"] == "application/json"
    assert body["version"] == "4" and body["status"] == "firing" and body["receiver"] == "ops"
    assert body["commonLabels"] == {"alertname": "HighCPU", "severity": "warning"}
    assert body["commonAnnotations"] == {}
    assert body["externalURL"] == "http://rtpm:8000"
    a = body["alerts"][0]
    assert a["startsAt"] == "2023-11-14T22:13:21.000Z" and a["endsAt"] == "2023-11-14T22:17:20.000Z"
    assert a["generatorURL"] == "http://rtpm:8000/graph?g0.expr=cpu%20%3E%2075&g0.tab=1"
    assert a["fingerprint"] == label_fingerprint(a["labels"])


async def test_webhook_without_secret_is_unsigned_and_skips_resends() -> None:
    r = WebhookReceiver("ops", "http://hook.test/x", httpx.AsyncClient())
    assert not r.accepts(note(NotificationKind.RESEND))
    assert r.accepts(note(NotificationKind.RESOLVED))
    assert not r.accepts(note(NotificationKind.FIRING, rule=RULE.with_(receivers=["other"])))
    await r._client.aclose()


async def test_alertmanager_gets_its_api_shape_including_resends() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200)

    async with client(handler) as c:
        r = AlertmanagerReceiver("am", "http://am.test:9093/", c)
        assert r.accepts(note(NotificationKind.RESEND))
        await r.send([note(NotificationKind.RESOLVED)])
    [req] = seen
    assert req.url == "http://am.test:9093/api/v2/alerts"
    [alert] = json.loads(req.content)
    assert set(alert) == {"labels", "annotations", "startsAt", "endsAt", "generatorURL"}
    assert alert["endsAt"] == "2023-11-14T22:13:29.000Z"


async def test_failed_deliveries_are_retried_with_backoff_and_counted() -> None:
    calls = 0

    def flaky(request: httpx.Request) -> httpx.Response:
        nonlocal calls
        calls += 1
        return httpx.Response(503 if calls < 3 else 200)

    delays: list[float] = []

    async def sleep(s: float) -> None:
        delays.append(s)

    registry = CollectorRegistry()
    metrics = Metrics.create(registry).alerts
    async with client(flaky) as c:
        d = Dispatcher(
            [WebhookReceiver("ops", "http://hook.test/x", c)],
            DispatchOptions(max_attempts=5, backoff_seconds=1, backoff_max_seconds=30),
            metrics=metrics,
            sleep=sleep,
        )
        await d.start()
        await d.notify([note(NotificationKind.FIRING)])
        assert await d.drain(5)
        await d.close()
    assert calls == 3
    assert d.stats["ops"].sent == 1 and d.stats["ops"].retries == 2
    assert 0.8 <= delays[0] <= 1.2 and 1.6 <= delays[1] <= 2.4  # exponential, with jitter
    assert registry.get_sample_value("rtpm_notifications_sent_total", {"receiver": "webhook"}) == 1


async def test_a_receiver_that_is_down_blocks_nobody_and_gives_up_counted() -> None:
    delivered: list[str] = []
    release = asyncio.Event()

    def down(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    def up(request: httpx.Request) -> httpx.Response:
        delivered.append(json.loads(request.content)["status"])
        return httpx.Response(200)

    async def slow_sleep(_: float) -> None:
        await release.wait()  # the broken receiver's backoff hangs until we let it go

    registry = CollectorRegistry()
    metrics = Metrics.create(registry).alerts
    async with client(down) as c_down, client(up) as c_up:
        d = Dispatcher(
            [WebhookReceiver("broken", "http://down.test/", c_down), WebhookReceiver("fine", "http://up.test/", c_up)],
            DispatchOptions(max_attempts=3),
            metrics=metrics,
            sleep=slow_sleep,
        )
        await d.start()
        await d.notify([note(NotificationKind.FIRING)])  # returns at once
        await d.notify([note(NotificationKind.RESOLVED)])
        for _ in range(100):
            if len(delivered) == 2:
                break
            await asyncio.sleep(0.01)
        assert delivered == ["firing", "resolved"]  # while "broken" is still backing off
        assert d.stats["broken"].sent == 0
        release.set()
        assert await d.drain(5)
        await d.close()
    assert d.stats["broken"].failed == 2 and d.stats["broken"].retries == 4
    assert registry.get_sample_value("rtpm_notifications_failed_total", {"receiver": "webhook"}) == 2
    assert registry.get_sample_value("rtpm_notifications_sent_total", {"receiver": "webhook"}) == 2


async def test_client_errors_are_not_retried() -> None:
    calls = 0

    def bad(request: httpx.Request) -> httpx.Response:
        nonlocal calls
        calls += 1
        return httpx.Response(400, text="bad payload")

    async with client(bad) as c:
        d = Dispatcher([WebhookReceiver("ops", "http://hook.test/", c)], sleep=no_sleep)
        await d.start()
        await d.notify([note(NotificationKind.FIRING)])
        assert await d.drain(5)
        await d.close()
    assert calls == 1 and d.stats["ops"].failed == 1 and "400" in (d.stats["ops"].last_error or "")


async def test_queue_is_bounded_and_overflow_is_dropped_and_counted() -> None:
    gate = asyncio.Event()

    async def blocked_send(request: httpx.Request) -> httpx.Response:
        await gate.wait()
        return httpx.Response(200)

    registry = CollectorRegistry()
    metrics = Metrics.create(registry).alerts
    async with httpx.AsyncClient(transport=httpx.MockTransport(blocked_send)) as c:
        d = Dispatcher([WebhookReceiver("ops", "http://hook.test/", c)], DispatchOptions(queue_size=2), metrics=metrics)
        await d.start()
        for i in range(5):
            await d.notify([note(NotificationKind.FIRING, rule=RULE.with_(id=100 + i))])
            await asyncio.sleep(0)
        # One batch in flight, two queued, two dropped.
        assert d.stats["ops"].dropped == 2
        assert registry.get_sample_value("rtpm_notifications_dropped_total") == 2
        gate.set()
        assert await d.drain(5)
        await d.close()
    assert d.stats["ops"].sent == 3


async def test_notifications_are_grouped_per_rule_and_kind() -> None:
    bodies: list[dict[str, object]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        bodies.append(json.loads(request.content))
        return httpx.Response(200)

    async with client(handler) as c:
        d = Dispatcher([WebhookReceiver("ops", "http://hook.test/", c)])
        await d.start()
        other = RULE.with_(id=4, name="Other")
        await d.notify(
            [
                note(NotificationKind.FIRING, "a"),
                note(NotificationKind.FIRING, "b"),
                note(NotificationKind.RESOLVED, "c"),
                note(NotificationKind.FIRING, "d", rule=other),
            ]
        )
        assert await d.drain(5)
        await d.close()
    assert sorted((b["status"], len(b["alerts"])) for b in bodies) == [  # type: ignore[arg-type]
        ("firing", 1),
        ("firing", 2),
        ("resolved", 1),
    ]
