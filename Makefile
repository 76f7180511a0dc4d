# The two commands a newcomer needs: `make run` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: run test lint typecheck check docs bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(STAMP): $(BIN)/python pyproject.toml
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

## Start the whole system on embedded Postgres + broker, with the bank simulator and live view.
run: $(STAMP)
	$(BIN)/steward up --demo

## Install what is needed, lint, type-check and run every test on embedded infrastructure.
test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy shared services
	$(BIN)/pytest

lint: $(STAMP)
	$(BIN)/ruff check . && $(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy shared services

## Regenerate docs/events.md and docs/asyncapi.json from the contract models.
docs: $(STAMP)
	$(BIN)/python -m shared.contracts.docs

## Throughput and latency of the real pipeline vs this machine's raw limits (not in make test).
bench: $(STAMP)
	$(BIN)/python -m bench.run

clean:
	rm -rf $(VENV) .steward .pytest_cache .mypy_cache .ruff_cache
