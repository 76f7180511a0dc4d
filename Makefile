# The two commands a newcomer needs: `make run` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: run test lint typecheck check docs bench clean lock
.DELETE_ON_ERROR:

# A venv half made (no venv module: Debian's python3-venv) is removed, not taken for done.
$(BIN)/python:
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11) and "Steward needs Python 3.11+, $(PYTHON) is " + sys.version.split()[0] + " (make PYTHON=python3.11 ...)")'
	$(PYTHON) -m venv $(VENV) || { rm -rf $(VENV); echo "could not create $(VENV): on Debian or Ubuntu, apt-get install python3-venv"; exit 1; }

$(STAMP): $(BIN)/python pyproject.toml constraints.txt
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[dev]'
	touch $(STAMP)

## Resolve pyproject.toml afresh (newest allowed versions) and write them to constraints.txt.
lock: $(BIN)/python
	$(BIN)/python -m pip install --quiet --upgrade --upgrade-strategy eager -e '.[dev]'
	{ sed -n '1,3p' constraints.txt; $(BIN)/python -m pip freeze --exclude-editable; } > constraints.new
	mv constraints.new constraints.txt

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
