#!/usr/bin/env bash
# Reproducibility gate (run by .ci/run via `make repro-check`):
#  1. `make run` (dvc repro in this clone) must leave the committed dvc.lock unchanged;
#  2. a second `dvc repro` must have nothing to do;
#  3. `dvc repro --force` (re-run every stage from scratch) must again leave dvc.lock byte-identical.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PWD/.venv/bin:$PATH"
committed=$(mktemp)
git show HEAD:dvc.lock > "$committed"
make run
if ! diff -u "$committed" dvc.lock; then
  echo "FAIL: running the pipeline changed dvc.lock (outputs are not byte-identical to the committed run)" >&2
  exit 1
fi
second=$(dvc repro 2>&1)
echo "$second" | tail -2
if ! echo "$second" | grep -q "Data and pipelines are up to date"; then
  echo "FAIL: a second dvc repro did work" >&2
  exit 1
fi
dvc repro --force
if ! diff -u "$committed" dvc.lock; then
  echo "FAIL: a forced re-run changed dvc.lock" >&2
  exit 1
fi
echo "reproducibility check passed: dvc.lock unchanged after the run, second repro idle, forced re-run identical"
