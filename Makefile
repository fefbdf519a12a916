# The two commands of the README: `make run` and `make test`. Both set up .venv first.
SHELL := /bin/bash
UV ?= $(shell command -v uv 2>/dev/null || echo .venv-tools/bin/uv)
NASA ?= ../shared/data/nasa-http-19950801/nasa_19950801.tsv
DB ?= nasa.duckdb

.PHONY: setup run test lint bench

$(UV):
	python3 -m venv .venv-tools && .venv-tools/bin/pip install -q uv==0.13.8

setup: $(UV)
	$(UV) sync --frozen

# The main job on the embedded default: the real NASA day in, its session board out.
run: setup
	rm -f $(DB) $(DB).wal
	.venv/bin/lull convert-nasa $(NASA) -o nasa.ndjson
	.venv/bin/lull --db $(DB) settings --sessions on > /dev/null
	.venv/bin/lull --db $(DB) import nasa.ndjson
	.venv/bin/lull --db $(DB) board --until 1995-08-01 --days 1

lint: setup
	.venv/bin/ruff check src tests bench
	.venv/bin/ruff format --check src tests bench
	.venv/bin/mypy

test: lint
	.venv/bin/pytest -q

bench: setup
	.venv/bin/python bench/sessionize.py
