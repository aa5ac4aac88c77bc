# Quick start: `make serve` runs the server on its defaults; `make test` runs the test suite.
# Each target creates .venv on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: serve test lint bench bench-tus clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(STAMP)

serve: $(STAMP)
	$(BIN)/ingest serve

test: $(STAMP)
	$(BIN)/python -m pytest

lint: $(STAMP)
	$(BIN)/ruff check ingest tests benchmarks
	$(BIN)/mypy

# What resumability costs: raw PUT vs tus (one stream) vs tus 4-way concatenation, 1 GiB.
bench-tus: $(STAMP)
	$(BIN)/python benchmarks/tus_contender.py --size 1GiB --repeat 3

clean:
	rm -rf $(VENV) build *.egg-info
