#!/usr/bin/env bash
# The nightly benchmark on a self-hosted machine, for cron or a systemd timer.
#
#   scheduling/nightly.sh [extra lrbench nightly options]
#
# Runs from the checkout this script lives in. LRBENCH_GRID (default
# grids/nightly.toml) and LRBENCH_HISTORY (default results/nightly; a pyarrow
# URI such as s3://bucket/lrbench/nightly works too) pick the grid and the
# history. A lock keeps a slow night from overlapping the next one.
# Exit code: 0 clean, 1 regression, 2 bad input, 75 another night still running.
set -euo pipefail
cd "$(dirname "$0")/.."

grid="${LRBENCH_GRID:-grids/nightly.toml}"
history="${LRBENCH_HISTORY:-results/nightly}"
lock="${XDG_RUNTIME_DIR:-/tmp}/lrbench-nightly.lock"

exec 9>"$lock"
if ! flock -n 9; then
  echo "lrbench nightly: another night is still running (lock $lock)" >&2
  exit 75
fi

make --quiet install
exec .venv/bin/lrbench nightly run "$grid" --history "$history" "$@"
