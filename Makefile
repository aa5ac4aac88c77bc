# Quick start: `make serve` runs the server on its defaults; `make test` runs the test suite.
# Each target creates .venv on first use: `serve` installs the runtime only (`pip install -e .`),
# the others add the test tools (`.[test]`, which includes every backend and the benchmarks).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
RUNTIME_STAMP := $(VENV)/.installed-runtime
STAMP := $(VENV)/.installed-test

.PHONY: serve test lint bench bench-tus bench-s3 clean measure-proxy fuzz soak screenshots crash

$(RUNTIME_STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet -e .
	touch $(RUNTIME_STAMP)

$(STAMP): $(RUNTIME_STAMP)
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(STAMP)

serve: $(RUNTIME_STAMP)
	$(BIN)/ingest serve

test: $(STAMP)
	$(BIN)/python -m pytest

# A long fuzz campaign: every property test with 100x its CI examples (about 1,550,000 cases).
fuzz: $(STAMP)
	INGEST_FUZZ_SCALE=$${INGEST_FUZZ_SCALE:-100} $(BIN)/python -m pytest -q -p no:cacheprovider \
		tests/test_fuzz_multipart.py tests/test_fuzz_raw.py tests/test_fuzz_tus.py

# A long soak against a real server: 1,000 uploads by default, figures printed at the end.
soak: $(STAMP)
	INGEST_SOAK_UPLOADS=$${INGEST_SOAK_UPLOADS:-1000} INGEST_SOAK_CONCURRENCY=$${INGEST_SOAK_CONCURRENCY:-64} \
		$(BIN)/python -m pytest -q -s -p no:cacheprovider tests/test_soak.py
# A long crash campaign: kill -9 at random and at every commit step, mixed uploads, restarts on
# one data dir, for INGEST_CRASH_SECONDS (600: ten minutes with one worker, five with two).
crash: $(STAMP)
	INGEST_CRASH_SECONDS=$${INGEST_CRASH_SECONDS:-600} $(BIN)/python -m pytest -q -s -p no:cacheprovider \
		tests/test_crash_campaign.py
# The benchmark suite (README "Benchmarks"); pass options as BENCH_ARGS='--size 4GiB --repeat 1'.
bench: $(STAMP)
	$(BIN)/python -m benchmarks $(BENCH_ARGS)

# The upload page's screenshots in README (docs/screenshots/), taken by its browser tests.
screenshots: $(STAMP)
	INGEST_SCREENSHOT_DIR=docs/screenshots $(BIN)/python -m pytest -q -p no:cacheprovider \
		tests/test_browser_look.py -k no_horizontal_scroll

lint: $(STAMP)
	$(BIN)/ruff check ingest tests benchmarks
	$(BIN)/mypy

# What nginx changes for ingest (body chunk sizes, wait after the last byte); needs nginx and curl.
measure-proxy: $(STAMP)
	$(BIN)/python deploy/measure_proxy.py

# What resumability costs: raw PUT vs tus (one stream) vs tus 4-way concatenation, 1 GiB.
bench-tus: $(STAMP)
	$(BIN)/python benchmarks/tus_contender.py --size 1GiB --repeat 3

# Local disk against S3 (a single-host Ceph started for the run), 1 GiB curl -T, 2 runs each.
bench-s3: $(STAMP)
	$(BIN)/python benchmarks/s3_vs_local.py 1024 2

clean:
	rm -rf $(VENV) build *.egg-info
