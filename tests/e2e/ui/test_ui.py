"""The web UI in headless Chromium against a real `rtpm serve`: log in, find a metric, chart it
with the right number of points, live mode shows a newly pushed sample, a threshold rule made in
the form fires and is resolved by hand, dashboards persist, the status page shows the service.
Every page is screenshotted at 1280x800 and 390x844."""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests._auth import TEST_ADMIN_PASSWORD
from tests._server import RtpmServer
from tests.e2e.ui.conftest import DESKTOP, PHONE

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

STEP = 30
POINTS = 20


def push(server: RtpmServer, items: list[dict[str, Any]]) -> None:
    r = httpx.post(server.url + "/api/v1/metrics/batch", json={"metrics": items}, headers=server.headers, timeout=30)
    assert r.status_code == 201, r.text


def local_input(ts: float) -> str:
    """The value of a datetime-local input for unix seconds (the browser runs in UTC)."""
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%S")


def shoot(page: Any, folder: Path, name: str) -> None:
    """Screenshots at both sizes; nothing may stick out sideways on the phone."""
    page.set_viewport_size(DESKTOP)
    page.wait_for_timeout(250)
    page.screenshot(path=str(folder / f"{name}-1280x800.png"), full_page=True)
    page.set_viewport_size(PHONE)
    page.wait_for_timeout(250)
    page.screenshot(path=str(folder / f"{name}-390x844.png"), full_page=True)
    overflow = page.evaluate("document.documentElement.scrollWidth - document.documentElement.clientWidth")
    assert overflow <= 0, f"{name}: the page is {overflow}px wider than a 390px screen"
    page.set_viewport_size(DESKTOP)
    page.wait_for_timeout(150)


def login(page: Any, server: RtpmServer, folder: Path | None = None) -> None:
    page.goto(server.url + "/")
    page.wait_for_selector("#login-form")
    if folder is not None:
        page.fill("#login-user", "admin")
        page.fill("#login-pass", "not the password")
        page.click("#login-form button[type=submit]")
        page.wait_for_selector("#login-form .form-error:not([hidden])")
        assert "Wrong user name or password" in page.inner_text("#login-form .form-error")
        shoot(page, folder, "login")
    page.fill("#login-user", "admin")
    page.fill("#login-pass", TEST_ADMIN_PASSWORD)
    page.click("#login-form button[type=submit]")
    page.wait_for_selector("#view[data-view=explorer]")


def watch_errors(page: Any) -> list[str]:
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    return errors


