"""ConnectionHub with the real MemoryPubSub: matching, tenants, batching, back-pressure, caps."""

from __future__ import annotations

import math
from collections.abc import AsyncIterator

import pytest

from rtpm.errors import BadDataError, LimitExceeded, NotFoundError, OverloadedError
from rtpm.model.labels import Matcher, MatchType
from rtpm.model.samples import STALE_NAN
from rtpm.realtime.hub import ConnectionHub, HubOptions, LiveConnection
from rtpm.realtime.protocol import SubscriptionSpec
from rtpm.realtime.pubsub import MemoryPubSub
from tests._realtime import FakeSocket, batch, eventually

READ = {"metrics:read", "alerts:read"}


@pytest.fixture
async def live() -> AsyncIterator[tuple[ConnectionHub, MemoryPubSub]]:
    hub = ConnectionHub(HubOptions(queue_max_series=4, lag_close_seconds=5.0, max_connections_per_credential=3))
    pubsub = MemoryPubSub()
    pubsub.subscribe(hub)
    await pubsub.start()
    await hub.start(ticker=False)  # the tests tick by hand
    yield hub, pubsub
    await hub.close()
    await pubsub.close()


def connect(hub: ConnectionHub, tenant: str = "t1", credential: str = "k1") -> tuple[LiveConnection, FakeSocket]:
    sock = FakeSocket()
    return hub.connect(tenant=tenant, credential=credential, send=sock.send, close=sock.close), sock


def metrics(
    names: set[str] | None = None, *matchers: Matcher, max_rate: float | None = None, sub_id: str | None = None
) -> SubscriptionSpec:
    return SubscriptionSpec(
        "metrics",
        id=sub_id,
        metric_names=frozenset(names) if names else None,
        matchers=matchers,
        max_rate=max_rate,
    )


async def deliver(hub: ConnectionHub, pubsub: MemoryPubSub, *batches: object, now: float = 0.0) -> None:
    pubsub.publish_samples(list(batches))  # type: ignore[arg-type]
    await eventually(lambda: pubsub.stats().queued == 0 and pubsub.stats().delivered_local > 0)
    hub.tick(now)


async def test_subscriber_gets_exactly_the_matching_series_in_one_message_per_series(live: tuple) -> None:
    hub, pubsub = live
    conn, sock = connect(hub)
    hub.subscribe(
        conn,
        metrics({"cpu"}, Matcher("host", MatchType.REGEX, "web-.*"), Matcher("env", MatchType.NOT_EQUAL, "dev")),
        READ,
    )
    b = batch(
        "t1",
        ("cpu", {"host": "web-1"}, 1000, 1.0),
        ("cpu", {"host": "web-1"}, 2000, 2.0),
        ("cpu", {"host": "web-2", "env": "dev"}, 1000, 3.0),
        ("cpu", {"host": "db-1"}, 1000, 4.0),
        ("mem", {"host": "web-1"}, 1000, 5.0),
    )
    await deliver(hub, pubsub, b)
    await eventually(lambda: len(sock.of_type("metric")) == 1)
    msg = sock.of_type("metric")[0]
    assert msg["series"] == {"__name__": "cpu", "host": "web-1"}
    assert [s["value"] for s in msg["samples"]] == [1.0, 2.0]
    assert msg["timestamp"].endswith("Z") and msg["samples"][0]["timestamp"] == "1970-01-01T00:00:01.000Z"


async def test_commits_within_one_tick_are_batched_and_shared(live: tuple) -> None:
    hub, pubsub = live
    (c1, s1), (c2, s2) = connect(hub), connect(hub)
    hub.subscribe(c1, metrics({"cpu"}), READ)
    hub.subscribe(c2, metrics(), READ)  # the seed's form: everything
    pubsub.publish_samples([batch("t1", ("cpu", {"host": "a"}, 1000, 1.0))])
    pubsub.publish_samples([batch("t1", ("cpu", {"host": "a"}, 2000, 2.0))])
    await eventually(lambda: pubsub.stats().delivered_local == 2)
    hub.tick(0.0)
    await eventually(lambda: len(s1.frames) == 1 and len(s2.frames) == 1)
    assert s1.frames == s2.frames  # encoded once
    assert [s["value"] for s in s1.frames[0]["samples"]] == [1.0, 2.0]


