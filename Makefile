# The two commands of the README: `make run` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
CONFIG ?= config/aggregator.yaml
# `make run PORT=9000` serves on another port than the config's server.port.
PORT ?=

.PHONY: install install-run run build test lint typecheck unit bench bench-hugo clean

# Each install happens once (a marker file), again only when pyproject.toml changes.
# What running needs: the package and its dependencies.
$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e .
	touch $@

# What developing needs besides: the [dev] extras (pytest, ruff, mypy, ...).
$(BIN)/.installed-dev: $(BIN)/.installed
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $@

install: $(BIN)/.installed-dev

install-run: $(BIN)/.installed

# The service on the bundled seeds/, serving the feeds at http://127.0.0.1:8080/.
run: install-run
	$(BIN)/aggregator run --config $(CONFIG)$(if $(PORT), --port $(PORT))

# Bring the feeds in public/ up to date once, and exit.
build: install-run
	$(BIN)/aggregator build --config $(CONFIG)

test: lint typecheck unit

lint: install
	$(BIN)/ruff check aggregator tests bench
	$(BIN)/ruff format --check aggregator tests bench

typecheck: install
	$(BIN)/mypy

unit: install
	$(BIN)/pytest -n 2

bench: install
	$(BIN)/python -m bench.build_bench
	$(BIN)/python -m bench.service_bench

# Cold `aggregator build` beside Hugo (Debian's `hugo`, installed when missing) on the same seeds.
bench-hugo: install
	$(BIN)/python -m bench.hugo_bench

clean:
	rm -rf $(VENV) public state .pytest_cache .mypy_cache .ruff_cache .hypothesis
