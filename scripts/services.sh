#!/usr/bin/env bash
# Start the local PostgreSQL and Redis the test suite talks to, when they are not running.
# Safe to run again: a running service is left alone.
set -u

pg_up() { pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null; }
redis_up() { redis-cli -h 127.0.0.1 -p 6379 ping 2>/dev/null | grep -q PONG; }

if ! pg_up && command -v pg_ctlcluster >/dev/null 2>&1; then
  echo "starting PostgreSQL"
  pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -n1)" main start || true
  for _ in $(seq 1 30); do pg_up && break; sleep 1; done
fi
if ! redis_up && command -v redis-server >/dev/null 2>&1; then
  echo "starting Redis"
  mkdir -p /var/lib/redis /var/log/redis 2>/dev/null || true
  redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no \
    --dir /var/lib/redis --logfile /var/log/redis/ci.log || true
  for _ in $(seq 1 30); do redis_up && break; sleep 1; done
fi
# tests/integration/test_read_replica.py makes a streaming replica with pg_basebackup from
# 127.0.0.1: the primary must accept replication connections from there (wal_level=replica and
# max_wal_senders > 0 are PostgreSQL's defaults).
if pg_up && [ "$(id -u)" = 0 ]; then
  hba="$(psql -h 127.0.0.1 -U root -d postgres -Atc 'SHOW hba_file' 2>/dev/null || true)"
  if [ -n "$hba" ] && [ -w "$hba" ] && ! grep -Eq '^host[[:space:]]+replication[[:space:]]+all[[:space:]]+127\.0\.0\.1/32' "$hba"; then
    echo "host replication all 127.0.0.1/32 trust" >> "$hba"
    psql -h 127.0.0.1 -U root -d postgres -Atc 'SELECT pg_reload_conf()' >/dev/null 2>&1 || true
    echo "PostgreSQL: replication from 127.0.0.1 allowed"
  fi
fi
pg_up && echo "PostgreSQL: up" || echo "PostgreSQL: DOWN"
redis_up && echo "Redis: up" || echo "Redis: DOWN"