def test_login_explore_chart_and_live(
    server_factory: Callable[..., RtpmServer], browser_context: Any, screenshots: Path
) -> None:
    from playwright.sync_api import expect

    server = server_factory()
    t0 = (int(time.time()) // STEP) * STEP - 900
    items = []
    for host in ("web-1", "web-2"):
        for i in range(POINTS):
            items.append(
                {
                    "name": "ui_cpu_usage",
                    "value": 40 + i + (5 if host == "web-2" else 0),
                    "labels": {"host": host},
                    "timestamp": t0 + i * STEP,
                    "type": "gauge",
                    "unit": "percent",
                    "help_text": "Share of CPU time busy",
                }
            )
    items.append({"name": "ui_queue_depth", "value": 3, "labels": {"queue": "mail"}, "type": "gauge"})
    push(server, items)

    page = browser_context.new_page()
    errors = watch_errors(page)
    login(page, server, screenshots)
    assert page.evaluate("sessionStorage.getItem('rtpm.session')") is not None

    # Find the metric: the list shows type, unit and help; the search narrows it.
    page.wait_for_selector(".metric-item[data-name=ui_queue_depth]")
    page.fill("#metric-search", "cpu")
    page.wait_for_selector(".metric-item[data-name=ui_queue_depth]", state="detached")
    item = page.locator(".metric-item[data-name=ui_cpu_usage]")
    assert "gauge" in item.inner_text() and "percent" in item.inner_text()
    assert "Share of CPU time busy" in item.inner_text()
    item.click()
    page.wait_for_selector("#chart .chart[data-series='2']")

    # Label filter with autocomplete from the server's label names and values.
    page.fill("#filter-name", "host")
    page.wait_for_function("() => document.querySelectorAll('#label-values option').length === 2")
    values = page.eval_on_selector_all("#label-values option", "os => os.map(o => o.value)")
    assert values == ["web-1", "web-2"]
    assert page.eval_on_selector_all("#label-names option", "os => os.map(o => o.value)") == ["host"]
    page.fill("#filter-value", "web-1")
    page.click("#filter-add")
    page.wait_for_selector("#chart .chart[data-series='1']")
    assert page.input_value("#promql") == 'ui_cpu_usage{host="web-1"}'

    # A custom range over exactly the pushed samples at their step: one point per sample.
    page.select_option("#explorer-range", "custom")
    page.fill("input[aria-label=From]", local_input(t0))
    page.fill("input[aria-label=To]", local_input(t0 + (POINTS - 1) * STEP))
    page.fill("input[aria-label=Step]", f"{STEP}s")
    page.press("input[aria-label=Step]", "Enter")
    page.click("#run")
    page.wait_for_selector(f"#chart .chart[data-points='{POINTS}']")
    page.wait_for_selector(f".legend-item[data-points='{POINTS}']")
    # (expect() retries: pressing Enter and clicking Run may both redraw the legend)
    legend = page.locator(".legend-item")
    expect(legend).to_have_count(1)
    expect(legend).to_contain_text('host="web-1"')
    expect(legend).to_have_attribute("data-points", str(POINTS))
    expect(legend).to_contain_text("59%")  # the last value, with its unit

    # Hover: the values under the pointer, with units.
    box = page.locator("#chart .chart-stage").bounding_box()
    page.mouse.move(box["x"] + box["width"] * 0.75, box["y"] + box["height"] / 2)
    page.wait_for_selector(".chart-tip:not([hidden])")
    assert re.search(r"\d+%", page.inner_text(".chart-tip"))
    shoot(page, screenshots, "explorer")

    # Live: the chart follows the present; a sample pushed now appears in it.
    page.click("#live-toggle")
    page.wait_for_selector("#live-state[data-state=open]")
    page.wait_for_timeout(1000)  # the subscription is sent on open; give the server time to register it
    before = int(page.get_attribute("#chart .chart", "data-points") or "0")
    push(server, [{"name": "ui_cpu_usage", "value": 97.25, "labels": {"host": "web-1"}}])
    page.wait_for_selector(".legend-item[data-last='97.25']")
    assert "97.3%" in page.inner_text(".legend-item")
    after = int(page.get_attribute("#chart .chart", "data-points") or "0")
    assert after == before + 1
    # A sample of another host is not in this query's selector, so it does not appear.
    push(server, [{"name": "ui_cpu_usage", "value": 1.5, "labels": {"host": "web-2"}}])
    push(server, [{"name": "ui_cpu_usage", "value": 98.5, "labels": {"host": "web-1"}}])
    page.wait_for_selector(".legend-item[data-last='98.5']")
    assert page.locator(".legend-item").count() == 1
    shoot(page, screenshots, "explorer-live")
    page.click("#live-toggle")
    assert page.get_attribute("#live-toggle", "aria-pressed") == "false"
    assert errors == []

    # The session ends with logout; the explorer then asks for a login again.
    page.click("#logout")
    page.wait_for_selector("#login-form")
    assert page.evaluate("sessionStorage.getItem('rtpm.session')") is None


def test_threshold_rule_fires_and_is_resolved(
    server_factory: Callable[..., RtpmServer], browser_context: Any, screenshots: Path
) -> None:
    server = server_factory()
    push(server, [{"name": "ui_temp", "value": 91, "labels": {"room": "a"}, "type": "gauge", "unit": "celsius"}])
    page = browser_context.new_page()
    errors = watch_errors(page)
    login(page, server)
    page.click("#nav a[data-view=alerts]")
    page.wait_for_selector("#active-alerts")
    assert "No active alerts" in page.inner_text("#active-alerts")

    page.click("#new-rule")
    page.wait_for_selector("#rule-form")
    page.fill("#rule-name", "RoomTooHot")
    page.select_option("#rule-severity", "critical")
    page.fill("#rule-for", "0s")
    page.fill("#rule-interval", "1s")
    page.fill("#rule-metric", "ui_temp")
    page.fill("#rule-labels", "room=a")
    page.select_option("#rule-condition", ">")
    page.fill("#rule-threshold", "80")
    page.fill("#rule-summary", "Room {{ $labels.room }} is {{ $value }}")
    shoot(page, screenshots, "alerts-rule-form")
    page.click("#rule-save")
    page.wait_for_selector(".rule-row")
    assert 'ui_temp{room="a"} > 80' in page.inner_text(".rule-row .expr")
    shoot(page, screenshots, "alerts-rules")

    # A bad rule is refused with the server's reason, next to the form.
    page.click("#new-rule")
    page.click("#rule-mode-promql")
    page.fill("#rule-name", "Broken")
    page.fill("#rule-expr", "sum(")
    page.click("#rule-save")
    page.wait_for_selector("#rule-form .form-error:not([hidden])")
    assert page.inner_text("#rule-form .form-error").strip()
    page.click("#rule-form button:has-text('Cancel')")

    page.click("#tab-active")
    row = page.locator(".alert-row[data-rule=RoomTooHot]")
    row.wait_for(timeout=20_000)
    page.wait_for_selector(".alert-row[data-rule=RoomTooHot] .state-firing", timeout=20_000)
    text = row.inner_text()
    assert "critical" in text and "room=a" in text and "91" in text
    alert_id = row.get_attribute("data-alert-id")
    shoot(page, screenshots, "alerts-active")

    row.locator("button.resolve").click()
    page.wait_for_selector(f".alert-row[data-alert-id='{alert_id}']", state="detached")
    page.click("#tab-history")
    resolved = page.locator(f".history-row[data-alert-id='{alert_id}']")
    resolved.wait_for()
    assert "resolved" in resolved.inner_text().lower()
    assert resolved.locator(".resolved-by").inner_text().strip() != ""
    shoot(page, screenshots, "alerts-history")
    assert errors == []


def test_dashboards_and_status(
    server_factory: Callable[..., RtpmServer], browser_context: Any, screenshots: Path
) -> None:
    server = server_factory()
    now = time.time()
    push(
        server,
        [
            {"name": "ui_req_seconds", "value": 0.1 + i / 100, "labels": {"path": p}, "timestamp": now - 600 + i * 30}
            for i in range(20)
            for p in ("/a", "/b", "/c")
        ],
    )
    page = browser_context.new_page()
    errors = watch_errors(page)
    login(page, server)
    page.click("#nav a[data-view=dashboards]")
    page.wait_for_selector("#dash-new")
    page.click("#dash-new")
    page.wait_for_selector("#panel-form")
    page.fill("#dash-title", "Service latency")
    page.fill("#panel-title", "Latency by path")
    page.fill("#panel-query", "ui_req_seconds")
    page.fill("#panel-unit", "seconds")
    page.check("#panel-wide")
    page.click("#panel-add")
    page.wait_for_selector(".panel[data-panel='0'] .chart[data-series='3']")
    page.fill("#panel-title", "Slowest path")
    page.fill("#panel-query", "max(ui_req_seconds)")
    page.click("#panel-add")
    page.wait_for_selector(".panel[data-panel='1'] .chart[data-series='1']")
    page.click("#dash-edit")  # done editing

    # Stored on the server, per tenant: a reload shows the same panels.
    r = httpx.get(server.url + "/api/v1/dashboards", headers=server.headers, timeout=10)
    assert [d["title"] for d in r.json()["dashboards"]] == ["Service latency"]
    page.reload()
    page.wait_for_selector(".panel[data-panel='1'] .chart[data-series='1']")
    assert page.locator(".panel").count() == 2
    assert "ms" in page.inner_text(".panel[data-panel='0'] .legend-item >> nth=0")
    shoot(page, screenshots, "dashboards")

    page.click("#nav a[data-view=status]")
    page.wait_for_selector("#health-checks tr[data-check=storage]")
    assert "up" in page.inner_text("#health-checks tr[data-check=storage]")
    assert page.inner_text("#stat-series .stat-value").strip() == "3"
    page.wait_for_function(
        "() => !document.querySelector('#stat-ingest .stat-value').textContent.includes('measuring')"
    )
    assert "ui_req_seconds" in page.inner_text("#top-metrics")
    shoot(page, screenshots, "status")
    assert errors == []
