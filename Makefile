# Two commands for a new user: `make run` (local stack) and `make test` (the suite).
VENV ?= .venv
PY := $(VENV)/bin/python
PYTHON ?= python3

.PHONY: venv test lint run stop status demo bench clean

venv: $(VENV)/.installed

$(VENV)/.installed: requirements.txt requirements-dev.txt pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements.txt -r requirements-dev.txt
	$(PY) -m pip install -q --no-deps -e .
	touch $@

# Tests run in TEST_WORKERS processes, file by file; the files that use the Databricks workspace
# fake run in one of them (tests/conftest.py).
TEST_WORKERS ?= 3

test: venv
	$(PY) -m pytest -q -n $(TEST_WORKERS) --dist loadfile

# Command one: the whole loop on this machine (MLflow server, listener, worker, webhook), one line per
# verdict; the processes' logs are in .guard/logs/. Ctrl-C, closing the terminal or `make stop` stops it.
run: venv
	$(PY) deploy/local_stack.py run

# The running stack's addresses again, and stopping it from another terminal.
status: venv
	$(PY) deploy/local_stack.py status

stop: venv
	$(PY) deploy/local_stack.py stop

# While `make run` is up: register a model, watch it pass; tamper with a second one, watch it fail;
# move champion onto it and watch the guard move it back.
demo: venv
	$(PY) deploy/demo.py

lint: venv
	$(VENV)/bin/ruff check .

bench: venv
	$(PY) bench/bench_compare.py

clean:
	rm -rf $(VENV) .guard .pytest_cache
