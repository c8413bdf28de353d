#!/usr/bin/env bash
# Install everything the tests need and run the whole suite, PostgreSQL and Redis included.
#   ./scripts/test.sh                 everything
#   ./scripts/test.sh -m "not integration and not slow"   THE INNER LOOP (no servers, no subprocesses, no fuzzing)
#   ./scripts/test.sh -m "not integration"   the same plus the slow tests (schemathesis, start-up refusals)
# Extra arguments go to pytest. Tests run in RTPM_TEST_WORKERS processes (default 2, pytest-xdist,
# one test file per process at a time; 0 runs them in this process): most tests wait on servers
# they started, so two processes overlap the waiting.
set -euo pipefail
cd "$(dirname "$0")/.."

VENV="${RTPM_VENV:-.venv}"
if [ ! -x "$VENV/bin/python" ]; then
  python3 -m venv "$VENV"
fi
"$VENV/bin/python" -m pip install --quiet --disable-pip-version-check --upgrade pip
"$VENV/bin/python" -m pip install --quiet --disable-pip-version-check -e '.[test]'

# Peers and tools some tests drive for real (Debian packages), installed once when missing.
need=()
command -v prometheus >/dev/null 2>&1 || need+=(prometheus)
command -v prometheus-alertmanager >/dev/null 2>&1 || need+=(prometheus-alertmanager)
command -v vmagent >/dev/null 2>&1 || need+=(victoria-metrics)   # vmagent remote-writing (tests/e2e/ingest/test_vmagent.py)
command -v chromium >/dev/null 2>&1 || need+=(chromium)   # browser tests of the web UI (tests/e2e/ui)
if [ "${#need[@]}" -gt 0 ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "installing ${need[*]}"
  apt-get update -qq >/dev/null 2>&1 || true
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null 2>&1 \
    || echo "warning: could not install ${need[*]}"
fi

bash scripts/services.sh

export RTPM_TEST_POSTGRES_DSN="${RTPM_TEST_POSTGRES_DSN:-postgresql://root@127.0.0.1:5432/test}"
export RTPM_TEST_REDIS_URL="${RTPM_TEST_REDIS_URL:-redis://127.0.0.1:6379/15}"
export PATH="$PWD/$VENV/bin:$PATH"

"$VENV/bin/ruff" check src tests bench
"$VENV/bin/ruff" format --check --quiet src tests bench
"$VENV/bin/mypy"   # src/rtpm, with the pydantic plugin ([tool.mypy] in pyproject.toml): zero errors
workers="${RTPM_TEST_WORKERS:-2}"
if [ "$workers" = 0 ]; then
  exec "$VENV/bin/python" -m pytest "$@"
fi
exec "$VENV/bin/python" -m pytest -n "$workers" --dist loadfile "$@"
