# Two commands do all the set-up on a fresh machine:
#   make demo   - local virtualenv, install, run grids/smoke.toml on embedded Ray
#   make test   - local virtualenv, install, run the whole test suite (slow tests too)

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
OUT ?= results/smoke

.PHONY: install demo test lint clean-venv

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/lrbench sweep grids/smoke.toml --out $(OUT)

test: $(STAMP)
	$(BIN)/python -m pytest

lint: $(STAMP)
	$(BIN)/ruff check harness analysis tests benchmarks

clean-venv:
	rm -rf $(VENV)