async def test_tenants_are_isolated(live: tuple) -> None:
    hub, pubsub = live
    c1, s1 = connect(hub, tenant="t1")
    c2, s2 = connect(hub, tenant="t2", credential="k2")
    hub.subscribe(c1, metrics(), READ)
    hub.subscribe(c2, metrics(), READ)
    await deliver(hub, pubsub, batch("t1", ("cpu", {}, 1, 1.0)), batch("t2", ("cpu", {}, 1, 2.0)))
    await eventually(lambda: len(s1.frames) == 1 and len(s2.frames) == 1)
    assert s1.frames[0]["samples"][0]["value"] == 1.0
    assert s2.frames[0]["samples"][0]["value"] == 2.0
    hub.on_alert("t2", {"labels": {"alertname": "x"}, "state": "firing"})
    hub.subscribe(c1, SubscriptionSpec("alerts"), READ)
    hub.on_alert("t2", {"labels": {"alertname": "y"}, "state": "firing"})
    hub.tick(0.1)
    await eventually(lambda: not c1.sending)
    assert s1.of_type("alert") == []


async def test_unsubscribe_stops_updates_and_invalidates_the_match_cache(live: tuple) -> None:
    hub, pubsub = live
    conn, sock = connect(hub)
    sid = hub.subscribe(conn, metrics({"cpu"}), READ)
    await deliver(hub, pubsub, batch("t1", ("cpu", {}, 1, 1.0)))
    await eventually(lambda: len(sock.frames) == 1)
    assert hub.unsubscribe(conn, sub_id=sid) == [sid]
    await deliver(hub, pubsub, batch("t1", ("cpu", {}, 2, 2.0)), now=1.0)
    hub.subscribe(conn, metrics({"mem"}), READ)
    await deliver(hub, pubsub, batch("t1", ("cpu", {}, 3, 3.0), ("mem", {}, 3, 4.0)), now=2.0)
    await eventually(lambda: len(sock.frames) == 2)
    assert sock.frames[1]["series"]["__name__"] == "mem"
    with pytest.raises(NotFoundError):
        hub.unsubscribe(conn, sub_id=sid)


async def test_non_finite_values_are_strings(live: tuple) -> None:
    hub, pubsub = live
    conn, sock = connect(hub)
    hub.subscribe(conn, metrics({"g"}), READ)
    await deliver(hub, pubsub, batch("t1", ("g", {}, 1, math.inf), ("g", {}, 2, -math.inf), ("g", {}, 3, STALE_NAN)))
    await eventually(lambda: len(sock.frames) == 1)
    assert [s["value"] for s in sock.frames[0]["samples"]] == ["+Inf", "-Inf", "NaN"]


async def test_slow_client_is_coalesced_then_dropped_with_a_lagged_notice_then_closed(live: tuple) -> None:
    hub, pubsub = live
    fast, fast_sock = connect(hub)
    slow, slow_sock = connect(hub, credential="k2")
    for c in (fast, slow):
        hub.subscribe(c, metrics({"cpu"}), READ)
    slow_sock.gate.clear()  # the slow client's socket is full: every send blocks
    await deliver(hub, pubsub, batch("t1", ("cpu", {"i": "0"}, 1, 0.0)), now=0.0)
    await eventually(lambda: len(fast_sock.frames) == 1)
    # While its first message is stuck, updates pile up: coalesced per series, bounded to 4 series.
    for t in range(1, 4):
        series = [("cpu", {"i": str(i)}, 1 + t, float(t)) for i in (0, 2 * t - 1, 2 * t)]
        await deliver(hub, pubsub, batch("t1", *series), now=t)
    await eventually(lambda: len(fast_sock.of_type("metric")) == 1 + 3 * 3)
    assert list(slow.pending) == [(("__name__", "cpu"), ("i", str(i))) for i in range(4)]  # the bound
    # It catches up: a lagged notice with the counts, then the newest value of each kept series.
    slow_sock.gate.set()
    await eventually(lambda: not slow.sending)
    hub.tick(4.0)
    await eventually(lambda: len(slow_sock.of_type("lagged")) == 1 and not slow.sending)
    assert slow_sock.of_type("lagged")[0]["dropped"] == 3 and slow_sock.of_type("lagged")[0]["coalesced"] == 2
    values = {m["series"]["i"]: m["samples"][0]["value"] for m in slow_sock.of_type("metric")[1:]}
    assert values == {"0": 3.0, "1": 1.0, "2": 1.0, "3": 2.0}
    # Stuck again, and for longer than lag_close_seconds (5): closed with 1013.
    slow_sock.gate.clear()
    await deliver(hub, pubsub, batch("t1", ("cpu", {"i": "0"}, 10, 1.0)), now=5.0)
    await deliver(hub, pubsub, batch("t1", ("cpu", {"i": "0"}, 11, 1.0)), now=6.0)
    hub.tick(11.5)
    await eventually(lambda: slow_sock.closed is not None)
    assert slow_sock.closed is not None and slow_sock.closed[0] == 1013
    assert slow.closed and hub.connection_count == 1 and hub.stats.closed_lagging == 1
    # The fast client never waited for the slow one.
    assert len(fast_sock.of_type("metric")) == 12


