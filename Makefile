# `make run` serves the app with embedded defaults (HOST and PORT choose where: `make run PORT=8001`);
# `make test` runs every test (browser tests included). Serving installs only what the app needs; the
# test tools come with the test targets.
SHELL := /bin/bash
VENV := .venv
BIN := $(VENV)/bin
# Django 6 needs Python 3.12+: take the first interpreter that is new enough.
PYTHON ?= $(shell for p in python3.12 python3.13 python3.14 python3 python; do \
	if command -v $$p >/dev/null 2>&1 && $$p -c 'import sys; sys.exit(sys.version_info < (3, 12))' 2>/dev/null; then echo $$p; break; fi; done)
HOST ?= 127.0.0.1
PORT ?= 8000
PG_TEST_URL ?= postgres://postgres@127.0.0.1:5432/chat
REDIS_TEST_URL ?= redis://127.0.0.1:6379/15

# What a browser should open: a wildcard address is reached through the loopback one.
URL_HOST := $(if $(filter 0.0.0.0,$(HOST)),127.0.0.1,$(if $(findstring :,$(HOST)),[$(HOST)],$(HOST)))

.PHONY: run test test-fast test-sqlite test-postgres lint chromium services bench install install-test clean

# Installing says so in one line; pip speaks only of errors (-qq). The project is installed as a plain
# package, not in editable mode: it has no packages of its own to import (manage.py and the tests run
# from this directory), and an editable install makes setuptools print a warning box.
PIP_INSTALL := $(BIN)/pip install -qq --disable-pip-version-check

$(VENV)/bin/python:
	@test -n "$(PYTHON)" || { echo "Python 3.12 or newer is required (Django 6)."; exit 1; }
	@$(PYTHON) -m venv $(VENV)
	@$(PIP_INSTALL) --upgrade pip

# The app's dependencies only (what `make run` needs).
$(BIN)/.installed: pyproject.toml | $(VENV)/bin/python
	@echo "Installing the app's packages into $(VENV) (the first time takes a minute or two)..."
	@$(PIP_INSTALL) .
	@touch $@

# Plus the test tools (pytest, Playwright, axe, ruff): only for the test targets.
$(BIN)/.installed-test: $(BIN)/.installed
	@echo "Installing the test tools into $(VENV)..."
	@$(PIP_INSTALL) '.[test]'
	@touch $@

install: $(BIN)/.installed

install-test: $(BIN)/.installed-test

# daphne starts in the background so the last line printed, once it accepts connections, is the URL to
# open; Ctrl-C (or a TERM) is passed on as TERM, daphne's graceful shutdown, and a stop asked for that
# way ends `make run` without an error.
run: install
	@$(BIN)/python manage.py migrate --noinput
	@$(BIN)/python manage.py recover_replies
	@$(BIN)/python -m chatsite.serve -b $(HOST) -p $(PORT) chatsite.asgi:application & pid=$$!; \
	trap 'kill -TERM $$pid 2>/dev/null; wait $$pid; exit 0' INT TERM; \
	for i in $$(seq 300); do \
		kill -0 $$pid 2>/dev/null || { wait $$pid; exit $$?; }; \
		$(BIN)/python -c 'import socket,sys; socket.create_connection((sys.argv[1], int(sys.argv[2])), 0.5).close()' \
			$(subst [,,$(subst ],,$(URL_HOST))) $(PORT) 2>/dev/null && break; \
		sleep 0.1; \
	done; \
	echo "Team chat is running: open http://$(URL_HOST):$(PORT)/  (Ctrl-C stops it)"; \
	wait $$pid

# Debian's chromium for the browser tests (Playwright cannot download browsers here), and nginx for the
# test of the shipped proxy rules (deploy/nginx/); installed only if missing, never started as a service.
chromium:
	@missing=""; \
	[ -x /usr/bin/chromium ] || missing="$$missing chromium"; \
	command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || missing="$$missing nginx-light"; \
	if [ -n "$$missing" ]; then \
		echo "Installing Debian packages for the tests:$$missing"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	fi

# PostgreSQL and Redis for the scale-out test pass: installed from Debian if missing (PostgreSQL then
# trusts the postgres user on 127.0.0.1 only, as the tests connect: a test machine's setting), and
# started if stopped. A machine that already runs them (CI, a developer's) is left as it is.
services:
	@if ! pg_isready -h 127.0.0.1 -p 5432 -q 2>/dev/null && ! ls /etc/postgresql/*/main >/dev/null 2>&1; then \
		echo "Installing PostgreSQL for the scale-out tests"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null; \
		hba=$$(ls /etc/postgresql/*/main/pg_hba.conf | head -1); \
		sed -i '1i host all postgres 127.0.0.1/32 trust' "$$hba"; \
	fi
	@pg_isready -h 127.0.0.1 -p 5432 -q 2>/dev/null || \
		{ pg_ctlcluster --skip-systemctl-redirect $$(ls /etc/postgresql | head -1) main start && sleep 2; }
	@command -v redis-server >/dev/null 2>&1 || { \
		echo "Installing Redis for the scale-out tests"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null; }
	@redis-cli -h 127.0.0.1 ping >/dev/null 2>&1 || \
		redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no

lint: install-test
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

test-sqlite: install-test chromium
	$(BIN)/pytest

test-postgres: install-test chromium services
	DATABASE_URL=$(PG_TEST_URL) REDIS_URL=$(REDIS_TEST_URL) $(BIN)/pytest

test: lint test-sqlite test-postgres

# For everyday work: every test but the browser ones, on SQLite and the in-memory channel layer (no
# PostgreSQL, Redis or chromium needed). `make test` stays the whole suite.
test-fast: install-test
	$(BIN)/pytest --ignore=tests/e2e

bench: install-test
	$(BIN)/python bench/relay_latency.py

clean:
	rm -rf $(VENV) *.egg-info .pytest_cache db.sqlite3* test-db.sqlite3* staticfiles
