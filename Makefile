# The two commands of the README: `make run` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
CONFIG ?= config/aggregator.yaml

.PHONY: install run build test lint typecheck unit bench clean

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $@

install: $(BIN)/.installed

# The service on the bundled seeds/, serving the feeds at http://127.0.0.1:8080/.
run: install
	$(BIN)/aggregator run --config $(CONFIG)

# Bring the feeds in public/ up to date once, and exit.
build: install
	$(BIN)/aggregator build --config $(CONFIG)

test: lint typecheck unit

lint: install
	$(BIN)/ruff check aggregator tests bench
	$(BIN)/ruff format --check aggregator tests bench

typecheck: install
	$(BIN)/mypy

unit: install
	$(BIN)/pytest

bench: install
	$(BIN)/python -m bench.build_bench
	$(BIN)/python -m bench.service_bench

clean:
	rm -rf $(VENV) public state .pytest_cache .mypy_cache .ruff_cache .hypothesis
