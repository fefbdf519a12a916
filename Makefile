# The two commands of the README: `make run` and `make test`. Both set up .venv first.
SHELL := /bin/bash
UV ?= $(shell command -v uv 2>/dev/null || echo .venv-tools/bin/uv)
NASA ?= ../shared/data/nasa-http-19950801/nasa_19950801.tsv
DB ?= lull.duckdb
PORT ?= 8000

.PHONY: setup run test lint bench bench-server

$(UV):
	python3 -m venv .venv-tools && .venv-tools/bin/pip install -q uv==0.13.8

setup: $(UV)
	$(UV) sync --frozen

# The main job on the embedded default: the real NASA day imported (once) and its
# session board printed, then the server on http://127.0.0.1:8000/ with a ready project.
run: setup
	@if [ ! -f $(DB) ]; then \
	  .venv/bin/lull convert-nasa $(NASA) -o nasa.ndjson && \
	  .venv/bin/lull --db $(DB) settings --sessions on > /dev/null && \
	  .venv/bin/lull --db $(DB) import nasa.ndjson; fi
	.venv/bin/lull --db $(DB) board --until 1995-08-01 --days 1
	.venv/bin/lull --db $(DB) serve --host 127.0.0.1 --port $(PORT)

lint: setup
	.venv/bin/ruff check src tests bench
	.venv/bin/ruff format --check src tests bench
	.venv/bin/mypy

test: lint
	.venv/bin/pytest -q

bench: setup
	.venv/bin/python bench/sessionize.py

bench-server: setup
	.venv/bin/python bench/server.py
