"""Storage engines compared end to end: for each backend (SQLite, PostgreSQL) and engine (rows,
head), a fresh `rtpm serve` (background jobs on, at their defaults) takes remote write from
`bench/ingest.py` (4 clients, 10,000 series, batches of 5,000); printed per run: samples/s, CPU
seconds per million samples of the server and of the PostgreSQL backends serving its connections
(found by their client ports), bytes on disk per sample (the SQLite files; every relation of the
PostgreSQL schema, indexes and TOAST included), and for the head engine the time `rtpm serve`
takes to rebuild its head from the WAL on restart.

    flock /tmp/rtpm-bench.lock .venv/bin/python bench/engines.py --samples 2000000

Samples start at now and run into the future (RTPM_LIMITS__MAX_FUTURE_SECONDS raised), so the
head engine takes them all: none is back-fill older than its window, and none is late for rows.
PostgreSQL's shared processes (WAL writer, checkpointer, autovacuum) are printed apart: other
users of the same server count there too.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import httpx
import psutil

ROOT = Path(__file__).resolve().parent.parent
PASSWORD = "bench-password-1!"


def cpu(pids: list[int]) -> dict[int, float]:
    out = {}
    for pid in pids:
        try:
            t = psutil.Process(pid).cpu_times()
            out[pid] = t.user + t.system
        except psutil.NoSuchProcess:
            pass
    return out


def pg_backends(dsn: str, server_pid: int) -> list[int]:
    """Pids of the PostgreSQL backends whose client is `server_pid` (matched by client port)."""
    ports = {
        c.laddr.port for c in psutil.Process(server_pid).net_connections("tcp") if c.raddr and c.raddr.port == 5432
    }
    if not ports:
        return []
    rows = subprocess.run(
        ["psql", "-Atq", dsn, "-c", "SELECT pid, client_port FROM pg_stat_activity WHERE client_port IS NOT NULL"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    return [int(p) for p, port in (r.split("|") for r in rows) if int(port) in ports]


def pg_shared() -> list[int]:
    """Pids of PostgreSQL's own processes that are not client backends."""
    out = []
    for p in psutil.process_iter(["name", "cmdline"]):
        cmd = " ".join(p.info["cmdline"] or [])
        if p.info["name"] == "postgres" and re.search(r"postgres: .*(writer|checkpointer|autovacuum|walwriter)", cmd):
            out.append(p.pid)
    return out


def pg_bytes(dsn: str, schema: str) -> int:
    sql = (
        "SELECT COALESCE(SUM(pg_total_relation_size(c.oid)), 0) FROM pg_class c "
        f"JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = '{schema}' AND c.relkind IN ('r', 'm')"
    )
    return int(subprocess.run(["psql", "-Atq", dsn, "-c", sql], capture_output=True, text=True, check=True).stdout)


class Server:
    def __init__(self, env: dict[str, str], port: int, log: Path) -> None:
        self.env, self.port, self.log = env, port, log
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "rtpm", "serve", "--port", str(self.port)], env=self.env, stdout=log, stderr=log
            )
        for _ in range(240):
            try:
                if httpx.get(f"http://127.0.0.1:{self.port}/health/live", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.25)
        raise RuntimeError(self.log.read_text()[-3000:])

    def stop(self) -> None:
        assert self.proc is not None
        self.proc.terminate()
        self.proc.wait(timeout=120)


def rebuild_seconds(log: Path) -> float | None:
    found = None
    for line in log.read_text(errors="replace").splitlines():
        if "head_rebuilt" in line:
            try:
                found = float(json.loads(line)["seconds"])
            except (ValueError, KeyError):
                m = re.search(r"seconds=([0-9.]+)", line)
                found = float(m.group(1)) if m else found
    return found


