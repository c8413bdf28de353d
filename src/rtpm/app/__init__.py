"""The composition root: the one place that picks implementations from settings and wires them.

`build_services(settings)` (services.py) builds everything a process runs on, in order, and
closes it in the reverse order; each part is made by the module that owns it:

    services.py   Services (frozen) and build_services: what is built, in which order
    storage.py    the storage backend (the only place that constructs one), sessions for commands
    auth.py       the AuthService and rate limiter, the admin made on first start
    live.py       live fan-out (in process or Redis) and the WebSocket counters
    alerting.py   the PromQL query function, notification dispatch, the embedded evaluator
    jobs.py       the embedded background-job scheduler

`rtpm serve` (api/app.py), the Celery worker (jobs/), the CLI and the tests all build through it.
"""
