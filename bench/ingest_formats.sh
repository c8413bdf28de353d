#!/usr/bin/env bash
# Every push format against a fresh `rtpm serve` on a fresh PostgreSQL schema, one server per format,
# with the server's CPU time per run (the steadier figure on a shared machine).
#   bench/ingest_formats.sh [formats...]      default: json remote-write influx otlp
# Env: DSN (default postgresql://root@127.0.0.1/test), PORT (8190), SAMPLES (2000000), CLIENTS (4).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
DSN=${DSN:-postgresql://root@127.0.0.1/test}
PORT=${PORT:-8190}
SAMPLES=${SAMPLES:-2000000}
CLIENTS=${CLIENTS:-4}
for f in ${*:-json remote-write influx otlp}; do
  schema=bench_ingest_$$_$RANDOM
  data=$(mktemp -d)
  # the bench back-fills at 100x real time: a day of grace keeps those samples from counting as late
  export RTPM_DATA_DIR=$data RTPM_ADMIN_PASSWORD='bench-password-1!' RTPM_JOBS=off \
    RTPM_AUTH__RATE_LIMIT__ENABLED=false RTPM_LOG_LEVEL=warning RTPM_MAINTENANCE__LATE_GRACE_SECONDS=86400 \
    RTPM_DATABASE_URL=$DSN RTPM_DATABASE_SCHEMA=$schema
  $PY -m rtpm serve --port "$PORT" >"$data/server.log" 2>&1 &
  srv=$!
  for _ in $(seq 60); do curl -s -o /dev/null "http://127.0.0.1:$PORT/health/live" && break; sleep 0.5; done
  key=$($PY -m rtpm keys create --name bench --scope metrics:write --scope metrics:read | tail -n1)
  c0=$(awk '{print $14+$15}' /proc/$srv/stat)
  $PY bench/ingest.py --url "http://127.0.0.1:$PORT" --format "$f" --samples "$SAMPLES" --batch 5000 \
    --clients "$CLIENTS" --token "$key"
  c1=$(awk '{print $14+$15}' /proc/$srv/stat)
  echo "format=$f server CPU: $(( (c1 - c0) * 10 )) ms"
  kill $srv; wait $srv 2>/dev/null || true
  PGOPTIONS="-c client_min_messages=warning" psql -q "$DSN" -c "DROP SCHEMA $schema CASCADE" >/dev/null
  rm -rf "$data"
done
