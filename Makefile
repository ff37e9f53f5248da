# Two commands matter: `make run` and `make test`. Everything else is a helper.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# tests wait on the network and the clock as much as on the CPU: more workers than the two
# cores; every test has databases and ports of its own
TEST_WORKERS ?= 3

.PHONY: run test lint typecheck unit e2e system services bench clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

## make run: embedded default (SQLite, memory PBX, demo registry) on http://127.0.0.1:8080
run: $(STAMP)
	$(BIN)/yijing run

## system packages (chromium, fonts, espeak-ng, sox, SIPp), local services (PostgreSQL) and
## the test tier's Asterisk 20 (built once into /var/cache/yijing/asterisk-20 or ~/.cache)
system:
	bash scripts/ensure-system.sh

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy

unit: $(STAMP)
	$(BIN)/pytest -q -m "not e2e"

e2e: $(STAMP) system
	$(BIN)/pytest -q -m e2e

## make test: lint, types, and every test on SQLite and PostgreSQL, browser tests included
test: $(STAMP) system
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/pytest -q -n $(TEST_WORKERS)

bench: $(STAMP) system
	for f in bench/*.py; do echo "== $$f"; $(BIN)/python $$f || exit 1; done

clean:
	rm -rf $(VENV) var test-output .mypy_cache .ruff_cache .pytest_cache
