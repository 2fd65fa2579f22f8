# `make run` serves the app with embedded defaults; `make test` runs every test (browser tests included).
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

.PHONY: run test test-sqlite test-postgres lint chromium services bench install clean

$(BIN)/.installed: pyproject.toml
	@test -n "$(PYTHON)" || { echo "Python 3.12 or newer is required (Django 6)."; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $@

install: $(BIN)/.installed

run: install
	$(BIN)/python manage.py migrate --noinput
	$(BIN)/python manage.py recover_replies
	$(BIN)/python -m chatsite.serve -b $(HOST) -p $(PORT) chatsite.asgi:application

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

# PostgreSQL and Redis for the scale-out test pass; start them if they are installed but stopped.
services:
	@pg_isready -h 127.0.0.1 -p 5432 -q 2>/dev/null || \
		{ pg_ctlcluster --skip-systemctl-redirect $$(ls /etc/postgresql | head -1) main start && sleep 2; }
	@redis-cli -h 127.0.0.1 ping >/dev/null 2>&1 || \
		redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no

lint: install
	$(BIN)/ruff check .

test-sqlite: install chromium
	$(BIN)/pytest

test-postgres: install chromium services
	DATABASE_URL=$(PG_TEST_URL) REDIS_URL=$(REDIS_TEST_URL) $(BIN)/pytest

test: lint test-sqlite test-postgres

bench: install
	$(BIN)/python bench/relay_latency.py

clean:
	rm -rf $(VENV) *.egg-info .pytest_cache db.sqlite3* test-db.sqlite3* staticfiles
