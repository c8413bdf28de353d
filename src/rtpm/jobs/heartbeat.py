"""What the alert evaluator's heartbeat says, for /health/detailed and /metrics of any process.

The leader writes one row per runner kind after its rounds (`alert_heartbeats`); every process
reads them, so an API process with RTPM_JOBS=celery reports the workers' evaluation too. The
runner this process's settings expect (`embedded` or `celery`, none when evaluation is off) is
`stalled` when its last round is older than its stall age, or when it has never completed a round
and this process has been up longer than that."""

from __future__ import annotations

from typing import Any

from rtpm.jobs.alert_eval import embedded_limits
from rtpm.model.time import to_rfc3339
from rtpm.settings import Settings
from rtpm.storage.alert_store import Heartbeat


def expected_runner(settings: Settings) -> str | None:
    if not settings.alerting.evaluation_enabled or settings.jobs == "off":
        return None
    return settings.jobs


def expected_stall_seconds(settings: Settings) -> float:
    if settings.jobs == "celery":
        from rtpm.jobs.alert_task import task_limits

        return task_limits(settings.alerting).stall_seconds
    return embedded_limits(settings.alerting)[1]


def _runner(beat: Heartbeat, now: float) -> dict[str, Any]:
    return {
        "holder": beat.holder,
        "last_evaluation": to_rfc3339(beat.round_ms),
        "last_evaluation_timestamp_seconds": beat.round_ms / 1000,
        "age_seconds": round(beat.age_seconds(now), 3),
        "stalled_after_seconds": beat.stall_seconds,
        "stalled": beat.stalled(now),
        "rules": beat.rules,
        "errors": beat.errors,
        "duration_seconds": round(beat.duration_seconds, 6),
    }


def alerting_check(settings: Settings, beats: list[Heartbeat], *, now: float, uptime_seconds: float) -> dict[str, Any]:
    """`status`: `up`, `stalled` (degrades /health/detailed), `starting` (no round yet, within the
    stall age of this process's start) or `off`; with every runner's last round."""
    runner = expected_runner(settings)
    runners = {b.runner: _runner(b, now) for b in beats}
    out: dict[str, Any] = {"runner": runner, "runners": runners}
    if runner is None:
        return {"status": "off", **out}
    if runner in runners:
        return {"status": "stalled" if runners[runner]["stalled"] else "up", **out}
    limit = expected_stall_seconds(settings)
    if uptime_seconds > limit:
        return {"status": "stalled", "error": f"no evaluation round completed in {limit:g} s", **out}
    return {"status": "starting", **out}


def exposition(check: dict[str, Any]) -> bytes:
    """The heartbeat as Prometheus text: the last round's time per runner, and 0/1 stalled for
    the runner this deployment uses (1 as well when it has no heartbeat and is overdue)."""
    lines = [
        "# HELP rtpm_alerting_last_evaluation_timestamp_seconds Unix time of the last completed alert "
        "evaluation round, by runner (from the database: the same in every process).",
        "# TYPE rtpm_alerting_last_evaluation_timestamp_seconds gauge",
    ]
    for name, r in sorted(check["runners"].items()):
        lines.append(
            f'rtpm_alerting_last_evaluation_timestamp_seconds{{runner="{name}"}} {r["last_evaluation_timestamp_seconds"]}'
        )
    lines += [
        "# HELP rtpm_alerting_evaluation_stalled 1 when alert evaluation has not completed a round for longer "
        "than a few rounds plus a lease, by runner.",
        "# TYPE rtpm_alerting_evaluation_stalled gauge",
    ]
    if check["runner"] is not None:  # only the runner this deployment uses (not a former one's row)
        stalled = int(check["status"] == "stalled")
        lines.append(f'rtpm_alerting_evaluation_stalled{{runner="{check["runner"]}"}} {stalled}')
    return ("\n".join(lines) + "\n").encode()
