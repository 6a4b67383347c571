# Two commands for a new user: `make run` (local stack) and `make test` (the suite).
VENV ?= .venv
PY := $(VENV)/bin/python
PYTHON ?= python3

.PHONY: venv test lint run demo stop bench clean

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

# Command one: the whole loop on this machine (MLflow server, listener, worker, webhook). Ctrl-C stops it.
run: venv
	$(PY) deploy/local_stack.py

# While `make run` is up: register a model, watch it pass; tamper with a second one, watch it fail.
demo: venv
	$(PY) deploy/demo.py

# From another terminal: stop the stack `make run` started (SIGTERM to its launcher, which stops its
# children and removes stack.json), and wait until it is gone. A pid that is no longer the launcher's
# (the stack is gone, the pid reused) is left alone.
stop:
	@f="$${GUARD_DATA_DIR:-.guard}/stack.json"; \
	if [ -f "$$f" ] && pid=$$($(PYTHON) -c 'import json, sys; print(int(json.load(open(sys.argv[1]))["pid"]))' "$$f") \
		&& ps -p "$$pid" -o args= | grep -q local_stack && kill -TERM "$$pid" 2>/dev/null; then \
		echo "stopping the stack of make run (pid $$pid)"; \
		while kill -0 "$$pid" 2>/dev/null; do sleep 0.2; done; \
	else echo "no stack of make run is running"; fi

lint: venv
	$(VENV)/bin/ruff check .

bench: venv
	$(PY) bench/bench_compare.py

clean:
	rm -rf $(VENV) .guard .pytest_cache