def run_one(args: argparse.Namespace, backend: str, engine: str) -> dict[str, object]:
    data = Path(tempfile.mkdtemp(prefix="rtpm-engines-"))
    schema = f"bench_engines_{uuid.uuid4().hex[:8]}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("RTPM_")}
    env |= {
        "RTPM_DATA_DIR": str(data),
        "RTPM_ADMIN_PASSWORD": PASSWORD,
        "RTPM_AUTH__RATE_LIMIT__ENABLED": "false",
        "RTPM_LOG_FORMAT": "json",
        "RTPM_STORAGE_ENGINE": engine,
        "RTPM_LIMITS__MAX_FUTURE_SECONDS": str(10 * 86400),
    }
    if backend == "postgres":
        env |= {"RTPM_DATABASE_URL": args.dsn, "RTPM_DATABASE_SCHEMA": schema}
    server = Server(env, args.port, data / "server.log")
    server.start()
    try:
        key = subprocess.run(
            [sys.executable, "-m", "rtpm", "keys", "create", "--name", "bench", "--scope", "metrics:write"],
            env=env,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.split()[-1]
        assert server.proc is not None
        # warm the pool so the backends exist before counting
        ingest = [sys.executable, str(ROOT / "bench/ingest.py"), "--url", f"http://127.0.0.1:{args.port}"]
        ingest += ["--format", args.format, "--batch", str(args.batch), "--clients", str(args.clients)]
        ingest += ["--series", str(args.series), "--token", key, "--from-now"]
        subprocess.run([*ingest, "--samples", str(args.batch * 8)], check=True, capture_output=True)
        srv = psutil.Process(server.proc.pid)
        db = pg_backends(args.dsn, server.proc.pid) if backend == "postgres" else []
        shared = pg_shared() if backend == "postgres" else []
        # CPU is counted from when the client has its batches ready (preparing 20 M takes a minute)
        client = subprocess.Popen([*ingest, "--samples", str(args.samples)], stdout=subprocess.PIPE, text=True)
        assert client.stdout is not None
        head = ""
        while not head.startswith("sending"):
            head = client.stdout.readline()
            if not head:
                raise RuntimeError("bench/ingest.py ended before sending")
        c0, d0, s0 = srv.cpu_times(), cpu(db), cpu(shared)
        spy = None
        if args.py_spy:  # the server's stacks while it ingests (it costs the server some CPU itself)
            out = f"{args.py_spy}.{backend}.{args.format}.txt"
            spy_cmd = [
                shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy")),
                "record",
                "--pid",
                str(server.proc.pid),
                "--format",
                "raw",
                "-o",
                out,
                "--rate",
                "50",
            ]
            spy = subprocess.Popen([*spy_cmd, "--native"], stdout=subprocess.DEVNULL)
        rest = client.stdout.read()
        if client.wait() != 0:
            raise RuntimeError(f"bench/ingest.py failed: {rest}")
        c1 = srv.cpu_times()
        if spy is not None:
            spy.send_signal(signal.SIGINT)
            spy.wait(timeout=60)
        db_after = pg_backends(args.dsn, server.proc.pid) if backend == "postgres" else []
        d1, s1 = cpu(db_after), cpu(shared)
        m = re.search(r"samples stored: (\d+) in ([0-9.]+) s", rest)
        assert m, rest
        stored, seconds = int(m.group(1)), float(m.group(2))
        server_cpu = (c1.user + c1.system) - (c0.user + c0.system)
        db_cpu = sum(v - d0.get(pid, 0.0) for pid, v in d1.items())
        shared_cpu = sum(v - s0.get(pid, 0.0) for pid, v in s1.items())
        total_samples = stored + args.batch * 8
        time.sleep(1)
        if backend == "postgres":
            disk = pg_bytes(args.dsn, schema)
        else:
            disk = sum(f.stat().st_size for f in data.glob("*.db*"))
        result: dict[str, object] = {
            "backend": backend,
            "engine": engine,
            "format": args.format,
            "samples": stored,
            "samples_per_s": round(stored / seconds),
            "server_cpu_s_per_M": round(server_cpu / stored * 1e6, 2),
            "db_cpu_s_per_M": round(db_cpu / stored * 1e6, 2),
            "total_cpu_s_per_M": round((server_cpu + db_cpu) / stored * 1e6, 2),
            "pg_shared_cpu_s_per_M": round(shared_cpu / stored * 1e6, 2),
            "bytes_per_sample": round(disk / total_samples, 2),
            "errors": rest.split("errors: ", 1)[-1].strip(),
        }
        if engine == "head":
            server.stop()
            server.start()
            result["restart_rebuild_s"] = rebuild_seconds(server.log)
        return result
    finally:
        server.stop()
        if backend == "postgres":
            subprocess.run(["psql", "-q", args.dsn, "-c", f"DROP SCHEMA {schema} CASCADE"], capture_output=True)
        shutil.rmtree(data, ignore_errors=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--samples", type=int, default=2_000_000)
    ap.add_argument("--format", default="remote-write", help="bench/ingest.py's --format (json, influx, otlp)")
    ap.add_argument("--batch", type=int, default=5000)
    ap.add_argument("--clients", type=int, default=4)
    ap.add_argument("--series", type=int, default=10_000)
    ap.add_argument("--backends", default="sqlite,postgres")
    ap.add_argument("--engines", default="rows,head")
    ap.add_argument("--dsn", default="postgresql://root@127.0.0.1/test")
    ap.add_argument("--port", type=int, default=8191)
    ap.add_argument("--py-spy", metavar="PREFIX", help="record the server with py-spy to PREFIX.<backend>.<format>.txt")
    args = ap.parse_args()
    for backend in args.backends.split(","):
        for engine in args.engines.split(","):
            print(json.dumps(run_one(args, backend, engine)), flush=True)


if __name__ == "__main__":
    main()
