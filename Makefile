# Two commands matter on a fresh machine: `make bench` and `make test` (see README.md).
SHELL := /bin/bash
PYTHON ?= python3.11
VENV ?= .venv
PY := $(VENV)/bin/python
ASV := $(VENV)/bin/asv
MACHINE ?= tristore-2core
STAMP := $(VENV)/.installed-$(shell sha1sum pyproject.toml | cut -c1-12)
PORT ?= 8080

.PHONY: venv test lint bench machine site serve-site gate clean

venv: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	@rm -f $(VENV)/.installed-*
	@touch $@

lint: venv
	$(VENV)/bin/ruff check src tests benchmarks
	$(VENV)/bin/ruff format --check src tests benchmarks

# The whole test suite against real stores (embedded Redis, Kuzu and SQLite in temp dirs).
test: venv lint
	$(PY) -m pytest -n 2 --dist loadgroup -q -rfEs

# asv needs a named machine; writing ~/.asv-machine.json once is idempotent.
machine: venv
	@$(ASV) machine --machine $(MACHINE) --yes >/dev/null

# Measure the current commit with asv (real results into results/), then publish the site.
bench: machine
	$(ASV) run --machine $(MACHINE) --show-stderr --skip-existing-commits HEAD^!
	$(MAKE) site

site: venv
	$(ASV) publish
	@echo "site: $(CURDIR)/.asv/html/index.html"

clean:
	rm -rf .asv/html .pytest_cache
