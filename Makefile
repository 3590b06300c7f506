# flashsale — every target sets itself up: the .venv target installs the package with its dev
# extras when the venv is missing or pyproject.toml is newer than the last install.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
SCENARIO ?= scenarios/durian-1111.toml

.PHONY: install run test lint format bench bench-baseline bench-compare bench-quick clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	$(BIN)/flashsale run $(SCENARIO) --scale 0.05 --duration 20 --out runs/latest

test: $(STAMP)
	$(BIN)/python -m pytest -q

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy simulator

format: $(STAMP)
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

# benchmarks (bench/bench_*.py, groups frequent / targeted / end_to_end); JSON in .benchmarks/
BENCH := $(BIN)/python -m pytest bench -q -o python_files='bench_*.py' -p no:cacheprovider
BASELINE = $(wildcard .benchmarks/*/*_baseline.json)

bench: $(STAMP)
	$(BENCH) --benchmark-only --benchmark-autosave

# the run later bench-compare runs are held against (replaces any previous baseline)
bench-baseline: $(STAMP)
	rm -f .benchmarks/*/*_baseline.json
	$(BENCH) --benchmark-only --benchmark-save=baseline

# fails when a benchmark's median is more than 25% slower than the baseline's (median: shared VMs have outliers)
bench-compare: $(STAMP)
	@if [ -z "$(BASELINE)" ]; then \
	  echo "bench-compare: no baseline yet (.benchmarks/*/*_baseline.json); saving this run as the baseline, nothing to compare"; \
	  $(MAKE) --no-print-directory bench-baseline; \
	else \
	  $(BENCH) --benchmark-only --benchmark-compare='*_baseline' --benchmark-compare-fail=median:25%; \
	fi

# CI: every benchmark once, untimed, at small sizes, plus short smoke runs of the peer scripts
bench-quick: $(STAMP)
	FLASHSALE_BENCH_QUICK=1 $(BENCH) --benchmark-disable

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .benchmarks runs
