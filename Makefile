# The two commands from the README:
#   make demo   installs the agent with its demo extra and runs the live demo
#   make test   installs what the tests need (Python and Debian packages) and runs the whole suite
PYTHON ?= python3
PIP := $(PYTHON) -m pip

.PHONY: demo test install-test lint unit integration bench dashboards alert-rules

demo:
	$(PIP) install -q -e '.[demo]'
	$(PYTHON) -m monitor.cli demo

install-test:
	bash tests/setup.sh

lint:
	$(PYTHON) -m ruff check .
	$(PYTHON) -m ruff format --check .
	$(PYTHON) -m mypy

test: install-test lint
	$(PYTHON) -m pytest -q

unit:
	$(PYTHON) -m pytest -q tests/unit

integration:
	$(PYTHON) -m pytest -q tests/integration

bench:
	$(PIP) install -q -e '.[bench]'
	$(PYTHON) -m bench.detectors_bench

alert-rules:
	$(PYTHON) -m alert_rules.generate
	$(PYTHON) helm/sync_generated.py

dashboards:
	$(PYTHON) -m dashboards.build
	$(PYTHON) helm/sync_generated.py
