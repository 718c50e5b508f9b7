# make run   — set up .venv (once) and run the default job (digits, full two-phase SDNN)
# make test  — set up .venv (once) and run the test suite
# TORCH=...  — the torch release to install first (default: what CI uses)
PYTHON ?= python3
VENV ?= .venv
TORCH ?= 2.13.0
PY := $(VENV)/bin/python

.PHONY: setup run test clean
setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet "torch==$(TORCH)"
	$(PY) -m pip install --quiet -e ".[dev]"
	touch $@

run: setup
	$(PY) run.py $(ARGS)

test: setup
	$(PY) -m pytest -q $(ARGS)

clean:
	rm -rf $(VENV) outputs multirun .cache
