# The one task runner: CI calls these targets unchanged.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: venv demo test test-fast lint typecheck bench bench-stream clean

$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	touch $(STAMP)

venv: $(STAMP)

demo: $(STAMP)
	$(BIN)/python examples/demo.py

test: $(STAMP) lint
	$(BIN)/python -m pytest -q

test-fast: $(STAMP)
	$(BIN)/python -m pytest -q -m "not slow and not service"

lint: $(STAMP)
	$(BIN)/ruff check headwater tests examples $(wildcard bench)
	$(BIN)/mypy

bench: $(STAMP)
	$(BIN)/python bench/orchestration.py

bench-stream: $(STAMP)
	$(BIN)/python bench/stream.py

clean:
	rm -rf $(VENV) .headwater .pytest_cache .mypy_cache .ruff_cache
