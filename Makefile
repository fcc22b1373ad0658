# Leadline — the Makefile is the interface. `make help` lists every target.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell cksum pyproject.toml | cut -d' ' -f1)

# Tests and services read these; override to point at infrastructure you already run.
export KAFKA_BOOTSTRAP_SERVERS ?= 127.0.0.1:9092
export POSTGRES_DSN ?= postgresql://leadline:leadline@127.0.0.1:5433/postgres
# Local runs may use the public development JWT secret; anywhere else it is refused.
export LEADLINE_ENV ?= local
# `make up BROKERS=3`: a three-node KRaft cluster (RF 3, min ISR 2) instead of one node (unset:
# whichever runs, else one); `make up SCALE=2`: two instances of every consumer service (ports
# +100) in one group each.
# `make up SECURE=1`: the secured Kafka profile (SASL/SCRAM over TLS, a principal per service,
# deny-by-default ACLs; deploy/local/infra.sh says how), with its own data; SECURE=0 plaintext;
# unset: whichever runs, else plaintext. Switching needs `make down` first.
BROKERS ?=
SCALE ?= 1
SECURE ?=

.PHONY: help setup up up-infra down status run logs test test-unit test-integration test-e2e test-faults lint fmt bench bench-e2e schemas

help: ## list the targets
	@grep -hE '^[a-z0-9-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-18s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@$(PY) -m pip install -q --upgrade pip
	@$(PY) -m pip install -q -e '.[dev]'
	@rm -f $(VENV)/.installed-* && touch $@

setup: $(STAMP) ## create .venv and install the pinned dependencies (idempotent)
	@bash deploy/local/infra.sh fetch

up-infra: $(STAMP) ## start Kafka (KRaft; BROKERS=3 for a cluster; SECURE=1 secured) and PostgreSQL, databases, topics
	@$(if $(BROKERS),KAFKA_NODES=$(BROKERS) )$(if $(SECURE),LEADLINE_SECURE=$(SECURE) )bash deploy/local/infra.sh up

up: up-infra ## start the infrastructure and every service (SCALE=2: two of each; SECURE=1: secured Kafka), return when ready
	@LEADLINE_SCALE=$(SCALE) bash deploy/local/services.sh up

down: ## stop every service and the infrastructure this project started
	@bash deploy/local/services.sh down
	@bash deploy/local/infra.sh down

status: ## what runs where, with URLs
	@bash deploy/local/infra.sh status
	@bash deploy/local/services.sh status

run: up ## make up, then follow the logs; Ctrl-C stops everything
	@bash deploy/local/services.sh run

logs: ## follow every log under .run/logs
	@tail -n 50 -F .run/logs/*.log

.PHONY: rebuild
rebuild: $(STAMP) ## rebuild one projection view live: VIEW=orders|stock|sales|outcomes
	@test -n "$(VIEW)" || { echo "usage: make rebuild VIEW=orders|stock|sales|outcomes" >&2; exit 2; }
	@set -a; f=$${LEADLINE_RUN_DIR:-.run}/operator.env; [ ! -f "$$f" ] || . "$$f"; set +a; \
		PROJECTION_DATABASE_URL="$${PROJECTION_DATABASE_URL:-$(dir $(POSTGRES_DSN))projection}" \
		$(PY) -m services.projection rebuild $(VIEW)

.PHONY: outbox-parked
outbox-parked: $(STAMP) ## outbox rows Kafka refused: SERVICE=checkout [ACTION=list|retry|drop] [ID=n]
	@test -n "$(SERVICE)" || { echo "usage: make outbox-parked SERVICE=checkout [ACTION=list|retry|drop] [ID=n] (retry without ID: all)" >&2; exit 2; }
	@RELAY_DATABASE_URL="$${RELAY_DATABASE_URL:-$(dir $(POSTGRES_DSN))$(SERVICE)}" \
		$(PY) -m shared.relay parked $(or $(ACTION),list) \
		$(if $(ID),--id $(ID),$(if $(filter retry,$(ACTION)),--all))

lint: $(STAMP) ## ruff, and mypy --strict on shared/, schemas/, services/ and simulators/
	$(VENV)/bin/ruff check shared schemas services simulators tests bench
	$(VENV)/bin/ruff format --check shared schemas services simulators tests bench
	$(VENV)/bin/mypy shared schemas services simulators

fmt: $(STAMP) ## format and autofix
	$(VENV)/bin/ruff format shared schemas services simulators tests bench
	$(VENV)/bin/ruff check --fix shared schemas services simulators tests bench

# the tests and benchmarks use the plaintext broker (the secured profile's tests start their own)
test test-integration test-e2e test-faults bench bench-e2e: SECURE = 0

test: lint up-infra ## lint, bring up Kafka and PostgreSQL, install the test tools, run every test
	@bash deploy/local/tools.sh promtool asyncapi chromium
	$(PY) -m pytest

test-unit: $(STAMP) ## unit tests only (no I/O)
	$(PY) -m pytest tests/unit

test-integration: up-infra ## integration tests on real Kafka and PostgreSQL
	$(PY) -m pytest tests/integration

test-e2e: up-infra ## the whole system through HTTP and Kafka
	$(PY) -m pytest tests/e2e

test-faults: up-infra ## the large fault run: ORDERS=2000 on one node and on 3 brokers x 2 instances
	LEADLINE_FAULT_ORDERS=$(or $(ORDERS),2000) LEADLINE_FAULT_KILLS=$(or $(KILLS),4) \
		LEADLINE_FAULT_REPORT=$(CURDIR)/.run/faults.md \
		$(PY) -m pytest tests/e2e/test_faults.py -s -p no:cacheprovider

bench: up-infra ## benchmarks next to same-run baselines; fails if a ratio falls below 80% of bench/baseline.json
	$(PY) -m bench

bench-e2e: up-infra ## the whole system under open-loop load: sustained rate, latency, CPU/RSS
	$(PY) -m bench.bench_e2e

.PHONY: console
console: $(STAMP) ## the operator console on http://127.0.0.1:8010 (sign in with an admin-scope token)
	@set -a; f=$${LEADLINE_RUN_DIR:-.run}/operator.env; [ ! -f "$$f" ] || . "$$f"; set +a; $(VENV)/bin/leadline console

.PHONY: asyncapi alerts
asyncapi: ## validate schemas/asyncapi.json with @asyncapi/parser (npm), printing every diagnostic
	@bash deploy/local/tools.sh asyncapi
	@node deploy/asyncapi/validate.mjs schemas/asyncapi.json

alerts: ## check the Prometheus alert rules and run their unit tests with promtool
	@bash deploy/local/tools.sh promtool
	@promtool check rules deploy/observability/alerts.yml
	@promtool test rules deploy/observability/alerts_test.yml

schemas: $(STAMP) ## regenerate the committed JSON Schema files from the models
	$(PY) -m schemas.generate
	$(PY) -m shared.schema_export

include deploy/k8s/k8s.mk
include deploy/containers/containers.mk

.PHONY: test-testcontainers
test-testcontainers: $(STAMP) ## the integration tests on testcontainers, through podman's Docker API
	@bash deploy/containers/testcontainers.sh $(or $(TESTS),tests/integration -m "not containers")
