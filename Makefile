# cardlab — `make run` runs the whole pipeline at the default preset, `make test` runs the test suite.
# Both create or refresh .venv/ from the lock file (uv.lock); only python3.11 and make are needed.
SHELL := /bin/bash
PY ?= python3.11
UV_VERSION := 0.13.9
UV := .uv/bin/uv
VENV := .venv
BIN := $(VENV)/bin
export UV_PYTHON_DOWNLOADS := never
export UV_PROJECT_ENVIRONMENT := $(VENV)
export PATH := $(CURDIR)/$(BIN):$(PATH)
export MPLBACKEND := Agg
PORT ?= 5000

.DEFAULT_GOAL := help
.PHONY: help run test lint format ui lab serve repro-check bench clean-outputs venv venv-dev services services-stop scale-check

help: ## list the targets
	@grep -E '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*?## "}; {printf "  \033[36m%-14s\033[0m %s\n", $$1, $$2}'

$(UV):
	$(PY) -m venv .uv
	.uv/bin/pip install --quiet --disable-pip-version-check uv==$(UV_VERSION)

venv: $(UV) ## create/refresh .venv from uv.lock (runtime deps)
	$(UV) sync --frozen --python $(PY) --inexact --quiet

venv-dev: $(UV) ## create/refresh .venv from uv.lock with the dev extras
	$(UV) sync --frozen --python $(PY) --extra dev --quiet

# make run PRESET=dev SEED=11: `dvc exp run -S ...` writes the values into params.yaml and runs the pipeline
PRESET ?=
SEED ?=
run: venv ## run the whole DVC pipeline (params.yaml; PRESET=dev / SEED=11 switch them), refresh the results docs, summarise
	@date +%s > .run-start
	$(BIN)/dvc $(if $(PRESET)$(SEED),exp run $(if $(PRESET),-S simulate.preset=$(PRESET)) $(if $(SEED),-S simulate.seed=$(SEED)),repro)
	$(BIN)/cardlab docs
	$(BIN)/cardlab summary --since $$(cat .run-start)

test: venv-dev ## lint + import layers + the whole test suite (pipeline-level tests are marked slow)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports
	$(BIN)/mypy
	$(BIN)/pytest -q

repro-check: venv ## CI check: a second repro does nothing, a forced re-run leaves dvc.lock unchanged
	bash .ci/repro_check.sh

lint: venv-dev ## ruff lint + format check + mypy
	$(BIN)/ruff check . && $(BIN)/ruff format --check .
	$(BIN)/mypy

format: venv-dev ## apply ruff formatting
	$(BIN)/ruff format . && $(BIN)/ruff check --fix .

ui: venv ## MLflow UI on http://127.0.0.1:5000 over the project's store (make ui PORT=5001 moves it; a taken port is an error)
	@$(BIN)/python .ci/port_free.py $(PORT)
	$(BIN)/mlflow ui --backend-store-uri sqlite:///$(CURDIR)/mlflow.db --default-artifact-root $(CURDIR)/mlartifacts --host 127.0.0.1 --port $(PORT)

SERVE_PORT ?= 18000
SERVE_MODEL ?= champion
serve: venv ## decision service on http://127.0.0.1:$(SERVE_PORT) (SERVE_MODEL=challenger to serve before a promote)
	$(BIN)/dvc repro materialize
	$(BIN)/cardlab serve --host 127.0.0.1 --port $(SERVE_PORT) --credit $(SERVE_MODEL) --limit $(SERVE_MODEL)

lab: venv-dev ## JupyterLab with jupytext: notebooks/*.py open as notebooks (double click)
	mkdir -p $(VENV)/share/jupyter/lab/settings
	echo '{"@jupyterlab/docmanager-extension:plugin": {"defaultViewers": {"python": "Jupytext Notebook"}}}' \
	  > $(VENV)/share/jupyter/lab/settings/overrides.json
	$(BIN)/jupyter lab --ServerApp.ip=127.0.0.1 --notebook-dir=$(CURDIR) $(if $(filter 0,$(shell id -u)),--allow-root)

bench: venv-dev ## run the benchmarks (slow; numbers go in the README)
	for b in benchmarks/bench_*.py; do $(BIN)/python $$b || exit 1; done

# shared services (docs/scale.md): PostgreSQL, an S3 store (moto) and an MLflow server on 127.0.0.1, ports below;
# `.services/env` is the one env file they are described in (`set -a; . .services/env; set +a` switches a shell)
PG_PORT ?= 17432
S3_PORT ?= 17490
MLFLOW_PORT ?= 17450
services: venv ## start PostgreSQL, an S3 store and an MLflow server (PostgreSQL backend, S3 artifacts); writes .services/env
	$(BIN)/python -m cardlab.scale.services start --dir .services --postgres-port $(PG_PORT) --s3-port $(S3_PORT) --mlflow-port $(MLFLOW_PORT)

services-stop: ## stop the services of `make services` (by pid) and remove .services/env
	$(BIN)/python -m cardlab.scale.services stop --dir .services

scale-check: venv ## CI's scale gate: the ci pipeline on the dask engine against the services; byte identity; DVC S3 round trip
	bash .ci/scale_check.sh
