# Two commands for a newcomer: `make dev` (install + run the whole stack) and `make test`.
PY      ?= python3
VENV    ?= .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed
PORT    ?= 7071

.PHONY: install dev test lint typecheck unit demo bench clean

$(STAMP): pyproject.toml package.json package-lock.json
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	$(BIN)/python -m compileall -q workflows  # an installed package ships .pyc files; so do we
	npm ci --no-audit --no-fund --loglevel=error
	touch $(STAMP)

install: $(STAMP)

lint: install
	$(BIN)/ruff check workflows tests bench
	$(BIN)/ruff format --check workflows tests bench

typecheck: install
	$(BIN)/mypy

test: install lint typecheck
	$(BIN)/pytest -q

dev: install
	PATH="$(CURDIR)/$(BIN):$(CURDIR)/node_modules/.bin:$$PATH" $(BIN)/gitops-sync dev --port $(PORT)

demo: install
	bash scripts/demo.sh

bench: install
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/python bench/bench_sync.py

clean:
	rm -rf $(VENV) node_modules .pytest_cache .mypy_cache .ruff_cache
