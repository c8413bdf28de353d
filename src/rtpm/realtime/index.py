"""The subscription index: which live connections a series (or an alert) goes to.

Subscriptions are indexed by tenant, then by metric name (plus one "any name" set per tenant).
The first time a series shows up, its targets (the connections whose subscriptions match it,
label matchers checked once) are computed and cached; the cache entries of a metric name are
dropped when a subscription on that name changes. A commit then costs one cache lookup per series.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable
from dataclasses import dataclass, field

from rtpm.model.labels import Labels, metric_name_of
from rtpm.realtime.connection import LiveConnection, Subscription


@dataclass(eq=False, slots=True)
class Targets:
    """The connections one series goes to, with the shortest interval any of their subscriptions allows."""

    conns: tuple[tuple[LiveConnection, float], ...]


NO_TARGETS = Targets(())


@dataclass(eq=False)
class TenantIndex:
    by_name: dict[str, set[Subscription]] = field(default_factory=dict)
    any_name: set[Subscription] = field(default_factory=set)
    alerts: set[Subscription] = field(default_factory=set)
    cache: dict[str, dict[Labels, Targets]] = field(default_factory=dict)
    cached: int = 0
    metric_subs: int = 0

    def targets(self, labels: Labels, max_cached: int) -> Targets:
        name = metric_name_of(labels)
        by_labels = self.cache.get(name)
        if by_labels is None:
            by_labels = self.cache[name] = {}
        hit = by_labels.get(labels)
        if hit is not None:
            return hit
        hit = self._compute(name, labels)
        if self.cached >= max_cached:
            self.cache.clear()
            self.cached = 0
            by_labels = self.cache[name] = {}
        by_labels[labels] = hit
        self.cached += 1
        return hit

    def _compute(self, name: str, labels: Labels) -> Targets:
        named = self.by_name.get(name)
        if not named and not self.any_name:
            return NO_TARGETS
        as_dict = dict(labels)
        best: dict[LiveConnection, float] = {}
        for sub in itertools.chain(named or (), self.any_name):
            if sub.spec.matchers and not sub.matches(as_dict):
                continue
            prev = best.get(sub.conn)
            best[sub.conn] = sub.min_interval if prev is None else min(prev, sub.min_interval)
        return Targets(tuple(best.items())) if best else NO_TARGETS

    def add(self, sub: Subscription) -> None:
        if sub.spec.kind == "alerts":
            self.alerts.add(sub)
            return
        self.metric_subs += 1
        if sub.spec.metric_names is None:
            self.any_name.add(sub)
        else:
            for name in sub.spec.metric_names:
                self.by_name.setdefault(name, set()).add(sub)
        self.invalidate(sub.spec.metric_names)

    def remove(self, sub: Subscription) -> None:
        if sub.spec.kind == "alerts":
            self.alerts.discard(sub)
            return
        self.metric_subs -= 1
        if sub.spec.metric_names is None:
            self.any_name.discard(sub)
        else:
            for name in sub.spec.metric_names:
                subs = self.by_name.get(name)
                if subs is not None:
                    subs.discard(sub)
                    if not subs:
                        del self.by_name[name]
        self.invalidate(sub.spec.metric_names)

    @property
    def empty(self) -> bool:
        return not self.metric_subs and not self.alerts

    def invalidate(self, names: Iterable[str] | None) -> None:
        if names is None:
            self.cache.clear()
            self.cached = 0
            return
        for n in names:
            dropped = self.cache.pop(n, None)
            if dropped:
                self.cached -= len(dropped)


class SubscriptionIndex:
    """Every tenant's `TenantIndex`; a tenant without subscriptions has none."""

    __slots__ = ("tenants",)

    def __init__(self) -> None:
        self.tenants: dict[str, TenantIndex] = {}

    def get(self, tenant: str) -> TenantIndex | None:
        return self.tenants.get(tenant)

    def add(self, sub: Subscription) -> None:
        tenant = sub.conn.tenant
        idx = self.tenants.get(tenant)
        if idx is None:
            idx = self.tenants[tenant] = TenantIndex()
        idx.add(sub)

    def remove(self, sub: Subscription) -> None:
        tenant = sub.conn.tenant
        idx = self.tenants.get(tenant)
        if idx is None:
            return
        idx.remove(sub)
        if idx.empty:
            del self.tenants[tenant]

    def cached_series(self) -> int:
        return sum(i.cached for i in self.tenants.values())
