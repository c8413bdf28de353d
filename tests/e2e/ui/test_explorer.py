"""Issue 16's web UI items in headless Chromium against a real `rtpm serve`: autocomplete of metric
names, label names and values in the PromQL box; whether the filter chips apply to a typed query;
a table view beside the chart; no "No data" under a query error; the last query kept; live mode on
a short window whose header counts what is drawn. Screenshots at 1280x800 and 390x844."""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests._server import RtpmServer
from tests.e2e.ui.test_ui import login, push, shoot, watch_errors

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

POINTS = 12
STEP = 20


def test_explorer_autocomplete_scope_table_errors_last_query_and_live(
    server_factory: Callable[..., RtpmServer], browser_context: Any, screenshots: Path
) -> None:
    from playwright.sync_api import expect

    server = server_factory()
    now = int(time.time())
    t0 = now - POINTS * STEP - 60
    items: list[dict[str, Any]] = []
    for host, base in (("web-1", 10), ("web-2", 50)):
        for i in range(POINTS):
            items.append({"name": "ui16_cpu", "value": base + i, "labels": {"host": host}, "timestamp": t0 + i * STEP})
    items.append({"name": "ui16_memory", "value": 1, "labels": {"host": "web-1"}, "timestamp": now - 5})
    push(server, items)

    page = browser_context.new_page()
    errors = watch_errors(page)
    login(page, server)
    page.wait_for_selector(".metric-item[data-name=ui16_cpu]")

    # -- autocomplete: metric name, label name, label value ---------------------------------
    box = page.locator("#promql")
    box.click()
    box.press_sequentially("ui16_c")
    page.wait_for_selector("#promql-suggest:not([hidden]) .suggest-item[data-value=ui16_cpu]")
    assert page.locator("#promql-suggest .suggest-item[data-kind=metric]").count() == 1  # not ui16_memory
    box.press("Enter")  # takes the suggestion; does not run the query
    assert box.input_value() == "ui16_cpu"
    box.press_sequentially("{")
    page.wait_for_selector("#promql-suggest:not([hidden]) .suggest-item[data-value=host]")
    box.press("Tab")
    assert box.input_value() == 'ui16_cpu{host="'
    page.wait_for_selector("#promql-suggest:not([hidden]) .suggest-item[data-value=web-2]")
    values = page.eval_on_selector_all("#promql-suggest .suggest-item", "els => els.map(e => e.dataset.value)")
    assert values == ["web-1", "web-2"]
    shoot(page, screenshots, "explorer-autocomplete")
    box.press("ArrowDown")
    box.press("Enter")
    assert box.input_value() == 'ui16_cpu{host="web-2"'
    box.press_sequentially("}")
    page.wait_for_selector("#promql-suggest", state="hidden")
    box.press("Enter")  # nothing suggested: runs the query
    page.wait_for_selector("#chart .chart[data-series='1']")
    expect(page.locator(".legend-item")).to_contain_text('host="web-2"')

    # -- do the filter chips apply? ------------------------------------------------------------
    assert "do not apply to a typed query" in page.inner_text("#filter-scope")
    page.click(".metric-item[data-name=ui16_cpu]")
    page.wait_for_selector("#chart .chart[data-series='2']")
    expect(page.locator("#filter-scope")).to_have_attribute("data-applies", "true")
    page.fill("#filter-name", "host")
    page.fill("#filter-value", "web-1")
    page.click("#filter-add")
    page.wait_for_selector("#chart .chart[data-series='1']")
    assert "Filters narrow ui16_cpu" in page.inner_text("#filter-scope")
    box.fill('ui16_cpu{host="web-1"} * 2')
    expect(page.locator("#filter-scope")).to_have_attribute("data-applies", "false")
    assert "do not apply to a typed query" in page.inner_text("#filter-scope")
    box.fill('ui16_cpu{host="web-1"}')
    expect(page.locator("#filter-scope")).to_have_attribute("data-applies", "true")

    # -- the table beside the chart: the drawn series with last/min/avg/max/points ---------------
    page.click("#run")
    page.wait_for_selector("#chart .chart[data-series='1']")
    drawn = int(page.get_attribute("#chart .chart", "data-points") or "0")
    assert drawn >= POINTS - 1
    page.click("#show-table")
    page.wait_for_selector("#result-table:not([hidden]) tbody tr")
    rows = page.locator("#result-table tbody tr")
    expect(rows).to_have_count(1)
    assert rows.first.get_attribute("data-points") == str(drawn)
    assert rows.first.get_attribute("data-last") == str(10 + POINTS - 1)
    cells = rows.first.locator("td").all_inner_texts()
    assert 'host="web-1"' in cells[0] and cells[3] == "10" and cells[5] == str(10 + POINTS - 1)
    assert page.is_hidden("#chart")
    assert "view=table" in page.url
    shoot(page, screenshots, "explorer-table")
    page.click("#show-chart")
    page.wait_for_selector("#chart:not([hidden])")

    # -- a query error is not "no data" ----------------------------------------------------------
    box.fill("nothing_stored_here")
    box.press("Control+Enter")
    page.wait_for_selector("#chart .chart[data-message='No data in this time range']")
    box.fill("sum(ui16_cpu")
    box.press("Control+Enter")
    page.wait_for_selector("#query-error:not([hidden])")
    page.wait_for_selector("#chart .chart[data-message='']")
    assert page.inner_text("#chart-info") == ""
    shoot(page, screenshots, "explorer-error")

    # -- the last query comes back ---------------------------------------------------------------
    box.fill('ui16_cpu{host="web-2"}')
    box.press("Control+Enter")
    page.wait_for_selector("#chart .chart[data-series='1']")
    page.goto(server.url + "/#/alerts")
    page.wait_for_selector("#view[data-view=alerts]")
    page.goto(server.url + "/#/explorer")
    page.wait_for_selector("#view[data-view=explorer]")
    expect(page.locator("#promql")).to_have_value('ui16_cpu{host="web-2"}')
    page.wait_for_selector("#chart .chart[data-series='1']")

    # -- live: a short window that follows the data, and a header that counts what is drawn ------
    assert page.input_value("#explorer-range") == "1h"
    page.click("#live-toggle")
    page.wait_for_selector("#live-state[data-state=open]")
    expect(page.locator("#live-state")).to_contain_text("last 5 min")
    page.wait_for_selector("#chart .chart[data-span='300000']")  # not the picked hour
    page.wait_for_timeout(1000)  # the subscription is sent on open; give the server time to register it
    for value in (71.5, 72.5, 73.5):
        push(server, [{"name": "ui16_cpu", "value": value, "labels": {"host": "web-2"}}])
        page.wait_for_selector(f".legend-item[data-last='{value}']")
    points = int(page.get_attribute("#chart .chart", "data-points") or "0")
    expect(page.locator("#chart-info")).to_have_text(re.compile(r"^1 series · \d+ points · live$"))
    shown = int(re.findall(r"(\d+) points", page.inner_text("#chart-info"))[0])
    assert shown == int(page.get_attribute("#chart .chart", "data-points") or "-1")
    assert points >= 3 and shown >= 3
    shoot(page, screenshots, "explorer-live-window")
    page.click("#live-toggle")
    assert errors == []
