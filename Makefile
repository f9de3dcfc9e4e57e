# One command per habit; CI (.ci/run) calls these same targets.
PY ?= python3

.PHONY: install fmt lint type test check bench faults

install:
	$(PY) -m pip install -e '.[test,postgres]'

fmt:
	$(PY) -m ruff format .
	$(PY) -m ruff check --fix .

lint:
	$(PY) -m ruff format --check .
	$(PY) -m ruff check .
	lint-imports

type:
	$(PY) -m mypy

test:
	$(PY) -m pytest

check: lint type test

bench:
	$(PY) bench/run_all.py

faults:
	$(PY) bench/faults.py
