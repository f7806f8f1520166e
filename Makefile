# Every target bootstraps .venv from pyproject.toml on first use.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
TYPECHECK_TREE := build/typecheck/workerledger

.PHONY: demo test lint typecheck pytest bench venv clean

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@echo "bootstrapping $(VENV) from pyproject.toml ..."
	@$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	@touch $(STAMP)

venv: $(STAMP)

## demo: the main job - host on SQLite, three workers, one SIGKILLed mid-task
demo: $(STAMP)
	$(BIN)/workerledger demo

## test: lint, strict type check of the whole package, then the whole pytest suite
test: $(STAMP) lint typecheck pytest

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

# mypy cannot follow the editable install's import hook, so it reads a tree of links
# that lays every folder out under its import name: build/typecheck/workerledger/ holds
# the package root's own files (the public API and the CLI) and links to core/,
# adapters/, host_fastapi/ and client/. `-p workerledger` checks all of it.
typecheck: $(STAMP)
	@rm -rf build/typecheck && mkdir -p $(TYPECHECK_TREE)
	@for d in core adapters host_fastapi client; do ln -s ../../../$$d $(TYPECHECK_TREE)/$$d; done
	@for f in workerledger/*; do ln -s ../../../$$f $(TYPECHECK_TREE)/; done
	MYPYPATH=build/typecheck $(BIN)/mypy -p workerledger

pytest: $(STAMP)
	$(BIN)/pytest

## bench: the benchmark suite; rewrites BENCHMARKS.md
bench: $(STAMP)
	$(BIN)/python -m bench

clean:
	rm -rf build dist .mypy_cache .ruff_cache .pytest_cache .hypothesis

## soak: the long fault runs, not part of `make test`: each chaos run for 5 minutes, the
## 600-task connection-drop run, schemathesis repeating for 10 minutes with more cases
.PHONY: soak
soak: $(STAMP)
	WORKERLEDGER_CHAOS_SECONDS=300 WORKERLEDGER_CHAOS_DROP_TASKS=600 WORKERLEDGER_CHAOS_DROPS=30 \
	WORKERLEDGER_SCHEMATHESIS_SECONDS=600 WORKERLEDGER_SCHEMATHESIS_EXAMPLES=50 \
	$(BIN)/pytest -p no:cacheprovider -s --timeout=1800 tests/chaos tests/host/test_schemathesis.py

## compat: zndraw-joblib 0.1.7's own test suite (its PyPI sdist's tests/, unmodified) against
## workerledger through an adapter conftest; not part of `make test`; build/compat/report.md
.PHONY: compat
compat: $(STAMP)
	$(BIN)/python -m compat

## screenshots: the console's pictures for the README (docs/console.png, docs/console-worker.png)
## from a real run: `workerledger serve`, SDK worker processes, headless Chromium
.PHONY: screenshots
screenshots: $(STAMP)
	@test -x /usr/bin/chromium || { echo "needs Chromium: apt-get install -y chromium"; exit 1; }
	$(BIN)/python docs/screenshots.py --out docs
