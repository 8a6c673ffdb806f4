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

# `make build STORYTEXT=file` (and demo, serve, bench, build-layer): the story-text configuration, with
# its own work and layer folders so the default build's stay as they are (both measurable from one
# checkout). The file is read where it lies; it is never copied into the repository or a layer.
ifdef STORYTEXT
export ANIME_STORYTEXT := $(abspath $(STORYTEXT))
export ANIME_WORK_DIR ?= $(CURDIR)/.work-storytext
export ANIME_ARTIFACTS_LAYER_DIR ?= $(CURDIR)/layers/artifacts-storytext
export ANIME_BANGUMI ?= $(CURDIR)/.work/npm/node_modules/bangumi-data/dist/data.json
endif

.PHONY: help setup tools browser demo build serve test test-slow bench bench-quick bench-teacher build-layer layers-arm64 layers-40k deploy-check delta validate lint clean lambda-runtime invoke
TOOLS_VENV := .work/tools-venv
TOOLS_STAMP := $(TOOLS_VENV)/.installed
TOOLS_PATH := PATH=$(CURDIR)/$(TOOLS_VENV)/bin:$$PATH SAM_CLI_TELEMETRY=0

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

# sam and checkov pin older boto3/pydantic/click than the app uses, so they live in their own venv.
$(TOOLS_STAMP):
	$(PYTHON_BASE) -m venv $(TOOLS_VENV)
	$(TOOLS_VENV)/bin/pip install -q aws-sam-cli==1.170.0 checkov==3.2.459
	touch $(TOOLS_STAMP)

tools: $(TOOLS_STAMP) ## Install aws-sam-cli and checkov into .work/tools-venv

# What Lambda's python3.12 runtime provides besides the layers: the runtime interface client and boto3.
LAMBDA_PYTHON ?= python3.12
LAMBDA_RUNTIME := .work/lambda-runtime
LAMBDA_RUNTIME_STAMP := $(LAMBDA_RUNTIME)/.installed
$(LAMBDA_RUNTIME_STAMP):
	@command -v $(LAMBDA_PYTHON) >/dev/null || { echo "$(LAMBDA_PYTHON) not found: install Python 3.12 (e.g. pyenv install 3.12) or pass LAMBDA_PYTHON=/path/to/python3.12" >&2; exit 1; }
	$(LAMBDA_PYTHON) -m venv $(LAMBDA_RUNTIME)
	$(LAMBDA_RUNTIME)/bin/pip install -q awslambdaric==4.2.2 boto3==1.44.8
	touch $(LAMBDA_RUNTIME_STAMP)

lambda-runtime: $(LAMBDA_RUNTIME_STAMP) ## Python 3.12 with awslambdaric and boto3 in .work/lambda-runtime (for make invoke)

FUNCTION ?= ApiFunction
invoke: setup tools lambda-runtime ## Run an event as Lambda does, no Docker: make invoke EVENT=events/similar.json [FUNCTION=DeltaUpdateFunction]
	@test -n "$(EVENT)" || { echo "usage: make invoke EVENT=events/<file>.json [FUNCTION=ApiFunction|DeltaUpdateFunction]" >&2; exit 2; }
	$(BUILD) invoke $(EVENT) --function $(FUNCTION)

tests/functions/browser/node_modules: tests/functions/browser/package-lock.json
	npm ci --prefix tests/functions/browser --no-audit --no-fund --loglevel=error
	touch $@

browser: tests/functions/browser/node_modules ## Headless Chromium (Debian package, when root) + playwright-core for the web tests
	@command -v chromium >/dev/null || { [ "$$(id -u)" = 0 ] && apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium; } \
	|| echo "chromium not installed and not root: browser tests will be skipped"

build: setup ## Run the whole offline build on the default catalogue (anime-build all); STORYTEXT=file for story text
	$(BUILD) all

serve: setup ## Serve the built artifacts locally (uvicorn) on $(HOST):$(PORT)
	$(BUILD) serve --host $(HOST) --port $(PORT)

demo: build serve ## Main job: setup, full build of the default catalogue, then serve it locally (STORYTEXT=file too)

test: setup tools validate lambda-runtime browser ## make validate, then the default (fast) test suite, as CI does
	$(TOOLS_PATH) $(PY) -m pytest -q

test-slow: setup ## Run the slow real-model / full-catalogue checks
	$(PY) -m pytest -q -m slow

bench: setup ## Benchmarks on the default catalogue's artifacts; prints one JSON document
	$(BUILD) bench --output bench-results.json

bench-quick: setup ## The benchmark harness on a small synthetic catalogue (< 2 min)
	$(BUILD) bench --quick --output bench-results.json

bench-teacher: setup ## Teacher benchmark: all-pairs V2 top-100 on a synthetic 40k catalogue (one JSON line)
	$(PY) -m anime_pipeline.bench.teacher -n 40000

build-layer: setup ## Write the Lambda layers and print their size breakdown
	$(BUILD) layers

layers-arm64: setup ## The same for Graviton (arm64)
	$(BUILD) layers --arch arm64

layers-40k: setup ## Size budget with a synthetic 40k-anime bundle (random vectors of the shipped dims)
	$(BUILD) layers --no-install --synthetic 40000 --model-dir .work/models/runtime

# ARCH=arm64: a template variant for Graviton (SAM reads the layers' BuildArchitecture literally, so it is
# not a parameter); build its dependencies layer first with `make layers-arm64`.
ARCH ?= x86_64
# Written beside template.yaml: SAM resolves CodeUri/ContentUri relative to the template file.
DEPLOY_TEMPLATE := $(if $(filter x86_64,$(ARCH)),template.yaml,template-$(ARCH).yaml)

deploy-check: setup tools ## sam validate --lint, checkov, sam build and the unzipped size check (ARCH=arm64 too)
	$(if $(filter x86_64,$(ARCH)),,$(BUILD) sam-size --write-template $(ARCH) $(DEPLOY_TEMPLATE))
	$(TOOLS_PATH) sam validate --lint -t $(DEPLOY_TEMPLATE)
	$(TOOLS_PATH) checkov -f $(DEPLOY_TEMPLATE) --config-file infra/checkov.yaml
	$(TOOLS_PATH) sam build -t $(DEPLOY_TEMPLATE) && $(BUILD) sam-size

# The handlers are all named app.py (what template.yaml's Handler strings name), so one mypy run over
# them would see one module `app` twice: the packages in one run, then one run per handler.
validate: setup tools ## Lint, format check, mypy (packages and functions/*/app.py), sam validate --lint
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy
	@for handler in functions/*/app.py; do echo "$(VENV)/bin/mypy $$handler"; $(VENV)/bin/mypy $$handler || exit 1; done
	$(TOOLS_PATH) sam validate --lint

lint: validate

delta: setup ## Apply a new catalogue as a delta update (make delta CATALOGUE=path [STORYTEXT=file]); a running `make serve` picks it up
	$(BUILD) delta --catalogue $(CATALOGUE) $(if $(STORYTEXT),--storytext $(ANIME_STORYTEXT) --storytext-adds)

clean: ## Remove build outputs (keeps .venv)
	rm -rf .work layers/artifacts layers/dependencies/python .aws-sam bench-results.json