async def test_max_rate_holds_back_and_keeps_the_newest(live: tuple) -> None:
    hub, pubsub = live
    conn, sock = connect(hub)
    hub.subscribe(conn, metrics({"cpu"}, max_rate=1.0), READ)  # one message per series per second
    await deliver(hub, pubsub, batch("t1", ("cpu", {}, 1, 1.0)), now=10.0)
    await eventually(lambda: len(sock.frames) == 1)
    await deliver(hub, pubsub, batch("t1", ("cpu", {}, 2, 2.0)), now=10.2)
    await deliver(hub, pubsub, batch("t1", ("cpu", {}, 3, 3.0)), now=10.4)
    assert len(sock.frames) == 1
    hub.tick(11.1)
    await eventually(lambda: len(sock.frames) == 2)
    assert sock.frames[1]["samples"] == [{"timestamp": "1970-01-01T00:00:00.003Z", "value": 3.0}]
    assert sock.of_type("lagged") == []  # asked for, not lag


async def test_alerts_go_to_alert_subscribers_with_matching_labels(live: tuple) -> None:
    hub, pubsub = live
    conn, sock = connect(hub)
    hub.subscribe(conn, SubscriptionSpec("alerts", matchers=(Matcher("severity", MatchType.EQUAL, "critical"),)), READ)
    pubsub.publish_alert("t1", {"labels": {"alertname": "HighCPU", "severity": "critical"}, "state": "firing"})
    pubsub.publish_alert("t1", {"labels": {"alertname": "Disk", "severity": "warning"}, "state": "firing"})
    await eventually(lambda: pubsub.stats().delivered_local == 2)
    hub.tick(0.0)
    await eventually(lambda: len(sock.frames) == 1)
    assert sock.frames[0]["type"] == "alert"
    assert sock.frames[0]["alert"]["labels"]["alertname"] == "HighCPU"


async def test_limits_scopes_and_connection_caps(live: tuple) -> None:
    hub, _ = live
    conn, _ = connect(hub)
    with pytest.raises(BadDataError, match="alerts:read"):
        hub.subscribe(conn, SubscriptionSpec("alerts"), {"metrics:read"})
    for i in range(hub.opts.max_subscriptions_per_connection):
        hub.subscribe(conn, metrics({f"m{i}"}), READ)
    with pytest.raises(LimitExceeded):
        hub.subscribe(conn, metrics({"one_more"}), READ)
    hub.unsubscribe(conn)
    hub.subscribe(conn, metrics(sub_id="mine"), READ)
    with pytest.raises(BadDataError, match="exists"):
        hub.subscribe(conn, metrics(sub_id="mine"), READ)
    connect(hub)
    connect(hub)
    with pytest.raises(OverloadedError, match="credential"):
        connect(hub)
    connect(hub, credential="other")  # another credential still gets in
    hub.disconnect(conn)
    connect(hub)  # a slot came free


async def test_publish_queue_is_bounded_and_counts_drops() -> None:
    pubsub = MemoryPubSub(max_queued_samples=3)
    pubsub.publish_samples([batch("t", ("a", {}, 1, 1.0), ("a", {}, 2, 1.0))])
    pubsub.publish_samples([batch("t", ("a", {}, 3, 1.0), ("a", {}, 4, 1.0))])
    stats = pubsub.stats()
    assert stats.queued == 1 and stats.dropped_batches == 1 and stats.dropped_samples == 2
