#!/usr/bin/env bash
# Install RTPM into ./.venv and start it on the embedded default (SQLite under ./rtpm-data/).
# Arguments go to `rtpm serve` (e.g. --host 0.0.0.0 --port 9000). Settings come from RTPM_* / .env.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${RTPM_VENV:-.venv}"
if [ ! -x "$VENV/bin/python" ]; then
  python3 -m venv "$VENV"
fi
"$VENV/bin/python" -m pip install --quiet --disable-pip-version-check -e .
exec "$VENV/bin/rtpm" serve "$@"
