# SmallShardz developer entry points. `make` alone lists them.
.DEFAULT_GOAL := help
SHELL := /bin/bash
UV ?= uv
export PATH := $(HOME)/.local/share/shardz/bin:$(HOME)/.local/bin:$(PATH)

.PHONY: help bootstrap dev migrate status test fuzz lint fmt typecheck bench

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-10s %s\n", $$1, $$2}'

bootstrap: ## install uv, Python deps, nginx, PostgreSQL, RabbitMQ if missing; start them
	@scripts/bootstrap.sh

dev: bootstrap ## run the whole platform in the foreground (gateway on :8080); Ctrl-C stops it
	$(UV) run python -m shardz_devstack up

migrate: bootstrap ## create the dev databases and migrate every service to head
	$(UV) run python -m shardz_devstack migrate

status: ## show whether the dev stack runs and what answers
	-@$(UV) run python -m shardz_devstack status

test: bootstrap ## run every test (starts its own test platform on other ports)
	$(UV) run pytest $(PYTEST_ARGS)

fuzz: bootstrap ## the OpenAPI contract run with a long budget (FUZZ_SECONDS per service, default 300)
	SHARDZ_FUZZ_SECONDS=$${FUZZ_SECONDS:-300} $(UV) run pytest tests/integration/test_openapi_contract.py --timeout=0 $(PYTEST_ARGS)

lint: ## ruff lint and format check
	$(UV) run ruff check .
	$(UV) run ruff format --check .

fmt: ## format and autofix
	$(UV) run ruff format .
	$(UV) run ruff check --fix .

typecheck: ## mypy --strict over libraries and services
	$(UV) run mypy libs/common/src services/*/src libs/devstack/src

bench: ## install wrk if missing, run the benchmarks and print ratios against their floors
	@scripts/bootstrap.sh --bench
	$(UV) run python bench/run.py
