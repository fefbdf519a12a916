# The two commands of the README: `make run` and `make test`. Both set up .venv first.
SHELL := /bin/bash
UV ?= $(shell command -v uv 2>/dev/null || echo .venv-tools/bin/uv)
NASA ?= data/nasa-http-19950801/nasa_19950801.tsv
DB ?= lull.duckdb
PORT ?= 8000

.PHONY: setup setup-all setup-test run test lint bench bench-server bench-board bench-page

$(UV):
	python3 -m venv .venv-tools && .venv-tools/bin/pip install -q uv==0.13.8

VENDOR := src/lull/web/static/vendor

# Python packages into .venv (--inexact keeps extras a test run installed), and the
# front-end packages of the web pages from the npm registry (web/package-lock.json).
setup: $(UV) $(VENDOR)/chart.umd.min.js
	$(UV) sync --frozen --inexact --compile-bytecode
	.venv/bin/python -m compileall -q src

setup-all: $(UV) $(VENDOR)/chart.umd.min.js
	$(UV) sync --frozen --all-extras --compile-bytecode
	.venv/bin/python -m compileall -q src

$(VENDOR)/chart.umd.min.js: web/package-lock.json
	npm ci --prefix web --no-audit --no-fund --loglevel=error
	mkdir -p $(VENDOR)
	cp web/node_modules/chart.js/dist/chart.umd.min.js $(VENDOR)/

# The main job on the embedded default, made once: a `demo` project with 30 days of a music
# app (`lull demo`) and the real NASA day as project `nasa`; the NASA board is printed, then
# the server opens on http://127.0.0.1:8000/ (sign in as `admin`: its password is printed
# by the first start).
run: setup
	@if [ ! -f $(DB) ]; then \
	  .venv/bin/lull --db $(DB) demo && \
	  .venv/bin/lull convert-nasa $(NASA) -o nasa.ndjson && \
	  .venv/bin/lull --db $(DB) --project nasa settings --sessions on > /dev/null && \
	  .venv/bin/lull --db $(DB) --project nasa import nasa.ndjson; fi
	.venv/bin/lull --db $(DB) --project nasa board --until 1995-08-01 --days 1
	@echo "lull: the demo's Session board: http://127.0.0.1:$(PORT)/p/demo/board (sign in as admin)"
	.venv/bin/lull --db $(DB) serve --host 127.0.0.1 --port $(PORT)

# What the tests need beyond Python: the browser SDKs they bundle into pages (npm, from
# tests/sdk/package-lock.json) and Chromium (Debian's package, when it is missing).
SDK := tests/sdk/node_modules/.package-lock.json
$(SDK): tests/sdk/package-lock.json
	npm ci --prefix tests/sdk --no-audit --no-fund --loglevel=error

setup-test: setup-all $(SDK)
	@command -v chromium > /dev/null || { \
	  SUDO=$$([ "$$(id -u)" = 0 ] || echo sudo); \
	  $$SUDO apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq chromium > /dev/null; }

lint: setup-all
	.venv/bin/ruff check src tests bench
	.venv/bin/ruff format --check src tests bench
	.venv/bin/mypy

test: setup-test lint
	.venv/bin/pytest -q

bench: setup
	.venv/bin/python bench/sessionize.py

bench-server: setup
	.venv/bin/python bench/server.py --open 1000000 --startup

bench-board: setup
	.venv/bin/python bench/board.py

bench-page: setup
	.venv/bin/python bench/page.py
