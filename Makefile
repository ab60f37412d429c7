# The one task runner: CI calls these targets unchanged.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: venv demo test test-fast lint typecheck bench bench-stream bench-ml clean browser-deps prometheus-deps

$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	touch $(STAMP)

venv: $(STAMP)

demo: $(STAMP)
	$(BIN)/python examples/demo.py

test: $(STAMP) lint browser-deps prometheus-deps
	$(BIN)/python -m pytest -q

# Headless Chromium for the browser tests (tests/web/browser): Debian's packages, which Playwright
# drives at /usr/bin/chromium (never `playwright install`: it downloads a browser build). Needs root;
# where it cannot install, the browser tests skip and say why.
browser-deps:
	@command -v chromium >/dev/null 2>&1 || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver; } || echo "note: could not install chromium; the browser tests will be skipped"

# Prometheus and promtool for the dashboard tests (tests/monitoring): Debian's package, only the
# binaries used; the tests start their own server on 127.0.0.1. Where the package's service was
# started by the install (a host with systemd), it is stopped and disabled again.
prometheus-deps:
	@command -v promtool >/dev/null 2>&1 || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus && { systemctl disable --now prometheus >/dev/null 2>&1 || true; }; } || echo "note: could not install prometheus; the dashboard's Prometheus tests will be skipped"

test-fast: $(STAMP)
	$(BIN)/python -m pytest -q -m "not slow and not service"

lint: $(STAMP)
	$(BIN)/ruff check headwater tests examples $(wildcard bench)
	$(BIN)/mypy

bench: $(STAMP)
	$(BIN)/python bench/orchestration.py

bench-stream: $(STAMP)
	$(BIN)/python bench/stream.py

bench-ml: $(STAMP)
	$(BIN)/python bench/ml.py

clean:
	rm -rf $(VENV) .headwater .pytest_cache .mypy_cache .ruff_cache
