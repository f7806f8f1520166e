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

## bench-pinned: per-core figures as the set PIN_LABEL, served by PIN_PYTHON's workerledger:
## host CPU per task (host on CPU 0, load generator on CPU 1; bench_pinned), the host's
## cProfile (profile_host) and PostgreSQL commits per second (bench_multihost --label);
## rewrites BENCHMARKS.md. The "before" set: PIN_LABEL=before/e26eed2
## PIN_PYTHON=/tmp/wl-base-venv/bin/python (a venv of `pip install /tmp/wl-base[postgres,redis]`).
## zndraw-joblib runs only in the first PIN_PEER_RUNS of the 3 runs (minutes per run)
PIN_LABEL ?= after
PIN_PYTHON ?= $(BIN)/python
PIN_PEER_RUNS ?= 3
.PHONY: bench-pinned
bench-pinned: $(STAMP)
	$(BIN)/python -m bench.bench_pinned --label '$(PIN_LABEL)' --peer-runs $(PIN_PEER_RUNS) --workerledger-python '$(PIN_PYTHON)'
	$(BIN)/python -m bench.profile_host --label '$(PIN_LABEL)' --workerledger-python '$(PIN_PYTHON)'
	$(BIN)/python -m bench.bench_multihost --label '$(PIN_LABEL)' --runs 3 --workerledger-python '$(PIN_PYTHON)'
	$(BIN)/python -m bench.report

clean:
	rm -rf build dist .mypy_cache .ruff_cache .pytest_cache .hypothesis

## soak: the long fault runs, not part of `make test`: each chaos run for 5 minutes, the
## 600-task connection-drop run, schemathesis repeating for 10 minutes with more cases,
## the core's state machine with 1,000 examples, the 2,000-task drain across two hosts,
## HostStateMachine against our three hosts with 10x the runs, 2x the steps, shrinking
.PHONY: soak
soak: $(STAMP)
	WORKERLEDGER_CHAOS_SECONDS=300 WORKERLEDGER_CHAOS_DROP_TASKS=600 WORKERLEDGER_CHAOS_DROPS=30 \
	WORKERLEDGER_SCHEMATHESIS_SECONDS=600 WORKERLEDGER_SCHEMATHESIS_EXAMPLES=50 \
	HYPOTHESIS_PROFILE=soak WORKERLEDGER_MULTIHOST_DRAIN_TASKS=2000 WORKERLEDGER_TESTING_SOAK=1 \
	$(BIN)/pytest -p no:cacheprovider -s --timeout=1800 tests/chaos tests/host/test_schemathesis.py \
	  tests/core/test_state_machine.py tests/store/test_store_json_codec.py \
	  tests/multihost/test_multihost.py::test_eight_workers_on_two_hosts_drain_their_tasks_exactly_once \
	  tests/testing

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
