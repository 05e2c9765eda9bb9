# Two commands matter on a fresh machine: `make bench` and `make test` (see README.md).
SHELL := /bin/bash
PYTHON ?= python3.11
VENV ?= .venv
PY := $(VENV)/bin/python
ASV := $(VENV)/bin/asv
MACHINE ?= tristore-2core
# Instruction counts do not depend on the host's speed or load: their series live under a machine
# of their own, so wall-time history and count history never share (or split) a series.
CALLGRIND_MACHINE ?= tristore-callgrind
WALL_BENCH := '^(?!instructions\.)'
COUNT_BENCH := '^instructions\.'
# The exact versions of the dev venv (pyproject.toml gives ranges); a change re-installs.
LOCK := requirements/dev.lock
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml tools/bench/pyproject.toml $(LOCK) | sha1sum | cut -c1-12)
PORT ?= 8080

.PHONY: venv test lint docs bench bench-smoke machine site serve-site gate clean

venv: $(STAMP)

$(STAMP): pyproject.toml tools/bench/pyproject.toml $(LOCK)
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -c $(LOCK) -e '.[dev]' -e tools/bench
	@rm -f $(VENV)/.installed-*
	@touch $@

lint: venv
	$(VENV)/bin/ruff check src tests benchmarks tools/bench
	$(VENV)/bin/ruff format --check src tests benchmarks tools/bench

# The documentation, strictly: a warning or a broken link fails. Into build/docs (ignored by git);
# nothing is fetched, so it builds offline.
docs: venv
	$(VENV)/bin/mkdocs build --strict --quiet

# The whole test suite against real stores (embedded Redis, Kuzu and SQLite in temp dirs).
test: venv lint docs
	$(PY) -m pytest -n 2 -q -rfEs

# asv needs a named machine. Saved with asv's detected defaults plus the environment fingerprint
# (SQLite, redis-server, CPU governor, Python), which asv then copies into every result.
machine: venv
	@$(VENV)/bin/tristore-bench machine --name $(MACHINE)
	@$(VENV)/bin/tristore-bench machine --counts --name $(CALLGRIND_MACHINE)

# Measure the current commit with asv (real results into results/), then publish the site.
bench: machine
	$(ASV) run --machine $(MACHINE) --bench $(WALL_BENCH) --show-stderr --skip-existing-commits HEAD^!
	$(ASV) run --machine $(CALLGRIND_MACHINE) --bench $(COUNT_BENCH) --show-stderr --skip-existing-commits HEAD^!
	$(MAKE) site

# Every benchmark once at HEAD (asv --quick) in a scratch dir: results/ is never touched.
bench-smoke: venv
	$(VENV)/bin/tristore-bench bench-smoke

# asv publish, then vendor its CDN scripts from the npm registry so the site works offline.
site: venv
	$(VENV)/bin/tristore-bench site --no-serve

serve-site: venv
	$(VENV)/bin/tristore-bench site --serve --port $(PORT)

# The PR gate: base vs head on this machine, interleaved rounds, significance-tested verdicts.
BASE ?= origin/main
gate: venv
	$(VENV)/bin/tristore-bench gate --base $(BASE)

clean:
	rm -rf .asv/html .pytest_cache build/docs
