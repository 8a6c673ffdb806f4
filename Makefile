# Two commands do everything on a fresh machine:
#   make demo   — set up, build the default catalogue end to end, serve it on http://127.0.0.1:8000
#   make test   — set up, run the test suite (what .ci/run runs)
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON_BASE ?= python3.11
VENV ?= .venv
PY := $(VENV)/bin/python
BUILD := $(VENV)/bin/anime-build
STAMP := $(VENV)/.installed
HOST ?= 127.0.0.1
PORT ?= 8000
export AWS_DEFAULT_REGION ?= us-east-1

.PHONY: help setup demo build serve test test-slow bench bench-quick build-layer validate lint clean

help: ## Show this help
	@grep -hE '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*?## "}; {printf "  \033[36m%-14s\033[0m %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	$(PYTHON_BASE) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[build,dev]'
	@if command -v npm >/dev/null; then npm install --prefix .work/npm --no-audit --no-fund --loglevel=error bangumi-data@0.3.208; \
	else echo "npm not found: skipping bangumi-data (release years stay unknown)"; fi
	touch $(STAMP)

setup: $(STAMP) ## Create .venv and install the project with build and dev extras

build: setup ## Run the whole offline build on the default catalogue (anime-build all)
	$(BUILD) all

serve: setup ## Serve the built artifacts locally (uvicorn) on $(HOST):$(PORT)
	$(BUILD) serve --host $(HOST) --port $(PORT)

demo: build serve ## Main job: setup, full build of the default catalogue, then serve it locally

test: setup ## Run the default (fast) test suite, as CI does
	$(PY) -m pytest -q

test-slow: setup ## Run the slow real-model / full-catalogue checks
	$(PY) -m pytest -q -m slow

bench: setup ## Benchmarks on the default catalogue's artifacts; prints one JSON document
	$(BUILD) bench --output bench-results.json

bench-quick: setup ## The benchmark harness on a small synthetic catalogue (< 2 min)
	$(BUILD) bench --quick --output bench-results.json

build-layer: setup ## Write the Lambda layers and print their size breakdown
	$(BUILD) layers

validate: setup ## Lint and type-check the code; validate the SAM template
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy
	$(VENV)/bin/sam validate --lint

lint: validate

clean: ## Remove build outputs (keeps .venv)
	rm -rf .work layers/artifacts layers/dependencies/python .aws-sam bench-results.json
