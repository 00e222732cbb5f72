# `make demo` and `make test` work on a fresh clone with Python 3.11+ and make:
# both create or update .venv first.
PYTHON ?= python3
VENV := .venv
STAMP := $(VENV)/.installed

.PHONY: demo test venv lint bench clean

venv: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install --quiet --upgrade pip
	$(VENV)/bin/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/asc-relay demo

test: $(STAMP)
	$(VENV)/bin/python -m pytest
	./scripts/check-workflows

bench: $(STAMP)
	$(VENV)/bin/python bench/load.py

lint: $(STAMP)
	$(VENV)/bin/python -m pip install --quiet -e '.[dev]'
	$(VENV)/bin/ruff check relay ci tests bench
	$(VENV)/bin/mypy relay ci

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
