# Two commands do all the set-up: `make demo` and `make test` (each creates .venv if missing).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.ppafl-installed

.PHONY: demo test lint bench figures clean

$(STAMP): setup.cfg pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info[:2] >= (3, 11) else "ppafl needs Python 3.11 or newer: set PYTHON=python3.11")'
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip "setuptools>=68" wheel
	$(PY) -m pip install --quiet --no-build-isolation -e '.[test]'
	touch $(STAMP)

## Run the quickstart scenario on the embedded MNIST subset; outputs go to runs/quickstart.
demo: $(STAMP)
	$(VENV)/bin/ppafl run scenarios/quickstart.yaml --out runs/quickstart --overwrite

## Run the test suite on both cores.
test: $(STAMP)
	$(PY) -m pytest -n 2 -q

## Lint and type-check: ruff (style and bugs) and mypy (types of the packages and main.py), configs in pyproject.toml.
lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy

## Run the benchmarks (minutes; see benchmarks/README.md).
bench: $(STAMP)
	for b in benchmarks/*_bench.py; do $(PY) $$b || exit 1; done

## Regenerate the README's figures from a real dropout sweep (10-20 minutes on 2 cores; resumable).
figures: $(STAMP)
	$(PY) scripts/make_figures.py --jobs 2

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .hypothesis
