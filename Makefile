# The two commands a newcomer needs: `make up` (start the platform) and `make test` (run every test).
# Everything else is installed on first use: uv into .tools/, Python packages into .venv/, Kafka's jars,
# MinIO and PostgreSQL into the user cache (~/.cache/referrals-platform).
SHELL := bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

UV_VERSION := 0.13.8
export UV_PYTHON_DOWNLOADS := never
export UV_PROJECT_ENVIRONMENT := $(CURDIR)/.venv
UV := $(or $(shell command -v uv 2>/dev/null),$(CURDIR)/.tools/bin/uv)
PYTEST_ARGS ?=

.PHONY: help setup up down status demo demo-information test test-unit test-integration lint typecheck format render

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-18s %s\n", $$1, $$2}'

$(CURDIR)/.tools/bin/uv:
	@echo "→ installing uv $(UV_VERSION) into .tools/ (first run only)"
	python3 -m venv .tools
	.tools/bin/pip install --disable-pip-version-check --progress-bar on uv==$(UV_VERSION)

.venv/.synced: uv.lock pyproject.toml $(wildcard libs/*/pyproject.toml services/*/pyproject.toml deploy/local/pyproject.toml frontend/pyproject.toml) | $(UV)
	$(UV) sync --frozen
	@touch $@

setup: .venv/.synced ## install the Python workspace (locked)

up: setup ## start the platform locally (no Docker): infrastructure, trace viewer, the five services
	$(UV) run --frozen devstack install
	$(UV) run --frozen devstack up

demo: setup ## walk one case through the whole journey on the running platform (after make up)
	$(UV) run --frozen devstack demo

demo-information: setup ## the longer journey: the center asks for more information first (after make up)
	$(UV) run --frozen devstack demo --information

down: setup ## stop everything `make up` started
	$(UV) run --frozen devstack down

status: setup ## show what runs, where, and its memory
	$(UV) run --frozen devstack status

test: setup ## run every test: unit, then integration and e2e against a real stack
	$(UV) run --frozen devstack install
	$(UV) run --frozen pytest $(PYTEST_ARGS)

test-unit: setup ## only the fast tests with no I/O
	$(UV) run --frozen pytest -m unit $(PYTEST_ARGS)

lint: setup ## ruff lint and format check, mypy --strict over every package
	$(UV) run --frozen ruff check .
	$(UV) run --frozen ruff format --check .
	$(UV) run --frozen mypy

typecheck: setup ## mypy --strict over every package of the workspace (pyproject.toml [tool.mypy])
	$(UV) run --frozen mypy

format: setup ## apply ruff's formatting and safe fixes
	$(UV) run --frozen ruff format .
	$(UV) run --frozen ruff check --fix .

render: setup ## write what follows from deploy/roles.yaml and the contracts: Compose, deploy/k8s/base, Prometheus targets, the architecture diagram
	$(UV) run --frozen devstack render
