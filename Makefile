# flashsale — every target sets itself up: the .venv target installs the package with its dev
# extras when the venv is missing or pyproject.toml is newer than the last install.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
SCENARIO ?= scenarios/durian-1111.toml

.PHONY: install run test lint format bench bench-compare clean

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

bench: $(STAMP)
	mkdir -p .benchmarks
	$(BIN)/python -m pytest bench -q --benchmark-only --benchmark-autosave

bench-compare: $(STAMP)
	$(BIN)/python -m pytest bench -q --benchmark-only --benchmark-compare --benchmark-compare-fail=mean:25%

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .benchmarks runs
