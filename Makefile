# Servicedesk developer commands. `make help` lists them.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PYTEST_WORKERS ?= 2

.DEFAULT_GOAL := help

help: ## List the commands
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml package.json package-lock.json
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	# Browser assets of the web UI from the npm registry (htmx), never committed (docs/ui.md).
	npm ci --no-audit --no-fund --ignore-scripts --loglevel=error
	mkdir -p servicedesk/web/static/vendor
	cp node_modules/htmx.org/dist/htmx.min.js servicedesk/web/static/vendor/htmx.min.js
	touch $(STAMP)

install: $(STAMP) ## Create .venv and install the package with its dev tools

run: $(STAMP) ## Start the product with the demo organization on embedded PostgreSQL (http://127.0.0.1:8000)
	SERVICEDESK_COOKIE_SECURE=$${SERVICEDESK_COOKIE_SECURE:-false} $(BIN)/servicedesk serve --demo

test: $(STAMP) ## Run the whole test suite (embedded PostgreSQL, or DATABASE_URL when set)
	$(BIN)/pytest -n $(PYTEST_WORKERS) -p no:cacheprovider

lint: $(STAMP) ## ruff check, ruff format --check, mypy
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

bench: $(STAMP) ## Print the foundation benchmark figures
	$(BIN)/python benchmarks/bench_foundation.py

clean: ## Remove the virtualenv and local data (./var)
	rm -rf $(VENV) var

.PHONY: help install run test lint bench clean
