# Every command runs from the project's own virtual environment (.venv), made from requirements/.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
export PYTHONPATH := $(CURDIR)

COMPOSE ?= docker compose

.PHONY: help install requirements translations test-tools bench-peers lint typecheck format check test unit integration test-cluster run demo demo-lifecycle bench bench-latency bench-login bench-resend bench-edge bench-link bench-abuse bench-scale bench-mail clean up down logs ps

help:
	@echo "make demo         see the whole flow work (register -> email -> confirm -> login)"
	@echo "make demo-lifecycle  one account's whole life: refresh, reset, password and email change, logout"
	@echo "make check        the developer's loop: lint, import contracts, type check and the unit tests (fakes only, no server), in about a minute"
	@echo "make test         lint, type check, then every test (unit and integration); installs chromium and promtool if missing"
	@echo "make run          auth service, email worker and a mail sink that prints each mail"
	@echo "make bench        the worker against a raw consumer and Celery, confirm latency, SMTP over TLS, sign-up against django-allauth and better-auth (docs/performance.md)"
	@echo "make translations the emails' new or changed text into every language's catalog (docs/translations.md)"
	@echo "make test-cluster a private 3-node RabbitMQ cluster, Redis with Sentinel, 2 auth replicas, 2 workers: a node of each killed mid-burst"
	@echo "make bench-scale  worker and auth throughput with 1/2/4 workers and 1/2 auth replicas, single node and cluster (docs/scaling.md)"
	@echo "make unit | integration | lint | typecheck | format | bench-latency | bench-login | bench-resend | bench-edge | bench-link | bench-abuse | bench-mail | requirements | clean"
	@echo "make up           the whole stack in containers (MongoDB, RabbitMQ, Redis, Mailpit, both services, Prometheus, Grafana)"
	@echo "make down | logs | ps"

install: $(VENV)/.installed

$(VENV)/.installed: requirements/base.txt requirements/dev.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements/base.txt -r requirements/dev.txt
	touch $@

# The benchmark's own dependencies (Celery, Django and django-allauth, its peers): `make bench`, and `make test`,
# whose tests run each peer in small (tests/integration/test_bench_*.py).
$(VENV)/.bench-installed: $(VENV)/.installed requirements/bench.txt
	$(PY) -m pip install --quiet -r requirements/bench.txt
	touch $@

requirements: install
	$(VENV)/bin/pip-compile --quiet --strip-extras --no-emit-index-url --no-emit-find-links \
		--upgrade-package disposable-email-domains -o requirements/base.txt requirements/base.in
	$(VENV)/bin/pip-compile --quiet --strip-extras --no-emit-index-url --no-emit-find-links -o requirements/dev.txt requirements/dev.in
	$(VENV)/bin/pip-compile --quiet --strip-extras --no-emit-index-url --no-emit-find-links -o requirements/bench.txt requirements/bench.in

# The emails' text, marked in the templates, into the catalog template (messages.pot), then merged into each
# language's messages.po: new messages come in untranslated, changed ones marked fuzzy (docs/translations.md).
# The worker reads the .po files as they are: there is no compile step.
CATALOGS := email_service/translations
translations: install
	$(VENV)/bin/pybabel extract --mapping-file babel.cfg --add-comments Translators: --sort-by-file \
		--project email-verification --copyright-holder "the email-verification authors" --no-wrap --output-file $(CATALOGS)/messages.pot .
	$(VENV)/bin/pybabel update --input-file $(CATALOGS)/messages.pot --output-dir $(CATALOGS) --domain messages \
		--ignore-obsolete --no-wrap

# ruff, then the import contracts of pyproject.toml [tool.importlinter]: the layers, and flows that never import each other.
lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/lint-imports

format: install
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

# mypy over every package and the tests (pyproject.toml [tool.mypy]).
typecheck: install
	$(VENV)/bin/mypy

# Debian's chromium and chromedriver (the /docs browser test) and promtool (the alert rules test).
test-tools:
	bash devtools/test_tools.sh

# Before each commit: what needs no server and no browser. The unit tests run on fakes (tests/unit/conftest.py
# refuses them the machine's RabbitMQ and Redis); `make test` is the whole suite.
check: lint typecheck
	$(PY) -m pytest tests/unit -q -n auto

# The cluster suite starts its own cluster once (about half a minute) and runs last.
test: lint typecheck test-tools bench-peers
	$(PY) -m pytest --ignore=tests/cluster
	$(MAKE) test-cluster

test-cluster: install
	$(PY) -m pytest tests/cluster

unit: install
	$(PY) -m pytest tests/unit

integration: install test-tools bench-peers
	$(PY) -m pytest tests/integration

run: install
	$(PY) -m devtools.run

demo: install
	$(PY) -m devtools.demo

demo-lifecycle: install
	$(PY) -m devtools.demo_lifecycle

# Options of the comparison, e.g. make bench BENCH_ARGS="--quick" or BENCH_ARGS="--messages 500 --reps 1".
BENCH_ARGS ?=

# better-auth, the sign-up part's Node peer, from its lockfile; without Node or npm the benchmark says it skips it.
PEER_NODE := bench/peers/better_auth
$(PEER_NODE)/node_modules/.package-lock.json: $(PEER_NODE)/package-lock.json
	@if command -v npm >/dev/null; then cd $(PEER_NODE) && npm ci --no-audit --no-fund \
		|| echo "npm ci failed in $(PEER_NODE): the sign-up part will skip better-auth and say why"; \
	else echo "npm is missing: the sign-up part will skip better-auth (Debian: apt-get install nodejs npm)"; fi

bench-peers: $(VENV)/.bench-installed $(PEER_NODE)/node_modules/.package-lock.json

bench: bench-peers
	$(PY) -m bench.compare $(BENCH_ARGS)

bench-latency: install
	$(PY) -m bench.email_latency

bench-login: install
	$(PY) -m bench.login_timing
	$(PY) -m bench.token_signing

bench-resend: install
	$(PY) -m bench.resend_timing --endpoint resend
	$(PY) -m bench.resend_timing --endpoint forgot

bench-edge: install
	$(PY) -m bench.http_edge

# Publishes/s and CPU per publish through auth's broker link, 8 request threads (docs/decisions/link-confirms.md).
bench-link: install
	$(PY) -m bench.link_publishes

bench-abuse: install
	$(PY) -m bench.abuse_latency

# Mails/s through each road out (SMTP, SES on moto, Postmark's stand-in), and the transport interface's cost (docs/mail.md).
bench-mail: install
	$(PY) -m bench.mail_transports $(MAIL_BENCH_ARGS)

# Options, e.g. make bench-scale SCALE_ARGS="--messages 400 --skip-cluster".
SCALE_ARGS ?=

bench-scale: install
	$(PY) -m bench.scale $(SCALE_ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .mypy_cache .hypothesis

# The stack in containers (compose.yaml, docs/operations.md). --wait returns once every healthcheck passes.
up: .env
	$(COMPOSE) up -d --build --wait
	@echo ""
	@echo "API docs:  http://localhost:8000/docs"
	@echo "Mailpit:   http://localhost:8025"
	@echo "Grafana:   http://localhost:3000  (dashboard: Email verification)"
	@echo "Prometheus: http://localhost:9090 (targets, alerts)"

down:
	$(COMPOSE) down

logs:
	$(COMPOSE) logs --follow --tail=100

ps:
	$(COMPOSE) ps

.env:
	cp .env.example .env
	@echo "Created .env from .env.example (development values: change the secrets before real use)."
