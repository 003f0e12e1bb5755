# Two commands do all the set-up on a fresh machine:
#   make demo   - local virtualenv, install, run grids/smoke.toml on embedded Ray,
#                 the LR range test for its optimizers, then the report
#                 (figures, tables, index.html)
#   make test   - local virtualenv, install, run the whole test suite (slow tests too)
# and, for the inner loop:
#   make test-fast  - the unit tests only: no Ray, no training (about a minute)
#   make lint       - ruff and the mypy type check
# and, on any results:
#   make notebook RESULTS=results/paper   - run analysis/analysis.ipynb with papermill

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
OUT ?= results/smoke
RESULTS ?= $(OUT)
NOTEBOOK_OUT ?= $(firstword $(RESULTS))/report/analysis.ipynb

.PHONY: install demo test test-fast test-floors lint notebook clean-venv

# constraints.txt pins the versions the tests pass with; pyproject.toml's floors
# stay loose for users (test-floors checks them).
$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/lrbench sweep grids/smoke.toml --out $(OUT)
	$(BIN)/lrbench find-lr grids/smoke.toml --out $(OUT)
	$(BIN)/lrbench report $(OUT)

notebook: $(STAMP)
	mkdir -p $(dir $(NOTEBOOK_OUT))
	$(BIN)/papermill analysis/analysis.ipynb $(NOTEBOOK_OUT) --cwd $(CURDIR) -p results "$(RESULTS)"
	@echo "executed notebook: $(NOTEBOOK_OUT)"

# Two test processes, each file kept in one (--dist loadfile): most real-run tests
# wait on Ray's start and on subprocesses. TEST_WORKERS=0 runs them in one process.
# The 25 slowest tests are listed at the end, to see where the time goes.
TEST_WORKERS ?= 2
test: $(STAMP)
	$(BIN)/python -m pytest -n $(TEST_WORKERS) --dist loadfile --durations=25

# The unit tier: every test not marked slow (no Ray, no training)
test-fast: $(STAMP)
	$(BIN)/python -m pytest -m "not slow" -n $(TEST_WORKERS) --dist loadfile

# The floors of pyproject.toml, installed as they are (constraints-floors.txt) in
# their own virtualenv, against the fast tests: each floor is a version the code
# works with.
FLOORS_VENV ?= .venv-floors
test-floors:
	test -x $(FLOORS_VENV)/bin/python || $(PYTHON) -m venv $(FLOORS_VENV)
	$(FLOORS_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(FLOORS_VENV)/bin/python -m pip install --quiet -c constraints-floors.txt -e ".[dev]"
	$(FLOORS_VENV)/bin/python -m pytest -m "not slow" -n $(TEST_WORKERS) --dist loadfile

LINTED := lrbench harness analysis tests benchmarks examples
lint: $(STAMP)
	$(BIN)/ruff check $(LINTED)
	$(BIN)/ruff format --check $(LINTED)
	$(BIN)/mypy

clean-venv:
	rm -rf $(VENV)
