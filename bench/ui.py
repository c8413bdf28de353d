"""Web UI figures against a running server (it starts nothing): page load to first chart with N
series, and the browser's JS heap while live mode takes R updates/s per series.

    rtpm serve &    # with RTPM_ADMIN_PASSWORD set
    python bench/ui.py --password "$RTPM_ADMIN_PASSWORD" --series 100 --rate 10 --seconds 20
"""

from __future__ import annotations

import argparse
import tempfile
import threading
import time

import httpx
from playwright.sync_api import sync_playwright

ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--url", default="http://127.0.0.1:8000")
    ap.add_argument("--user", default="admin")
    ap.add_argument("--password", required=True)
    ap.add_argument("--series", type=int, default=100)
    ap.add_argument("--rate", type=float, default=10.0, help="live updates per second per series")
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--window", type=float, default=0, help="live window in seconds (default: the last 15 m)")
    ap.add_argument("--chromium", default="/usr/bin/chromium")
    a = ap.parse_args()

    token = httpx.post(a.url + "/api/v1/auth/login", json={"username": a.user, "password": a.password}).json()[
        "access_token"
    ]
    headers = {"Authorization": f"Bearer {token}"}
    now = time.time()
    history = [
        {"name": "bench_ui", "value": (i * 7 + s) % 100, "labels": {"s": f"s{s:03d}"}, "timestamp": now - 900 + i * 5}
        for s in range(a.series)
        for i in range(180)
    ]
    for i in range(0, len(history), 10000):
        httpx.post(a.url + "/api/v1/metrics/batch", json={"metrics": history[i : i + 10000]}, headers=headers)

    with sync_playwright() as pw:
        ctx = pw.chromium.launch_persistent_context(
            tempfile.mkdtemp(),
            executable_path=a.chromium,
            args=ARGS,
            headless=True,
            viewport={"width": 1280, "height": 800},
        )
        page = ctx.new_page()
        page.goto(a.url + "/")
        page.fill("#login-user", a.user)
        page.fill("#login-pass", a.password)
        page.click("#login-form button[type=submit]")
        page.wait_for_selector("#view[data-view=explorer]")
        if a.window:
            end_ms = int(time.time() * 1000)
            page.goto(a.url + f"/#/explorer?q=bench_ui&start={end_ms - int(a.window * 1000)}&end={end_ms}")
        else:
            page.goto(a.url + "/#/explorer?q=bench_ui&range=15m")
        page.reload()  # a cold navigation, with the session in sessionStorage
        page.wait_for_selector(f"#chart .chart[data-series='{a.series}']")
        load = page.evaluate(
            """() => {
              const nav = performance.getEntriesByType('navigation')[0];
              const drawn = performance.getEntriesByName('rtpm:chart-drawn').pop();
              return {dcl: nav.domContentLoadedEventEnd, load: nav.loadEventEnd, chart: drawn ? drawn.startTime : null};
            }"""
        )
        # The first draw comes before the data (an empty frame): time to the frame with all series.
        data_drawn = page.evaluate(
            "() => performance.getEntriesByType('resource').filter(r => r.name.includes('query_range')).pop().responseEnd"
        )
        print(
            f"load: DOMContentLoaded {load['dcl']:.0f} ms, load {load['load']:.0f} ms, "
            f"query answered {data_drawn:.0f} ms, {a.series} series on screen by {data_drawn + 16:.0f}-ish ms"
        )

        cdp = ctx.new_cdp_session(page)
        cdp.send("Performance.enable")

        def heap() -> float:
            cdp.send("HeapProfiler.collectGarbage")
            metrics = {m["name"]: m["value"] for m in cdp.send("Performance.getMetrics")["metrics"]}
            return metrics["JSHeapUsedSize"] / 2**20

        page.click("#live-toggle")
        page.wait_for_selector("#live-state[data-state=open]")
        time.sleep(0.5)
        stop = threading.Event()
        sent = [0]

        def pusher() -> None:
            with httpx.Client(headers=headers) as client:
                tick = 1.0 / a.rate
                nxt = time.monotonic()
                while not stop.is_set():
                    t = time.time()
                    batch = [
                        {"name": "bench_ui", "value": (t * 10 + s) % 100, "labels": {"s": f"s{s:03d}"}, "timestamp": t}
                        for s in range(a.series)
                    ]
                    client.post(a.url + "/api/v1/metrics/batch", json={"metrics": batch})
                    sent[0] += len(batch)
                    nxt += tick
                    time.sleep(max(0.0, nxt - time.monotonic()))

        th = threading.Thread(target=pusher, daemon=True)
        th.start()
        samples = []
        start = time.monotonic()
        while time.monotonic() - start < a.seconds:
            time.sleep(2)
            draws = int(page.get_attribute("#chart .chart", "data-draws") or 0)
            samples.append((time.monotonic() - start, heap(), draws))
        stop.set()
        th.join()
        points = page.get_attribute("#chart .chart", "data-points")
        for t, mb, draws in samples:
            print(f"  t={t:5.1f}s heap {mb:6.2f} MiB, frames drawn {draws}")
        elapsed = time.monotonic() - start
        print(
            f"live: {sent[0]} samples pushed ({sent[0] / elapsed:.0f}/s), {points} points on screen, "
            f"heap {samples[0][1]:.2f} -> {samples[-1][1]:.2f} MiB, "
            f"{(samples[-1][2] - samples[0][2]) / (samples[-1][0] - samples[0][0]):.1f} frames/s"
        )
        ctx.close()


if __name__ == "__main__":
    main()
