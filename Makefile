# The two commands of the README: `make run` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
CONFIG ?= config/aggregator.yaml

.PHONY: install build test lint typecheck unit slow bench clean

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $@

install: $(BIN)/.installed

# Build the feeds once from seeds/ into public/.
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

slow: install
	$(BIN)/pytest -m slow

bench: install
	$(BIN)/python bench/build_bench.py

clean:
	rm -rf $(VENV) public .pytest_cache .mypy_cache .ruff_cache .hypothesis
