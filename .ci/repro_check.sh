#!/usr/bin/env bash
# Reproducibility gate (run by .ci/run via `make repro-check`):
#  1. `make run` (dvc repro from scratch in this clone) must leave the committed dvc.lock unchanged;
#  2. a second `dvc repro` must have nothing to do;
#  3. `dvc repro --force` (re-run every stage) must again leave dvc.lock byte-identical.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PWD/.venv/bin:$PATH"
cp dvc.lock /tmp/cardlab.dvc.lock.committed 2>/dev/null || : > /tmp/cardlab.dvc.lock.committed
make run
if ! diff -u /tmp/cardlab.dvc.lock.committed dvc.lock; then
  echo "FAIL: running the pipeline from scratch changed dvc.lock (outputs are not byte-identical)" >&2
  exit 1
fi
status=$(dvc status --quiet && echo clean || echo stale)
second=$(dvc repro 2>&1 | tail -3)
echo "$second"
if ! dvc status -q; then
  echo "FAIL: dvc status reports stale stages after a repro" >&2
  exit 1
fi
echo "second repro: $status"
dvc repro --force
if ! diff -u /tmp/cardlab.dvc.lock.committed dvc.lock; then
  echo "FAIL: a forced re-run changed dvc.lock" >&2
  exit 1
fi
echo "reproducibility check passed: dvc.lock unchanged after fresh run, second repro and forced re-run"
